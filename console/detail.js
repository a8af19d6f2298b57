// One event in full: every field, changes as a before/after table, metadata as
// a collapsible tree, provenance, and pivots. Shown in a drawer from a list
// and as the page of #/event/<id>?tenant=…

import * as api from './api.js';
import { h, clear, errorEl, eventTime, timeEl, utcText, severityEl, statusEl, valueText, jsonTree, routeHref, seg } from './dom.js';

const ORDER = ['id', 'timestamp', 'action', 'tenant', 'category', 'severity', 'status', 'source', 'actor',
  'user_id', 'user_name', 'entity_type', 'entity_id', 'entity_name', 'description', 'session_id',
  'correlation_id', 'ip', 'user_agent', 'risk_score', 'risk_rules', 'duration_ms', 'process_name',
  'process_id', 'batch_id', 'phase', 'items_total', 'items_processed', 'items_failed'];
const PROVENANCE = ['seq', 'received_at', 'ingested_by', 'client_addr'];
const APART = new Set(['changes', 'metadata', ...PROVENANCE]);

/** The permalink of an event (`tenant=` empty: the event without a tenant, so never ambiguous). */
export function eventHref(ev) {
  return routeHref(`/event/${seg(ev.id)}`, { tenant: ev.tenant ?? '' }, ['tenant']);
}

export function pivots(ev) {
  const t = ev.tenant ? { tenant: ev.tenant } : {};
  const links = [];
  if (ev.entity_type && ev.entity_id) {
    links.push(h('a', { href: routeHref(`/entity/${seg(ev.entity_type)}/${seg(ev.entity_id)}`, t), 'data-test': 'pivot-entity' },
      `History of ${ev.entity_type} ${ev.entity_name || ev.entity_id}`));
  }
  if (ev.user_id) {
    links.push(h('a', { href: routeHref(`/user/${seg(ev.user_id)}`, t), 'data-test': 'pivot-user' },
      `Timeline of user ${ev.user_name || ev.user_id}`));
  }
  if (ev.correlation_id) {
    links.push(h('a', { href: routeHref('/events', { correlation_id: ev.correlation_id }), 'data-test': 'pivot-correlation' },
      'Same correlation id'));
  }
  if (ev.session_id) {
    links.push(h('a', { href: routeHref('/events', { session_id: ev.session_id }), 'data-test': 'pivot-session' },
      'Same session'));
  }
  if (ev.ip) {
    links.push(h('a', { href: routeHref('/events', { ip: ev.ip }), 'data-test': 'pivot-ip' }, `Same IP (${ev.ip})`));
  }
  return links;
}

function fieldValue(k, v) {
  if (k === 'severity') return severityEl(v);
  if (k === 'status') return statusEl(v);
  if (k === 'timestamp' || k === 'received_at') return h('span', null, utcText(v), ' ', h('span', { class: 'muted' }, '(', timeEl(v), ')'));
  if (Array.isArray(v)) return v.length ? v.map(valueText).join(', ') : h('span', { class: 'muted' }, 'none');
  if (v !== null && typeof v === 'object') return jsonTree(v);
  return valueText(v);
}

function dl(entries) {
  return h('dl', { class: 'fields' }, entries.map(([k, v]) => [h('dt', null, k), h('dd', null, fieldValue(k, v))]));
}

export function changesTable(changes) {
  return h('table', { class: 'changes' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, 'After'))),
    h('tbody', null, changes.map((c) => h('tr', null,
      h('th', { scope: 'row' }, String(c.field ?? '')),
      h('td', { class: 'old' }, change(c, 'old')),
      h('td', { class: 'new' }, change(c, 'new'))))));
}

function change(c, side) {
  if (!(side in c) || c[side] === undefined) return h('span', { class: 'muted' }, '(none)');
  const v = c[side];
  if (v === null) return h('span', { class: 'j-null' }, 'null');
  if (typeof v === 'object') {
    const text = JSON.stringify(v);
    return text.length <= 60 ? h('span', { class: 'val mono' }, text) : jsonTree(v, 1);
  }
  return h('span', { class: 'val' }, valueText(v));
}

