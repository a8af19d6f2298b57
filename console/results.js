// A list of events: a table of rows (arrow keys move, Enter opens), pages
// loaded with next_cursor as the end of the list comes into view (no
// duplicates: rows are keyed by seq; stops when next_cursor is null), the
// detail drawer, and rows prepended by a live stream.

import { h, clear, eventTime, timeEl, severityEl, statusEl, errorEl } from './dom.js';
import { drawer, eventHref } from './detail.js';

/** A cell whose text may be cut by the column: the whole text in its title. */
function cell(cls, value) {
  const text = value === undefined || value === null ? '' : String(value);
  return h('td', { class: cls, title: text.length > 12 ? text : null }, text);
}

function entityText(ev) {
  if (!ev.entity_type && !ev.entity_id) return '';
  return `${ev.entity_type || '?'} ${ev.entity_name || ev.entity_id || ''}`.trim();
}

/**
 * `fetchPage(cursor, signal)` → {events, next_cursor, total?}. `onFirst(page)`
 * after the first page is shown; `onError(err, first)`; `empty(page)` → the
 * element shown when the first page is empty.
 */
export function resultsList({ fetchPage, onFirst = () => {}, onError = () => {}, empty }) {
  const seen = new Set();
  const tbody = h('tbody', { 'data-test': 'events' });
  const table = h('table', { class: 'events' },
    h('caption', { class: 'sr-only' }, 'Events, newest first. Arrow keys move between rows, Enter opens one.'),
    h('thead', null, h('tr', null,
      ['Time', 'Severity', 'Action', 'Actor', 'Entity', 'Tenant', 'Status', 'Description']
        .map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  const more = h('button', { type: 'button', class: 'load-more', hidden: true }, 'Load more');
  const end = h('p', { class: 'end muted', hidden: true }, 'End of the results.');
  const status = h('div', { class: 'list-status' });
  const emptyBox = h('div', { class: 'empty-box' });
  const det = drawer();
  const el = h('div', { class: 'results' }, emptyBox, table, status, more, end, det.el);

  let cursor = null;
  let done = false;
  let loading = false;
  let ctrl = null;
  let first = true;

  function rowEl(ev, fresh = false) {
    const when = eventTime(ev);
    const link = h('a', { href: eventHref(ev), tabindex: '-1' }, when ? timeEl(when) : '—');
    const tr = h('tr', {
      'data-test': 'event-row', 'data-seq': ev.seq, 'data-id': ev.id, tabindex: '-1',
      class: `row sev-row-${String(ev.severity || 'none').toLowerCase()}${fresh ? ' fresh' : ''}`,
    },
    h('td', { class: 'c-time' }, link),
    h('td', null, severityEl(ev.severity)),
    cell('c-action', ev.action),
    cell('c-actor', ev.actor || ev.user_name || ev.user_id),
    cell('c-entity', entityText(ev)),
    cell('c-tenant', ev.tenant),
    h('td', null, statusEl(ev.status)),
    cell('c-desc', ev.description));
    tr._event = ev;
    link.addEventListener('click', (e) => {
      if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
    });
    return tr;
  }

  function rows() { return [...tbody.querySelectorAll('tr[data-test="event-row"]')]; }

  function focusRow(tr) {
    if (!tr) return;
    for (const r of tbody.querySelectorAll('tr[tabindex="0"]')) r.tabIndex = -1;
    tr.tabIndex = 0;
    tr.focus();
  }

  function ensureTabStop() {
    if (!tbody.querySelector('tr[tabindex="0"]')) {
      const r = tbody.querySelector('tr[data-test="event-row"]');
      if (r) r.tabIndex = 0;
    }
  }

  tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-test="event-row"]');
    if (!tr) return;
    const link = e.target.closest('a');
    if (link && (e.ctrlKey || e.metaKey || e.shiftKey || e.altKey || e.button !== 0)) return;
    for (const r of tbody.querySelectorAll('tr[tabindex="0"]')) r.tabIndex = -1;
    tr.tabIndex = 0;
    open(tr);
  });
  tbody.addEventListener('keydown', (e) => {
    const tr = e.target.closest('tr[data-test="event-row"]');
    if (!tr) return;
    const all = rows();
    const i = all.indexOf(tr);
    switch (e.key) {
      case 'ArrowDown': e.preventDefault(); focusRow(all[i + 1]); if (i + 1 >= all.length - 5) maybeMore(); break;
      case 'ArrowUp': e.preventDefault(); focusRow(all[i - 1]); break;
      case 'Home': e.preventDefault(); focusRow(all[0]); break;
      case 'End': e.preventDefault(); focusRow(all[all.length - 1]); maybeMore(); break;
      case 'PageDown': e.preventDefault(); focusRow(all[Math.min(all.length - 1, i + 10)]); break;
      case 'PageUp': e.preventDefault(); focusRow(all[Math.max(0, i - 10)]); break;
      case 'Enter': case ' ': e.preventDefault(); open(tr); break;
      default:
    }
  });

  function open(tr) {
    for (const r of tbody.querySelectorAll('tr.selected')) r.classList.remove('selected');
    tr.classList.add('selected');
    det.open(tr._event, tr);
  }

  function add(events, { top = false, fresh = false } = {}) {
    const frag = document.createDocumentFragment();
    let n = 0;
    for (const ev of events) {
      const key = ev.seq ?? `${ev.tenant}/${ev.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      frag.append(rowEl(ev, fresh));
      n += 1;
    }
    if (top) tbody.prepend(frag); else tbody.append(frag);
    if (n) { clear(emptyBox); table.hidden = false; }
    ensureTabStop();
    return n;
  }

  async function load() {
    if (loading || done) return;
    loading = true;
    more.disabled = true;
    clear(status).append(h('p', { class: 'muted', role: 'status' }, first ? 'Loading…' : 'Loading more…'));
    ctrl = new AbortController();
    let page;
    try {
      page = await fetchPage(cursor, ctrl.signal);
    } catch (err) {
      loading = false;
      more.disabled = false;
      clear(status);
      if (err.name === 'AbortError') return;
      if (!onError(err, first)) status.append(errorEl(err));
      if (first) {
        first = false;
        more.hidden = true; // a first page that failed is not retried by scrolling
        table.hidden = true;
        onFirst(null);
      } else {
        more.hidden = false;
        more.textContent = 'Try again';
      }
      return;
    }
    loading = false;
    more.disabled = false;
    more.textContent = 'Load more';
    clear(status);
    add(page.events || []);
    cursor = page.next_cursor || null;
    done = !cursor;
    more.hidden = done;
    end.hidden = !done || seen.size === 0;
    if (first) {
      first = false;
      if (!seen.size && empty) { table.hidden = true; clear(emptyBox).append(empty(page)); }
      onFirst(page);
    }
    requestAnimationFrame(maybeMore);
  }

  function maybeMore() {
    if (loading || done || !el.isConnected) return;
    const r = more.getBoundingClientRect();
    if (r.top < window.innerHeight + 600) load();
  }

  more.addEventListener('click', load);
  const io = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) load();
  }, { rootMargin: '600px' });
  io.observe(more);

  return {
    el,
    start() { load(); },
    /** Rows from a live stream, newest on top. Returns how many were new. */
    prepend(events) { return add(events.slice().reverse(), { top: true, fresh: true }); },
    hideDetail() { det.hide(); },
    destroy() { io.disconnect(); if (ctrl) ctrl.abort(); det.hide(); },
    get size() { return seen.size; },
  };
}
