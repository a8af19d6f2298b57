// #/dashboard?tenant=<t>&window=<1h|24h|7d>: the monitoring page.
//
// Where each number comes from:
// - the figures (events of the last 24 h and of the last hour, failures,
//   errors, critical, both rates, active users, online users of the last
//   15 min, the anomaly score and open findings, process runs), the top users
//   and the risk levels of the last hour, and the latest events: GET /v1/dashboard
//   (its windows are fixed; it takes `tenant`);
// - the activity histogram over the chosen window: GET /v1/stats with
//   include=histogram, and its error series (severity error or critical, the
//   dashboard's `errors`) the same with min_severity=error;
// - the breakdowns by action, category, severity and source over the window:
//   the first /v1/stats call's group_by (the dashboard carries none);
// - whether the store is empty: GET /v1/count.
// `tenant` goes to every call; the URL holds the tenant and the window.

import * as api from './api.js';
import { h, clear, errorEl, routeHref, seg, timeEl, eventTime, severityEl, statusEl, announce, SEVERITIES } from './dom.js';
import { histogram, bars, meter, num } from './chart.js';

export const WINDOWS = {
  '1h': { hours: 1, interval: 'minute', unit: 'minute', label: 'Last hour, per minute', since: '1h' },
  '24h': { hours: 24, interval: 'hour', unit: 'hour', label: 'Last 24 hours, per hour', since: '24h' },
  '7d': { hours: 168, interval: 'day', unit: 'day', label: 'Last 7 days, per day', since: '7d' },
};
const DEFAULT_WINDOW = '24h';
const STEP = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const BREAKDOWNS = [['action', 'Action'], ['category', 'Category'], ['severity', 'Severity'], ['source', 'Source']];
const TOP = 8;
const RISK = [['high', 'High (71–100)'], ['medium', 'Medium (31–70)'], ['low', 'Low (0–30)'], ['unscored', 'Unscored']];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

