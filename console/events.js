// #/events?<filters>: the filter bar, the total, Live, Export and the list.

import * as api from './api.js';
import { h, clear, errorEl, announce, routeHref } from './dom.js';
import { filterBar, hasFilters } from './filters.js';
import { resultsList } from './results.js';

/** The seq up to which the listing is complete: the live stream starts after it. */
export async function indexedSeq() {
  try {
    const r = await fetch('/readyz', { cache: 'no-store', credentials: 'omit' });
    const body = await r.json();
    const s = body?.state?.indexed_seq ?? body?.state?.log_last_seq;
    return Number.isFinite(Number(s)) ? Number(s) : null;
  } catch {
    return null;
  }
}

export function emptyStore(me) {
  const origin = location.origin;
  const auth = me && me.authenticated ? " -H 'Authorization: Bearer <a key with the ingest role>'" : '';
  return h('div', { class: 'empty', 'data-test': 'empty' },
    h('h2', null, 'No events yet'),
    h('p', null, 'Nothing has been stored yet. Post a first event:'),
    h('pre', null, h('code', null,
      `curl -s -XPOST ${origin}/v1/events -H 'content-type: application/json'${auth} \\\n` +
      `  -d '{"action": "login", "actor": "alice", "tenant": "acme", "severity": "info"}'`)),
    h('p', null, 'It appears here on the next refresh, or at once with Live on.'));
}

export function noMatch(page, clearHref) {
  return h('div', { class: 'empty', 'data-test': 'empty' },
    h('h2', null, 'No matching events'),
    h('p', null, 'No event matches these filters. ', h('a', { href: clearHref }, 'Clear the filters'), ' or widen the time range.'),
    page && Array.isArray(page.hints) && page.hints.length
      ? h('ul', { class: 'hints' }, page.hints.map((t) => h('li', null, api.sentence(String(t))))) : null);
}

