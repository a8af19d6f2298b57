// #/findings?<filters>: what the detectors found (GET /v1/findings), newest
// first, each expandable to its evidence, with the summary of the open ones
// (the anomaly score, open counts, key findings, per tenant).
//
// A finding is an event Stele wrote (category stele.finding): its kind is the
// `action`, its level `metadata.severity` (low, medium, high), its subject
// `metadata.subject`, its window `metadata.window`, its evidence
// `metadata.evidence`, and `metadata.query` the GET /v1/events parameters
// that list the events behind it. "Events behind it" opens the Events view on
// exactly those parameters, with the finding's tenant added when the query
// does not name one (user and IP findings are judged per tenant, so their
// evidence is that tenant's events only).

import * as api from './api.js';
import { h, clear, errorEl, markInvalid, timeEl, utcText, routeHref, seg, announce } from './dom.js';
import { eventHref } from './detail.js';
import { fmtDuration } from './processes.js';

export const KINDS = {
  failed_login_burst: ['Failed-login burst', 'at least 5 failed authentications of one user or IP within 10 minutes'],
  error_rate_spike: ['Error-rate spike', 'an error rate of the system, an action, a tenant or a process far above its learned baseline'],
  new_ip: ['New IP or country', 'a user with a history acting from an IP (or country) not among their recent ones'],
  privilege_change: ['Privilege change', 'an action granting, revoking or changing roles, permissions or admin rights'],
  unusual_hour: ['Unusual hour', 'a user with a history acting at an hour they are rarely active'],
  api_abuse: ['API abuse', 'at least 600 requests of one user or IP within a minute'],
  slow_run: ['Slow run', 'a process run far longer than its process’s usual runs'],
  stuck_run: ['Stuck run', 'a process run still not finished long after its process usually ends'],
};
const LEVELS = ['high', 'medium', 'low'];
const FILTERS = ['kind', 'level', 'tenant', 'user_id', 'ip', 'process_name', 'since', 'until', 'q'];
const LABELS = { kind: 'Kind', level: 'Level', tenant: 'Tenant', user_id: 'User id', ip: 'IP',
  process_name: 'Process name', since: 'Since', until: 'Until', q: 'Search' };
/** Parameters of the URL that are the view's, not the API's. */
const VIEW_PARAMS = ['open'];

export function kindLabel(kind) { return (KINDS[kind] && KINDS[kind][0]) || String(kind); }

/** The level of a finding (its metadata, else its severity). */
export function levelOf(f) {
  const m = f.metadata && f.metadata.severity;
  if (LEVELS.includes(m)) return m;
  return { warning: 'low', error: 'medium', critical: 'high' }[f.severity] || 'low';
}

export function levelEl(level) {
  return h('span', { class: `level level-${LEVELS.includes(level) ? level : 'low'}` }, level);
}

function subjectText(f) {
  const s = f.metadata && f.metadata.subject;
  if (s && s.type) return s.type === 'system' ? 'the whole system' : `${s.type} ${s.id}`;
  return f.user_id ? `user ${f.user_id}` : f.ip ? `ip ${f.ip}` : f.process_name ? `process ${f.process_name}` : '—';
}

/** The Events view's link listing the events behind `f` (null without a query). */
export function behindHref(f) {
  const q = f.metadata && typeof f.metadata.query === 'string' ? f.metadata.query : '';
  if (!q) return null;
  const p = new URLSearchParams(q);
  if (f.tenant && !p.has('tenant')) p.set('tenant', f.tenant);
  return routeHref('/events', p);
}

const pct = (x) => `${(Number(x) * 100).toFixed(Number(x) * 100 >= 10 ? 0 : 1)} %`;
const EVIDENCE = {
  count: ['Count', String], threshold: ['Threshold', String], errors: ['Errors', String],
  events: ['Events in the window', String], rate: ['Error rate', pct], baseline: ['Baseline error rate', pct],
  factor: ['Factor over the baseline', (v) => `${v} ×`], min_errors: ['Minimum errors', String],
  history: ['History', String], known: ['Known values', String],
  hour_utc: ['Hour (UTC)', (v) => `${String(v).padStart(2, '0')}:00`], share: ['Share of their history', pct],
  per: ['Per', String], action: ['Action', String], seq: ['Seq of the event', String], entity: ['Entity', String],
  status: ['Status', (v) => (v === null ? 'none' : String(v))],
  duration_ms: ['Duration', (v) => `${fmtDuration(v)} (${v} ms)`], p95_ms: ['p95 of the other runs', (v) => `${fmtDuration(v)} (${v} ms)`],
  running_hours: ['Running for', (v) => `${Number(v).toFixed(1)} h`], started: ['Started', utcText],
};

