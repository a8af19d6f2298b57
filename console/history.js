// #/entity/<type>/<id>?<filters>: the entity's history
// (GET /v1/entities/{type}/{id}/history) as a timeline of field-level
// changes: for each event its time, actor, action and changes before → after.

import * as api from './api.js';
import { h, clear, errorEl, eventTime, timeEl, severityEl, statusEl, routeHref, seg } from './dom.js';
import { filterBar, hasFilters } from './filters.js';
import { changesTable, drawer, eventHref } from './detail.js';
import { noMatch } from './events.js';

export function mountHistory(root, ctx) {
  const [type, id] = ctx.route.args;
  let params = new URLSearchParams(ctx.route.params);
  const here = (p) => routeHref(`/entity/${seg(type)}/${seg(id)}`, p);
  const bar = filterBar({ params, exclude: ['entity_type', 'entity_id'], onApply: (p) => { location.hash = here(p); } });
  const orderBtn = h('button', { type: 'button' });
  const total = h('span', { 'data-test': 'total' }, '…');
  const totalBox = h('p', { class: 'total', 'aria-live': 'polite' }, total, ' events');
  const errors = h('div', { class: 'errors' });
  const list = h('ol', { class: 'timeline', 'data-test': 'history' });
  const status = h('div', { class: 'list-status' });
  const more = h('button', { type: 'button', class: 'load-more', hidden: true }, 'Load more');
  const end = h('p', { class: 'end muted', hidden: true }, 'End of the history.');
  const det = drawer();
  root.append(h('section', { class: 'view view-entity' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/events' }, '← Events')),
    h('h1', { tabindex: '-1' }, 'History of ', h('span', { class: 'muted' }, type), ' ', h('code', null, id)),
    bar.el,
    h('div', { class: 'toolbar' }, totalBox, orderBtn, h('a', { href: routeHref('/events', { entity_type: type, entity_id: id }) }, 'Open in Events')),
    errors, list, status, more, end, det.el));

  let cursor = null; let done = false; let loading = false; let first = true; let ctrl = null;
  const seen = new Set();

  function item(ev) {
    const when = eventTime(ev);
    const who = ev.actor || ev.user_name || ev.user_id || ev.source || '';
    const openBtn = h('button', { type: 'button', class: 'link' }, 'Details');
    const li = h('li', { class: 'tl-item', 'data-test': 'event-row', 'data-seq': ev.seq, 'data-id': ev.id },
      h('div', { class: 'tl-head' },
        h('a', { href: eventHref(ev) }, when ? timeEl(when) : '—'),
        ' ', h('strong', { class: 'action' }, String(ev.action ?? '')),
        who ? [' by ', h('span', { class: 'actor' }, String(who))] : null,
        ' ', severityEl(ev.severity), ' ', ev.status ? statusEl(ev.status) : null,
        ' ', openBtn),
      ev.description ? h('p', { class: 'tl-desc' }, String(ev.description)) : null,
      Array.isArray(ev.changes) && ev.changes.length ? changesTable(ev.changes) : h('p', { class: 'muted' }, 'No field changes recorded.'));
    openBtn.addEventListener('click', () => det.open(ev, openBtn));
    return li;
  }

  async function load() {
    if (loading || done) return;
    loading = true;
    clear(status).append(h('p', { class: 'muted', role: 'status' }, 'Loading…'));
    ctrl = new AbortController();
    const p = new URLSearchParams(params);
    if (cursor) p.set('cursor', cursor);
    else p.set('total', 'true');
    try {
      const page = await api.get(`/v1/entities/${seg(type)}/${seg(id)}/history`, p, { signal: ctrl.signal });
      clear(status);
      if (typeof page.total === 'number') total.textContent = page.total.toLocaleString('en-US');
      for (const ev of page.events || []) {
        if (seen.has(ev.seq)) continue;
        seen.add(ev.seq);
        list.append(item(ev));
      }
      cursor = page.next_cursor || null;
      done = !cursor;
      if (first && !seen.size) {
        status.append(hasFilters(params) ? noMatch(page, here({}))
          : h('div', { class: 'empty', 'data-test': 'empty' }, h('h2', null, 'No history'), h('p', null, 'No event about this entity is visible to the key.')));
      }
    } catch (err) {
      clear(status);
      if (err.name === 'AbortError') { loading = false; return; }
      if (err.status !== 401 && !bar.showError(err)) errors.append(errorEl(err));
    }
    loading = false;
    more.hidden = done;
    end.hidden = !done || !seen.size;
    if (first) { first = false; ctx.setReady(); }
    requestAnimationFrame(() => {
      if (!done && !loading && more.getBoundingClientRect().top < innerHeight + 600) load();
    });
  }
  more.addEventListener('click', load);
  const io = new IntersectionObserver((e) => { if (e.some((x) => x.isIntersecting)) load(); }, { rootMargin: '600px' });
  io.observe(more);

  function reload() {
    if (ctrl) ctrl.abort();
    loading = false; cursor = null; done = false; first = true; seen.clear();
    total.textContent = '…';
    clear(list); clear(errors); clear(status); bar.clearErrors(); det.hide();
    const desc = params.get('order') === 'desc';
    orderBtn.textContent = desc ? 'Oldest first' : 'Newest first';
    load();
  }
  orderBtn.addEventListener('click', () => {
    const p = new URLSearchParams(params);
    if (p.get('order') === 'desc') p.delete('order'); else p.set('order', 'desc');
    location.hash = here(p);
  });
  bar.ready.then(reload).catch(() => {});
  return {
    update(route) {
      if (route.name !== 'entity' || route.args[0] !== type || route.args[1] !== id) return false;
      const next = new URLSearchParams(route.params);
      if (next.toString() !== params.toString()) { params = next; bar.sync(params); reload(); }
      return true;
    },
    unmount() { io.disconnect(); if (ctrl) ctrl.abort(); },
  };
}