export function mountEvents(root, ctx) {
  const { me } = ctx;
  const can = (role) => (me?.roles || []).includes(role);
  let params = new URLSearchParams(ctx.route.params);

  const heading = h('h1', { tabindex: '-1' }, 'Events');
  const bar = filterBar({ params, onApply: (p) => { location.hash = routeHref('/events', p); } });
  const total = h('span', { 'data-test': 'total' }, '…');
  const totalWord = h('span', { class: 'total-word' }, 'events');
  const totalBox = h('p', { class: 'total', 'aria-live': 'polite' }, total, ' ', totalWord);
  // The count and its noun ("1 event", "261 events").
  const showTotal = (n) => {
    total.textContent = String(n);
    totalWord.textContent = n === 1 ? 'event' : 'events';
  };
  const liveBox = h('input', { type: 'checkbox', id: 'live', 'data-test': 'live' });
  const liveStatus = h('span', { class: 'live-status muted', role: 'status' });
  const exportBox = h('div', { class: 'exports', role: 'group', 'aria-label': 'Export the matching events' });
  const exportMsg = h('div', { class: 'export-msg', 'aria-live': 'polite' });
  if (can('export')) {
    exportBox.append(h('span', { class: 'muted' }, 'Export'));
    for (const [format, label] of [['csv', 'CSV'], ['ndjson', 'NDJSON'], ['json', 'JSON']]) {
      const b = h('button', { type: 'button', 'data-test': `export-${format}` }, label);
      b.addEventListener('click', () => exportAs(format, b));
      exportBox.append(b);
    }
  }
  const errors = h('div', { class: 'errors' });
  const toolbar = h('div', { class: 'toolbar' },
    totalBox,
    can('read') ? h('div', { class: 'live' }, liveBox, h('label', { for: 'live' }, 'Live'), liveStatus) : null,
    exportBox);
  const listBox = h('div');
  const view = h('section', { class: 'view view-events' }, heading, bar.el, toolbar, exportMsg, errors, listBox);
  root.append(view);

  let list = null;
  let live = null;
  let startSeq = null; // the stream starts here: everything before is in the listing
  let totalN = null;
  let pending = [];
  let flushTimer = null;
  const FLUSH_MS = 40;

  function showError(err) {
    if (err.status === 401) return true; // the key prompt takes over
    if (bar.showError(err)) return true;
    errors.append(errorEl(err));
    return true;
  }

  function reload() {
    stopLive();
    clear(errors);
    bar.clearErrors();
    if (list) list.destroy();
    clear(listBox);
    total.textContent = '…';
    totalN = null;
    list = resultsList({
      fetchPage: async (cursor, signal) => {
        const p = new URLSearchParams(params);
        if (cursor) p.set('cursor', cursor);
        else {
          p.set('total', 'true');
          startSeq = await indexedSeq();
        }
        return api.get('/v1/events', p, { signal });
      },
      onFirst: (page) => {
        if (page && typeof page.total === 'number') { totalN = page.total; showTotal(totalN); }
        else if (page) showTotal(page.events.length);
        else total.textContent = '—';
        ctx.setReady();
        if (liveBox.checked) startLive();
      },
      onError: (err) => showError(err),
      empty: (page) => (hasFilters(params) ? noMatch(page, '#/events') : emptyStore(me)),
    });
    listBox.append(list.el);
    list.start();
  }

  function flush() {
    flushTimer = null;
    if (!pending.length || !list) return;
    const n = list.prepend(pending);
    pending = [];
    if (n) {
      if (totalN !== null) { totalN += n; showTotal(totalN); }
      announce(`${n} new ${n === 1 ? 'event' : 'events'}`);
    }
  }

  function startLive() {
    stopLive();
    const p = new URLSearchParams(params);
    for (const k of ['sort', 'order', 'limit', 'cursor', 'total', 'offset', 'page']) p.delete(k);
    live = api.stream('/v1/stream', p, {
      fromSeq: startSeq === null ? null : startSeq + 1,
      onEvent: (ev) => {
        pending.push(ev);
        // Rows arriving together are drawn together: one insertion per
        // FLUSH_MS at most, so a burst costs one layout, not one per event.
        if (!flushTimer) flushTimer = setTimeout(flush, FLUSH_MS);
      },
      onStatus: (s, detail) => {
        liveStatus.textContent = s === 'live' ? 'following new events'
          : s === 'connecting' ? 'connecting…'
            : s === 'reconnecting' ? (detail || 'reconnecting…') : '';
        liveStatus.dataset.state = s;
      },
      onFatal: (err) => {
        liveBox.checked = false;
        live = null;
        showError(err);
      },
    });
  }
  function stopLive() {
    if (live) { live.stop(); live = null; }
    if (flushTimer) { clearTimeout(flushTimer); flush(); }
    liveStatus.textContent = '';
  }
  liveBox.addEventListener('change', () => {
    if (liveBox.checked) startLive(); else stopLive();
    announce(liveBox.checked ? 'Live on: new events appear at the top' : 'Live off');
  });

  async function exportAs(format, button) {
    clear(exportMsg);
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    const p = new URLSearchParams(params);
    p.set('format', format);
    // An export keeps Stele's own records unless told otherwise; the list
    // leaves them out unless told otherwise. The file holds what is shown.
    if (!p.has('stele_records')) p.set('stele_records', 'exclude');
    try {
      const name = await api.download('/v1/export', p, `stele-export.${format}`);
      exportMsg.append(h('p', { class: 'muted', role: 'status' }, `Saved ${name}.`));
    } catch (err) {
      if (!bar.showError(err) && err.status !== 401) exportMsg.append(errorEl(err));
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }

  bar.ready.then(() => reload()).catch((err) => showError(err));

  return {
    update(route) {
      if (route.name !== 'events') return false;
      const next = new URLSearchParams(route.params);
      if (next.toString() === params.toString()) return true;
      params = next;
      bar.sync(params);
      reload();
      // A pivot from the drawer removed the focused link: start again from the heading.
      if (!view.contains(document.activeElement)) heading.focus();
      return true;
    },
    unmount() { stopLive(); if (list) list.destroy(); },
  };
}