/** Evidence as rows [key, label, value node]; nested objects flattened (a.b). */
function evidenceRows(f, ev, prefix = '') {
  const rows = [];
  for (const [k, v] of Object.entries(ev || {})) {
    const key = prefix + k;
    if (k === 'new' && v && typeof v === 'object' && !prefix) {
      rows.push([key, `New ${v.type === 'ip' ? 'IP' : v.type}`, String(v.value)]);
    } else if (k === 'run' && !prefix) {
      rows.push([key, 'Run', h('a', { href: routeHref(`/process/${seg(v)}`, { tenant: f.tenant ?? '' }, ['tenant']) }, String(v))]);
    } else if (v && typeof v === 'object' && !Array.isArray(v)) {
      rows.push(...evidenceRows(f, v, `${key}.`));
    } else {
      const [label, fmt] = (!prefix && EVIDENCE[k]) || [key, (x) => (typeof x === 'string' ? x : JSON.stringify(x))];
      rows.push([key, label, fmt(v)]);
    }
  }
  return rows;
}

function evidenceTable(f) {
  const rows = evidenceRows(f, f.metadata && f.metadata.evidence);
  if (!rows.length) return h('p', { class: 'muted' }, 'No evidence recorded.');
  return h('table', { class: 'kv', 'data-test': 'evidence' },
    h('caption', { class: 'sr-only' }, 'Evidence'),
    h('tbody', null, rows.map(([key, label, value]) => h('tr', { 'data-key': key },
      h('th', { scope: 'row', title: key }, label), h('td', null, value)))));
}

/** "2026-12-04 16:30:00 → 16:40:00 UTC" (the date once when both share it). */
function windowText(since, until) {
  const short = (iso) => utcText(iso).replace(/\.0+ UTC$/, ' UTC').replace(/ UTC$/, '');
  const a = short(since);
  const b = short(until);
  return a.slice(0, 10) === b.slice(0, 10) ? `${a} → ${b.slice(11)} UTC` : `${a} → ${b} UTC`;
}

/** A GET /v1/events query as its parameters, decoded. */
function queryEl(query) {
  return h('ul', { class: 'query-params' }, [...new URLSearchParams(query)].map(([k, v]) =>
    h('li', null, h('code', null, k), ' = ', h('code', { class: 'val' }, v))));
}

function detailPanel(f, id) {
  const m = f.metadata || {};
  const w = m.window || {};
  const behind = behindHref(f);
  const run = m.evidence && m.evidence.run;
  return h('div', { class: 'finding-detail', id, 'data-test': 'finding-detail' },
    h('div', { class: 'finding-cols' },
      h('div', null,
        h('h3', null, 'Evidence'),
        evidenceTable(f)),
      h('div', null,
        h('h3', null, 'Finding'),
        h('table', { class: 'kv' }, h('tbody', null,
          h('tr', null, h('th', { scope: 'row' }, 'Subject'), h('td', null, subjectText(f))),
          h('tr', null, h('th', { scope: 'row' }, 'Tenant'), h('td', null, f.tenant ?? h('span', { class: 'muted' }, 'none (spans tenants)'))),
          h('tr', null, h('th', { scope: 'row' }, 'Window'), h('td', null, w.since ? windowText(w.since, w.until) : '—')),
          h('tr', null, h('th', { scope: 'row' }, 'Events behind it'), h('td', null, m.query ? queryEl(m.query) : '—')))),
        m.recommendation ? [h('h3', null, 'What to do'), h('p', { class: 'recommendation' }, m.recommendation)] : null)),
    h('ul', { class: 'finding-links' },
      behind ? h('li', null, h('a', { href: behind, 'data-test': 'finding-events', class: 'button-link' }, 'Events behind this finding')) : null,
      run ? h('li', null, h('a', { href: routeHref(`/process/${seg(run)}`, { tenant: f.tenant ?? '' }, ['tenant']), 'data-test': 'finding-run' }, `Process run ${run}`)) : null,
      h('li', null, h('a', { href: eventHref(f) }, 'The finding’s own event'))));
}

