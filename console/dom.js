// DOM helpers. Event data is attacker-controlled text: it only ever reaches the
// page as text nodes or attribute values (never innerHTML).

const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'open', 'selected', 'tabIndex']);

/** h('a', {href, class, onclick: fn, 'data-test': 'x'}, child, 'text', [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** The time of an event: when it happened, else when Stele received it. */
export function eventTime(ev) { return ev.timestamp || ev.received_at; }

/** "2026-11-23 09:00:00.123456 UTC" from a stored (UTC) RFC 3339 time. */
export function utcText(iso) {
  if (!iso) return '';
  return String(iso).replace('T', ' ').replace(/(Z|\+00:00)$/, '') + ' UTC';
}

export function relative(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return String(iso);
  const diff = now - t;
  const s = Math.abs(diff) / 1000;
  const fmt = (n, unit) => (diff >= 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`);
  if (s < 45) return diff >= 0 ? 'just now' : 'in a moment';
  if (s < 90) return fmt(1, 'min');
  if (s < 45 * 60) return fmt(Math.round(s / 60), 'min');
  if (s < 90 * 60) return fmt(1, 'h');
  if (s < 36 * 3600) return fmt(Math.round(s / 3600), 'h');
  if (s < 30 * 86400) { const d = Math.round(s / 86400); return fmt(d, d === 1 ? 'day' : 'days'); }
  return new Date(t).toISOString().slice(0, 10);
}

/** <time> showing "3 min ago", the exact UTC time in its title. */
export function timeEl(iso) {
  return h('time', { datetime: iso, title: utcText(iso), 'data-rel': '1' }, relative(iso));
}

// Relative times age: refresh them every 30 s.
setInterval(() => {
  const now = Date.now();
  for (const t of document.querySelectorAll('time[data-rel]')) {
    const text = relative(t.getAttribute('datetime'), now);
    if (t.textContent !== text) t.textContent = text;
  }
}, 30_000);

export const SEVERITIES = ['debug', 'info', 'notice', 'warning', 'error', 'critical'];

/** A severity badge: colour and the word (never colour alone). */
export function severityEl(sev) {
  if (!sev) return h('span', { class: 'muted' }, '—');
  const known = SEVERITIES.includes(String(sev).toLowerCase()) ? String(sev).toLowerCase() : 'other';
  return h('span', { class: `sev sev-${known}` }, String(sev));
}

export function statusEl(status) {
  if (!status) return h('span', { class: 'muted' }, '—');
  const known = ['success', 'failure', 'pending', 'canceled', 'partial'].includes(status) ? status : 'other';
  return h('span', { class: `status status-${known}` }, status);
}

/** A JSON value as text (strings as they are). */
export function valueText(v) {
  if (v === undefined) return '';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** A JSON value as a collapsible tree of DOM nodes. */
export function jsonTree(value, depth = 0) {
  if (value === null) return h('span', { class: 'j-null' }, 'null');
  if (Array.isArray(value) || typeof value === 'object') {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    const open = Array.isArray(value) ? '[' : '{';
    const close = Array.isArray(value) ? ']' : '}';
    if (!entries.length) return h('span', { class: 'j-punct' }, open + close);
    const list = h('ul', { class: 'j-list' },
      entries.map(([k, v]) => h('li', null,
        h('span', { class: Array.isArray(value) ? 'j-index' : 'j-key' }, Array.isArray(value) ? k : JSON.stringify(k)),
        h('span', { class: 'j-punct' }, ': '),
        jsonTree(v, depth + 1))));
    const count = `${entries.length} ${Array.isArray(value) ? (entries.length === 1 ? 'item' : 'items') : (entries.length === 1 ? 'key' : 'keys')}`;
    return h('details', { class: 'j-node', open: depth < 2 },
      h('summary', null, h('span', { class: 'j-punct' }, open), h('span', { class: 'muted' }, ` ${count} `), h('span', { class: 'j-punct j-close' }, close)),
      list, h('span', { class: 'j-punct' }, close));
  }
  if (typeof value === 'string') return h('span', { class: 'j-str' }, JSON.stringify(value));
  if (typeof value === 'number') return h('span', { class: 'j-num' }, String(value));
  if (typeof value === 'boolean') return h('span', { class: 'j-bool' }, String(value));
  return h('span', null, String(value));
}

/** An error message near what it concerns, announced to screen readers. */
export function errorEl(err) {
  const text = err && err.message ? err.message : String(err);
  return h('p', { class: 'error', role: 'alert', 'data-test': 'error' }, text);
}

/**
 * Shows `err` under the form control `input` (in its `.ctl` box), marks the
 * control invalid and ties the message to it for screen readers.
 */
export function markInvalid(input, err) {
  const msg = errorEl(err);
  msg.id = `${input.id}-error`;
  input.closest('.ctl').append(msg);
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', msg.id);
  return msg;
}

/** The hash link of a route with its parameters (empty values dropped unless kept). */
export function routeHref(path, params, keep = []) {
  const p = new URLSearchParams();
  for (const [k, v] of (params instanceof URLSearchParams ? params : Object.entries(params || {}))) {
    if ((v !== undefined && v !== null && v !== '') || keep.includes(k)) p.append(k, v ?? '');
  }
  const qs = p.toString();
  return `#${path}${qs ? '?' + qs : ''}`;
}

export function seg(s) { return encodeURIComponent(s); }

export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  // A new text node after a tick so that repeated messages are read again.
  setTimeout(() => { region.textContent = text; }, 50);
}