const pad = (n) => String(n).padStart(2, '0');
const hhmm = (d) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
const day = (d) => `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
const pct = (rate) => `${(100 * (Number(rate) || 0)).toFixed(1)} %`;

/** Axis label (on round times only, or '') and table/tooltip text of a bucket starting at `t` (ms). */
function bucketText(t, interval) {
  const d = new Date(t);
  const e = new Date(t + STEP[interval]);
  if (interval === 'minute') {
    return { label: d.getUTCMinutes() % 10 ? '' : hhmm(d), span: `${day(d)}, ${hhmm(d)}` };
  }
  if (interval === 'hour') {
    const hr = d.getUTCHours();
    return { label: hr % 3 ? '' : hr ? hhmm(d) : day(d), span: `${day(d)}, ${hhmm(d)}–${hhmm(e)}` };
  }
  return { label: day(d), span: `${DAYS[d.getUTCDay()]} ${day(d)}` };
}

/** Every bucket of the window (empty ones too, which /v1/stats leaves out), oldest first. */
export function buckets(all, errs, interval, hours, nowMs) {
  const step = STEP[interval];
  const map = new Map();
  const first = Math.floor((nowMs - hours * 3_600_000) / step) * step;
  for (let t = first; t <= nowMs; t += step) map.set(t, { start: new Date(t).toISOString(), count: 0, errors: 0 });
  const put = (list, key) => {
    for (const b of list || []) {
      const t = Date.parse(b.start);
      if (!Number.isFinite(t)) continue;
      const e = map.get(t) || { start: b.start, count: 0, errors: 0 };
      e.start = b.start; // the API's own text (tests look buckets up by it)
      e[key] = b.count;
      map.set(t, e);
    }
  };
  put(all, 'count');
  put(errs, 'errors');
  return [...map.entries()].sort((a, b) => a[0] - b[0]).map(([t, b]) => ({ ...b, ...bucketText(t, interval) }));
}

/** A figure: the number marked for tests with its key in the /v1/dashboard answer. */
function fig(key, value, text) {
  return h('span', { class: 'fig', 'data-test': 'figure', 'data-key': key, 'data-value': String(value) }, text ?? num(value));
}

function card(label, value, ...sub) {
  return h('div', { class: 'card' }, h('dt', null, label), h('dd', null, value, sub.length ? h('span', { class: 'sub' }, sub) : null));
}

function emptyStore(me, tenant) {
  if (tenant) {
    return h('div', { class: 'empty', 'data-test': 'empty' }, h('h2', null, 'No events for this tenant'),
      h('p', null, 'The store holds no event of tenant ', h('code', null, tenant), ' that this key can see. ',
        h('a', { href: '#/dashboard' }, 'Show all tenants'), '.'));
  }
  const auth = me && me.authenticated ? " -H 'Authorization: Bearer <a key with the ingest role>'" : '';
  return h('div', { class: 'empty', 'data-test': 'empty' },
    h('h2', null, 'No events yet'),
    h('p', null, 'The dashboard fills in as events arrive. Post a first event:'),
    h('pre', null, h('code', null,
      `curl -s -XPOST ${location.origin}/v1/events -H 'content-type: application/json'${auth} \\\n` +
      `  -d '{"action": "login", "actor": "alice", "tenant": "acme", "severity": "info"}'`)),
    h('p', null, 'Then choose Refresh: the figures and charts appear with the first events.'));
}

function panel(id, title, note, ...body) {
  return h('section', { class: 'panel', 'aria-labelledby': id, 'data-test': `panel-${id.replace(/^dash-/, '')}` },
    h('div', { class: 'panel-head' }, h('h2', { id }, title), note ? h('span', { class: 'muted small' }, note) : null), body);
}

function nothing(text) { return h('p', { class: 'muted nothing' }, text); }

export function mountDashboard(root, ctx) {
  const { me } = ctx;
  let params = new URLSearchParams(ctx.route.params);
  let ctrl = null;
  let first = true;

  const tenantSel = h('select', { id: 'dash-tenant', name: 'tenant' }, h('option', { value: '' }, 'All tenants'));
  const windowSel = h('select', { id: 'dash-window', name: 'window' },
    Object.entries(WINDOWS).map(([k, w]) => h('option', { value: k }, w.label)));
  const asOf = h('span', { class: 'muted', role: 'status' }, 'Loading…');
  const refresh = h('button', { type: 'button', 'data-test': 'refresh', onclick: () => load(true) }, 'Refresh');
  let shownAt = null; // generated_at of the figures shown
  const form = h('form', { class: 'dash-controls', 'aria-label': 'Dashboard options' },
    h('div', { class: 'ctl' }, h('label', { for: 'dash-tenant' }, 'Tenant'), tenantSel),
    h('div', { class: 'ctl' }, h('label', { for: 'dash-window' }, 'Charts and breakdowns'), windowSel),
    h('div', { class: 'dash-meta' }, asOf, refresh));
  const errors = h('div', { class: 'errors' });
  const body = h('div', { class: 'dash-body' });
  const heading = h('h1', { tabindex: '-1' }, 'Dashboard');
  const view = h('section', { class: 'view view-dashboard' }, heading, form, errors, body);
  root.append(view);

  const apply = () => {
    const w = windowSel.value === DEFAULT_WINDOW ? '' : windowSel.value;
    location.hash = routeHref('/dashboard', { tenant: tenantSel.value, window: w });
  };
  tenantSel.addEventListener('change', apply);
  windowSel.addEventListener('change', apply);
  form.addEventListener('submit', (e) => { e.preventDefault(); apply(); });

  function ensureTenant(t) {
    if (t && ![...tenantSel.options].some((o) => o.value === t)) tenantSel.append(h('option', { value: t }, t));
  }
  function sync() {
    const t = params.get('tenant') || '';
    ensureTenant(t);
    tenantSel.value = t;
    const w = params.get('window') || DEFAULT_WINDOW;
    windowSel.value = WINDOWS[w] ? w : DEFAULT_WINDOW;
  }

  // The tenants to choose from: the key's scope, else the store's tenants.
  async function loadTenants() {
    let list = Array.isArray(me?.tenants) ? me.tenants : null;
    if (!list) {
      try {
        const r = await api.get('/v1/stats', { group_by: 'tenant', top: 500 });
        list = (r.groups?.[0]?.values || []).map((v) => v.value).sort();
      } catch { list = []; } // the control still works with the URL's tenant
    }
    for (const t of list) ensureTenant(t);
    sync();
  }

  async function load(manual = false) {
    if (ctrl) ctrl.abort();
    ctrl = new AbortController();
    const { signal } = ctrl;
    clear(errors);
    const tenant = params.get('tenant') || '';
    const wkey = params.get('window') || DEFAULT_WINDOW;
    let win = WINDOWS[wkey];
    if (!win) {
      errors.append(errorEl(new Error(`The window “${wkey}” is not one of 1h, 24h or 7d, so the charts show the last 24 hours.`)));
      win = WINDOWS[DEFAULT_WINDOW];
    }
    asOf.textContent = 'Loading…';
    body.setAttribute('aria-busy', 'true');
    refresh.disabled = true;
    const base = { tenant };
    const range = { ...base, hours: win.hours, interval: win.interval, include: 'histogram' };
    try {
      const [dash, stats, errs, count] = await Promise.all([
        api.get('/v1/dashboard', base, { signal }),
        api.get('/v1/stats', { ...range, group_by: BREAKDOWNS.map((b) => b[0]).join(','), top: TOP }, { signal }),
        api.get('/v1/stats', { ...range, min_severity: 'error' }, { signal }),
        api.get('/v1/count', base, { signal }),
      ]);
      clear(body);
      shownAt = dash.generated_at;
      asOf.textContent = '';
      asOf.append('Figures as of ', timeEl(shownAt));
      if (!count.count) body.append(emptyStore(me, tenant));
      else render(dash, stats, errs, win, tenant);
      if (manual) announce('Dashboard updated');
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      asOf.textContent = '';
      // A failed refresh keeps the figures shown, saying how old they are;
      // other failures (a new tenant or window) leave nothing misleading.
      if (manual && shownAt) asOf.append('Still showing the figures of ', timeEl(shownAt));
      else { clear(body); shownAt = null; }
      if (err.status !== 401) errors.append(errorEl(err));
    } finally {
      if (!signal.aborted) {
        body.removeAttribute('aria-busy');
        refresh.disabled = false;
      }
    }
    if (first && !signal.aborted) { first = false; ctx.setReady(); }
  }

  function render(dash, stats, errs, win, tenant) {
    const lh = dash.last_hour;
    const open = dash.findings?.open || { low: 0, medium: 0, high: 0 };
    const events = (extra) => routeHref('/events', { tenant, ...extra });
    body.append(h('dl', { class: 'cards', 'data-test': 'figures' },
      card('Events, last 24 h', fig('events_24h', dash.events_24h),
        h('a', { href: events({ since: '24h' }) }, 'List them')),
      card('Events, last hour', fig('last_hour.events', lh.events),
        h('a', { href: events({ since: '1h' }) }, 'List them')),
      card('Failures, last hour', fig('last_hour.failures', lh.failures),
        fig('last_hour.failure_rate', lh.failure_rate, pct(lh.failure_rate)), ' of the events · ',
        h('a', { href: events({ status: 'failure', since: '1h' }) }, 'list')),
      card('Errors, last hour', fig('last_hour.errors', lh.errors),
        fig('last_hour.error_severity_rate', lh.error_severity_rate, pct(lh.error_severity_rate)), ' · ',
        fig('last_hour.critical', lh.critical), ' critical · ',
        h('a', { href: events({ min_severity: 'error', since: '1h' }) }, 'list')),
      card('Active users, last hour', fig('last_hour.active_users', lh.active_users), 'distinct user ids'),
      card('Online, last 15 min', fig('online_users_15m', dash.online_users_15m), 'distinct users'),
      h('div', { class: 'card card-anomaly' }, h('dt', null, 'Anomaly score'),
        h('dd', null, h('span', { class: 'score' }, fig('anomaly_score', dash.anomaly_score), h('span', { class: 'muted of' }, ' / 100')),
          meter(dash.anomaly_score, 'Anomaly score'),
          h('span', { class: 'sub' }, 'Open findings: ', fig('findings.open.high', open.high), ' high · ',
            fig('findings.open.medium', open.medium), ' medium · ', fig('findings.open.low', open.low), ' low'))),
      card('Process runs', fig('processes.running', dash.processes?.running ?? 0),
        'running · ', fig('processes.stuck', dash.processes?.stuck ?? 0), ' stuck')));

    // Activity.
    const bs = buckets(stats.histogram, errs.histogram, win.interval, win.hours, Date.parse(dash.generated_at) || Date.now());
    body.append(panel('dash-activity', 'Activity', `${win.label} (UTC)`,
      histogram({ title: `Activity, ${win.label.toLowerCase()}`, buckets: bs, unit: win.unit })));

    // Breakdowns over the window.
    const grid = h('div', { class: 'panels' });
    const groups = new Map((stats.groups || []).map((g) => [g.field, g]));
    for (const [field, label] of BREAKDOWNS) {
      const g = groups.get(field);
      let values = g ? g.values : [];
      if (field === 'severity') {
        const rank = (v) => { const i = SEVERITIES.indexOf(v); return i < 0 ? -1 : i; };
        values = [...values].sort((a, b) => rank(b.value) - rank(a.value));
      }
      const items = values.map((v) => ({
        value: v.value, label: v.value, count: v.count,
        href: events({ [field]: v.value, since: win.since }),
        cls: field === 'severity' ? `c-sev-${SEVERITIES.includes(v.value) ? v.value : 'other'}` : null,
      }));
      const more = g && g.truncated ? `top ${TOP} of ${num(g.distinct)}` : null;
      grid.append(panel(`dash-by-${field}`, `By ${label.toLowerCase()}`, more ? `${win.label.split(',')[0]}, ${more}` : win.label.split(',')[0],
        items.length ? bars({ caption: `Events by ${label.toLowerCase()}, ${win.label.split(',')[0].toLowerCase()}`, head: label, items, field, total: stats.total })
          : nothing('No events in this window.')));
    }

    // The last hour's top users and risk levels (/v1/dashboard).
    const users = (lh.top_users || []).map(([id, n]) => ({
      value: id, label: id, count: n, href: routeHref(`/user/${seg(id)}`, { tenant, since: '1h' }),
    }));
    grid.append(panel('dash-top-users', 'Top users', 'Last hour',
      users.length ? bars({ caption: 'The users with the most events, last hour', head: 'User id', items: users, field: 'top_users', total: lh.events })
        : nothing('No user had an event in the last hour.')));
    const risk = RISK.map(([k, label]) => ({
      value: k, label, count: lh.risk?.[k] ?? 0, cls: `risk-${k}`,
      href: k === 'unscored' ? null : events({ risk_score: k, since: '1h' }),
    }));
    grid.append(panel('dash-risk', 'Risk distribution', 'Last hour, by risk_score',
      lh.events ? bars({ caption: 'Events per risk level, last hour', head: 'Risk level', items: risk, field: 'risk', total: lh.events })
        : nothing('No events in the last hour.')));
    body.append(grid);

    // The newest events.
    const latest = dash.latest || [];
    if (latest.length) {
      body.append(panel('dash-latest', 'Latest events', null,
        h('table', { class: 'events latest', 'data-test': 'latest' },
          h('caption', { class: 'sr-only' }, 'The newest events'),
          h('thead', null, h('tr', null, ['Time', 'Action', 'User', 'Tenant', 'Severity', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', null, latest.map((ev) => h('tr', { 'data-id': ev.id },
            h('td', null, h('a', { href: routeHref(`/event/${seg(ev.id)}`, { tenant: ev.tenant }) }, timeEl(eventTime(ev)))),
            h('td', { class: 'c-action' }, ev.action),
            h('td', null, ev.user_id ? h('a', { href: routeHref(`/user/${seg(ev.user_id)}`, {}) }, ev.user_id) : h('span', { class: 'muted' }, ev.actor || '—')),
            h('td', null, ev.tenant || h('span', { class: 'muted' }, '—')),
            h('td', null, severityEl(ev.severity)),
            h('td', null, statusEl(ev.status)))))),
        h('p', null, h('a', { href: events({}) }, 'All events'))));
    }
  }

  sync();
  loadTenants();
  load();

  return {
    update(route) {
      if (route.name !== 'dashboard') return false;
      const next = new URLSearchParams(route.params);
      if (next.toString() !== params.toString()) {
        params = next;
        sync();
        load();
      }
      return true;
    },
    unmount() { if (ctrl) ctrl.abort(); },
  };
}