/** The detail of `ev` (a <section>; the caller wraps it). */
export function renderDetail(ev, { headingLevel = 2, headingId } = {}) {
  const H = `h${headingLevel}`;
  const S = `h${headingLevel + 1}`;
  const keys = Object.keys(ev).filter((k) => !APART.has(k));
  keys.sort((a, b) => {
    const ia = ORDER.indexOf(a); const ib = ORDER.indexOf(b);
    return (ia < 0 ? 999 : ia) - (ib < 0 ? 999 : ib) || a.localeCompare(b);
  });
  const when = eventTime(ev);
  const piv = pivots(ev);
  return h('section', { class: 'detail-body' },
    h(H, { id: headingId, tabindex: '-1', class: 'detail-title' }, h('span', { class: 'action' }, String(ev.action)), ev.severity ? severityEl(ev.severity) : null),
    h('p', { class: 'muted' }, when ? [timeEl(when), ' · ', utcText(when)] : null, ' · ', h('a', { href: eventHref(ev) }, 'Permalink')),
    piv.length ? h('nav', { class: 'pivots', 'aria-label': 'Pivots' }, h(S, null, 'Pivot'), h('ul', null, piv.map((a) => h('li', null, a)))) : null,
    h(S, null, 'Fields'),
    dl(keys.map((k) => [k, ev[k]])),
    h(S, null, 'Changes'),
    Array.isArray(ev.changes) && ev.changes.length ? changesTable(ev.changes) : h('p', { class: 'muted' }, 'No field changes.'),
    h(S, null, 'Metadata'),
    ev.metadata && typeof ev.metadata === 'object' && Object.keys(ev.metadata).length
      ? h('div', { class: 'json' }, jsonTree(ev.metadata)) : h('p', { class: 'muted' }, 'No metadata.'),
    h(S, null, 'Provenance'),
    dl(PROVENANCE.map((k) => [k, k in ev ? ev[k] : undefined]).filter(([, v]) => v !== undefined)
      .concat('ingested_by' in ev ? [] : [['ingested_by', 'not recorded (stored before format version 2)']])));
}

/**
 * The drawer: one per list. open(ev, returnFocusTo) shows it; Escape or the
 * Close button hides it and gives the focus back.
 */
export function drawer() {
  const body = h('div', { class: 'drawer-content' });
  const close = h('button', { type: 'button', class: 'close', 'aria-label': 'Close the event detail' }, 'Close');
  const el = h('aside', { class: 'drawer', 'data-test': 'detail', 'aria-labelledby': 'drawer-title', hidden: true },
    h('div', { class: 'drawer-bar' }, close), body);
  let back = null;
  function hide() {
    if (el.hidden) return;
    el.hidden = true;
    clear(body);
    if (back && back.isConnected) back.focus();
    back = null;
  }
  close.addEventListener('click', hide);
  el.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); hide(); } });
  return {
    el,
    open(ev, returnTo) {
      back = returnTo || document.activeElement;
      clear(body).append(renderDetail(ev, { headingId: 'drawer-title' }));
      el.hidden = false;
      body.querySelector('#drawer-title').focus();
    },
    hide,
    get isOpen() { return !el.hidden; },
  };
}

/** #/event/<id>?tenant=… */
export function mountEvent(root, { route, setReady }) {
  const [id] = route.args;
  const wrap = h('article', { class: 'view view-event', 'data-test': 'detail', 'aria-busy': 'true' },
    h('p', null, h('a', { href: '#/events' }, '← Events')),
    h('h1', { tabindex: '-1' }, 'Event ', h('code', null, id)));
  root.append(wrap);
  const ctrl = new AbortController();
  const params = new URLSearchParams();
  if (route.params.has('tenant')) params.set('tenant', route.params.get('tenant'));
  api.get(`/v1/events/${seg(id)}`, params, { signal: ctrl.signal, keepEmpty: true })
    .then((ev) => {
      wrap.append(renderDetail(ev, { headingLevel: 2 }));
    })
    .catch((err) => {
      if (err.name === 'AbortError') return;
      wrap.append(errorEl(err));
      if (err.status === 409 && Array.isArray(err.problem.tenants)) {
        wrap.append(h('p', null, 'Pick the tenant:'), h('ul', null, err.problem.tenants.map((t) =>
          h('li', null, h('a', { href: routeHref(`/event/${seg(id)}`, { tenant: t ?? '' }, ['tenant']) }, t ?? '(no tenant)')))));
      }
    })
    .finally(() => { wrap.removeAttribute('aria-busy'); setReady(); });
  return { unmount() { ctrl.abort(); } };
}