function summaryEl(s) {
  if (!s) return null;
  const open = s.open || { low: 0, medium: 0, high: 0 };
  const n = open.low + open.medium + open.high;
  const score = s.anomaly_score;
  const band = score >= 60 ? 'high' : score >= 25 ? 'medium' : 'low';
  return h('section', { class: 'finding-summary', 'aria-labelledby': 'fs-title', 'data-test': 'summary' },
    h('div', { class: 'score-card' },
      h('h2', { id: 'fs-title' }, 'Open findings'),
      h('p', { class: 'score' },
        h('span', { class: `score-num score-${band}`, 'data-test': 'anomaly-score' }, String(score)),
        h('span', { class: 'muted' }, ' / 100 anomaly score')),
      h('meter', { min: 0, max: 100, low: 25, high: 60, optimum: 0, value: score, 'aria-label': 'Anomaly score' }),
      h('p', { class: 'open-counts' }, LEVELS.map((l) => h('span', { 'data-test': `open-${l}` }, levelEl(l), ' ', String(open[l]))),
      ),
      h('p', { class: 'muted small' }, n ? 'Open: windows that ended less than 24 hours ago. Score = 5 × low + 15 × medium + 35 × high, at most 100.'
        : 'No finding is open (none whose window ended in the last 24 hours).')),
    s.key_findings && s.key_findings.length ? h('div', { class: 'key-findings' },
      h('h3', null, 'Most serious'),
      h('ul', { class: 'key-list' }, s.key_findings.map((k) => h('li', { title: k.summary || null }, levelEl(k.level), ' ',
        h('a', { href: routeHref('/findings', { open: k.id }), 'data-test': 'key-finding' }, kindLabel(k.kind)), ' · ', `${k.subject.type} ${k.subject.id}`,
        k.summary ? h('span', { class: 'muted' }, ` — ${k.summary}`) : null))),
      s.recommendations && s.recommendations.length ? h('details', { class: 'recs' },
        h('summary', null, `What to do (${s.recommendations.length})`),
        h('ul', null, s.recommendations.map((r) => h('li', null, r)))) : null) : null,
    s.tenants && s.tenants.length ? h('div', { class: 'tenant-scores' },
      h('h3', null, 'By tenant'),
      h('table', { class: 'grid-table', 'data-test': 'tenant-scores' },
        h('thead', null, h('tr', null, ['Tenant', 'Score', 'High', 'Medium', 'Low', 'Top finding'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, s.tenants.map((t) => h('tr', { 'data-tenant': t.tenant },
          h('th', { scope: 'row' }, h('a', { href: routeHref('/findings', { tenant: t.tenant }) }, t.tenant)),
          h('td', { class: 'num' }, String(t.anomaly_score)),
          h('td', { class: 'num' }, String(t.open.high)), h('td', { class: 'num' }, String(t.open.medium)), h('td', { class: 'num' }, String(t.open.low)),
          h('td', { class: 'clip', title: t.top_finding.summary || '' }, kindLabel(t.top_finding.kind), ' · ', `${t.top_finding.subject.type} ${t.top_finding.subject.id}`)))))) : null);
}

function emptyEl(filtered) {
  if (filtered) {
    return h('div', { class: 'empty', 'data-test': 'empty' }, h('h2', null, 'No matching findings'),
      h('p', null, 'No finding matches these filters. ', h('a', { href: '#/findings' }, 'Clear the filters'), ' or widen the time range.'));
  }
  return h('div', { class: 'empty', 'data-test': 'empty' },
    h('h2', null, 'No findings yet'),
    h('p', null, 'Stele’s detectors follow every event stored and append a finding here when they see:'),
    h('table', { class: 'grid-table detectors' },
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Detector'), h('th', { scope: 'col' }, 'Raised by (defaults)'))),
      h('tbody', null, Object.entries(KINDS).map(([k, [label, what]]) => h('tr', null,
        h('th', { scope: 'row' }, label, ' ', h('code', { class: 'muted' }, k)), h('td', null, what))))),
    h('p', { class: 'muted' }, 'Thresholds are set in the ', h('code', null, '[detect]'), ' section of the configuration; with ',
      h('code', null, 'enabled = false'), ' the detectors do not run and nothing appears here.'));
}

function filterForm(params, me, onApply) {
  const ctl = (name, input) => h('div', { class: 'ctl' }, h('label', { for: `ff-${name}` }, LABELS[name]), input);
  const text = (name, placeholder) => h('input', { id: `ff-${name}`, name, type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder, value: params.get(name) || '' });
  const select = (name, options) => {
    const v = params.get(name) || '';
    const s = h('select', { id: `ff-${name}`, name }, h('option', { value: '' }, 'any'),
      options.map(([val, label]) => h('option', { value: val, selected: val === v }, label)));
    if (v && !options.some(([val]) => val === v)) s.append(h('option', { value: v, selected: true }, v));
    return s;
  };
  const tenants = me && Array.isArray(me.tenants) ? me.tenants : null;
  const form = h('form', { class: 'filters filters-compact', role: 'search', 'aria-label': 'Filter the findings', novalidate: true },
    h('div', { class: 'grid' },
      ctl('kind', select('kind', Object.entries(KINDS).map(([k, [label]]) => [k, label]))),
      ctl('level', select('level', LEVELS.map((l) => [l, l]))),
      ctl('tenant', tenants ? select('tenant', tenants.map((t) => [t, t])) : text('tenant', 'acme')),
      ctl('user_id', text('user_id', 'u-42')),
      ctl('ip', text('ip', '203.0.113.7')),
      ctl('process_name', text('process_name', 'nightly_export')),
      ctl('since', text('since', '24h or 2026-12-01')),
      ctl('until', text('until', 'RFC 3339')),
      ctl('q', h('input', { id: 'ff-q', name: 'q', type: 'search', autocomplete: 'off', spellcheck: 'false', value: params.get('q') || '' })),
      h('div', { class: 'form-actions' },
        h('button', { type: 'submit', class: 'primary' }, 'Apply'),
        h('button', { type: 'button', onclick: () => onApply(new URLSearchParams()) }, 'Clear'))));
  const collect = () => {
    const p = new URLSearchParams();
    for (const [k, v] of params) if (!FILTERS.includes(k) && !VIEW_PARAMS.includes(k)) p.append(k, v);
    for (const el of form.querySelectorAll('[name]')) if (el.value.trim()) p.set(el.name, el.value.trim());
    return p;
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); onApply(collect()); });
  form.addEventListener('change', (e) => { if (e.target.tagName === 'SELECT') onApply(collect()); });
  const showError = (err) => {
    const el = err.field && form.querySelector(`[name="${CSS.escape(err.field === 'action' ? 'kind' : err.field === 'severity' ? 'level' : err.field)}"]`);
    if (!el) return false;
    markInvalid(el, err);
    return true;
  };
  return { el: form, showError };
}

export function mountFindings(root, ctx) {
  let params = new URLSearchParams(ctx.route.params);
  const heading = h('h1', { tabindex: '-1' }, 'Findings');
  const formBox = h('div');
  const summaryBox = h('div', { class: 'summary-box' });
  const total = h('p', { class: 'total', 'aria-live': 'polite' });
  const errors = h('div', { class: 'errors' });
  const list = h('ol', { class: 'findings', 'data-test': 'findings', 'aria-label': 'Findings, newest first' });
  const status = h('div', { class: 'list-status' });
  const more = h('button', { type: 'button', class: 'load-more', hidden: true }, 'Load more');
  const end = h('p', { class: 'end muted', hidden: true }, 'End of the findings.');
  const view = h('section', { class: 'view view-findings' }, heading,
    h('p', { class: 'lede muted' }, 'What Stele’s detectors concluded from the log, newest first. Open one for its evidence and the events behind it.'),
    summaryBox, formBox, h('div', { class: 'toolbar' }, total), errors, list, status, more, end);
  root.append(view);

  let form = null;
  let cursor = null;
  let done = false;
  let loading = false;
  let ctrl = null;
  let gen = 0;
  const seen = new Set();

  const apiParams = () => { const p = new URLSearchParams(params); for (const k of VIEW_PARAMS) p.delete(k); return p; };
  const filtered = () => [...apiParams()].some(([, v]) => v);

  function setOpen(id) {
    const p = new URLSearchParams(params);
    if (id) p.set('open', id); else p.delete('open');
    params = p;
    history.replaceState(null, '', routeHref('/findings', p));
  }

  function item(f) {
    const level = levelOf(f);
    const pid = `finding-${seen.size}`;
    const when = f.received_at || f.timestamp;
    const toggle = h('button', { type: 'button', class: 'finding-toggle', 'aria-expanded': 'false', 'aria-controls': pid, 'data-test': 'finding-toggle' },
      h('span', { class: 'chev', 'aria-hidden': 'true' }),
      h('span', { class: 'finding-kind' }, kindLabel(f.action)),
      h('span', { class: 'finding-subject' }, subjectText(f)));
    const li = h('li', { class: `finding finding-${level}`, 'data-test': 'finding', 'data-id': f.id, 'data-seq': f.seq, 'data-tenant': f.tenant ?? '' },
      h('div', { class: 'finding-head' },
        levelEl(level), toggle,
        h('span', { class: 'finding-tenant', title: 'Tenant' }, f.tenant ?? h('span', { class: 'muted' }, 'all tenants')),
        h('span', { class: 'finding-time', title: 'When Stele found it' }, when ? ['found ', timeEl(when)] : '—')),
      f.description ? h('p', { class: 'finding-summary-line' }, f.description) : null);
    let panel = null;
    const setExpanded = (on, remember = true) => {
      toggle.setAttribute('aria-expanded', String(on));
      li.classList.toggle('open', on);
      if (on && !panel) { panel = detailPanel(f, pid); li.append(panel); }
      if (panel) panel.hidden = !on;
      if (remember) setOpen(on ? f.id : (params.get('open') === f.id ? null : params.get('open')));
    };
    toggle.addEventListener('click', () => setExpanded(toggle.getAttribute('aria-expanded') !== 'true'));
    li._expand = setExpanded;
    return li;
  }

  list.addEventListener('keydown', (e) => {
    if (!e.target.classList.contains('finding-toggle')) return;
    const all = [...list.querySelectorAll('.finding-toggle')];
    const i = all.indexOf(e.target);
    const go = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: all.length - 1 }[e.key];
    if (go === undefined || !all[go]) return;
    e.preventDefault();
    all[go].focus();
    if (e.key === 'ArrowDown' && go >= all.length - 3) load();
  });

  async function load() {
    if (loading || done) return;
    loading = true;
    const mine = gen;
    const first = cursor === null;
    clear(status).append(h('p', { class: 'muted', role: 'status' }, first ? 'Loading findings…' : 'Loading more…'));
    ctrl = new AbortController();
    const p = apiParams();
    if (cursor) p.set('cursor', cursor); else p.set('total', 'true');
    let page;
    try {
      page = await api.get('/v1/findings', p, { signal: ctrl.signal });
    } catch (err) {
      if (err.name === 'AbortError' || mine !== gen) return;
      loading = false;
      clear(status);
      if (err.status !== 401 && !(form && form.showError(err))) errors.append(errorEl(err));
      if (first) { total.textContent = ''; ctx.setReady(); } else { more.hidden = false; more.textContent = 'Try again'; }
      return;
    }
    if (mine !== gen) return;
    loading = false;
    clear(status);
    if (first) {
      clear(summaryBox).append(summaryEl(page.summary));
      const n = typeof page.total === 'number' ? page.total : page.findings.length;
      total.textContent = `${n} ${n === 1 ? 'finding' : 'findings'}`;
      total.dataset.total = String(n);
      if (!page.findings.length) list.after(emptyEl(filtered()));
    }
    const wantOpen = params.get('open');
    for (const f of page.findings || []) {
      if (seen.has(f.seq)) continue;
      const li = item(f);
      seen.add(f.seq);
      list.append(li);
      if (wantOpen && f.id === wantOpen) { li._expand(true, false); if (first) li.scrollIntoView({ block: 'center' }); }
    }
    cursor = page.next_cursor || null;
    done = !cursor;
    more.hidden = done;
    more.textContent = 'Load more';
    end.hidden = !done || seen.size === 0;
    if (first) ctx.setReady();
    requestAnimationFrame(() => {
      if (!done && !loading && more.isConnected && more.getBoundingClientRect().top < window.innerHeight + 600) load();
    });
  }

  function reload() {
    gen += 1;
    if (ctrl) ctrl.abort();
    loading = false;
    cursor = null;
    done = false;
    seen.clear();
    clear(list);
    clear(errors);
    for (const el of view.querySelectorAll('.empty')) el.remove();
    total.textContent = '…';
    form = filterForm(params, ctx.me, (p) => {
      const next = routeHref('/findings', p);
      if (next === location.hash) reload(); else location.hash = next;
      announce('Findings filtered');
    });
    const had = formBox.contains(document.activeElement) ? document.activeElement.getAttribute('name') : null;
    clear(formBox).append(form.el);
    if (had) form.el.querySelector(`[name="${CSS.escape(had)}"]`)?.focus();
    load();
  }

  more.addEventListener('click', load);
  const io = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) load(); }, { rootMargin: '600px' });
  io.observe(more);
  reload();

  return {
    update(route) {
      if (route.name !== 'findings') return false;
      const next = new URLSearchParams(route.params);
      const strip = (p) => { const q = new URLSearchParams(p); for (const k of VIEW_PARAMS) q.delete(k); return q.toString(); };
      const same = strip(next) === strip(params);
      params = next;
      const want = next.get('open');
      if (!same) reload();
      else if (want) {
        const li = [...list.querySelectorAll('[data-test=finding]')].find((x) => x.dataset.id === want);
        if (li) {
          li._expand(true, false);
          li.scrollIntoView({ block: 'center' });
          li.querySelector('.finding-toggle').focus();
        } else reload();
      }
      return true;
    },
    unmount() { io.disconnect(); gen += 1; if (ctrl) ctrl.abort(); },
  };
}
