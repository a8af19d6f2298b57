// #/processes?<filters>: process runs (GET /v1/processes) or, with
// kind=batches, batch operations (GET /v1/batches): stuck runs first and
// marked, the figures per name (success rate, p50/p95 durations, runs a day)
// and the latest runs. #/process/<id>?tenant=… and #/batch/<id>?tenant=…:
// one run (GET /v1/processes/{id}, /v1/batches/{id}) and its events in order.

import * as api from './api.js';
import { h, clear, errorEl, markInvalid, timeEl, utcText, routeHref, seg, announce } from './dom.js';
import { resultsList } from './results.js';

export const RUN_STATUSES = ['stuck', 'running', 'failed', 'partial', 'canceled', 'succeeded'];

/** A duration in ms as "850 ms", "12.4 s", "4 min 05 s", "2 h 05 min", "3 d 4 h". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return '—';
  const n = Number(ms);
  if (n < 1000) return `${Math.round(n)} ms`;
  const s = n / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const pad = (x) => String(x).padStart(2, '0');
  const S = Math.floor(s);
  if (S < 3600) return `${Math.floor(S / 60)} min ${pad(S % 60)} s`;
  if (S < 86400) return `${Math.floor(S / 3600)} h ${pad(Math.floor((S % 3600) / 60))} min`;
  return `${Math.floor(S / 86400)} d ${Math.floor((S % 86400) / 3600)} h`;
}

/** A success rate (0–1 or null) as "83.3 %". */
export function fmtRate(r) {
  if (r === null || r === undefined) return '—';
  const p = Number(r) * 100;
  return `${Number.isInteger(p) ? p : p.toFixed(1)} %`;
}

export function runStatusEl(status) {
  const known = RUN_STATUSES.includes(status) ? status : 'other';
  return h('span', { class: `run-status run-${known}`, 'data-status': status }, status || '—');
}

function durationEl(ms, running) {
  return h('span', { class: 'dur', 'data-ms': ms, title: `${ms} ms${running ? ' so far' : ''}` }, fmtDuration(ms), running ? h('span', { class: 'muted' }, ' so far') : null);
}

function itemsText(r) {
  if (r.items_total == null && r.items_processed == null && r.items_failed == null) return '—';
  let t = `${r.items_processed ?? '?'} / ${r.items_total ?? '?'}`;
  if (r.items_failed) t += ` (${r.items_failed} failed)`;
  return t;
}

const KINDS = {
  processes: { list: '/v1/processes', one: 'process', figures: 'processes', runs: 'runs', name: 'process_name', nameLabel: 'Process name', what: 'process run', whats: 'process runs' },
  batches: { list: '/v1/batches', one: 'batch', figures: 'operations', runs: 'batches', name: 'action', nameLabel: 'Action', what: 'batch operation', whats: 'batch operations' },
};
const FILTERS = ['tenant', 'process_name', 'action', 'status', 'since', 'until', 'limit'];

export function runHref(kind, r) {
  return routeHref(`/${KINDS[kind].one}/${seg(r.id)}`, { tenant: r.tenant ?? '' }, ['tenant']);
}

function runsTable(kind, runs, caption) {
  const k = KINDS[kind];
  return h('table', { class: 'grid-table runs', 'data-test': 'runs' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', null, h('tr', null, ['Status', kind === 'batches' ? 'Batch' : 'Run', k.nameLabel, 'Tenant', 'Started', 'Duration', 'Items', 'Events', 'Errors']
      .map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, runs.map((r) => {
      const live = r.status === 'running' || r.status === 'stuck';
      return h('tr', { 'data-test': 'run', 'data-id': r.id, 'data-status': r.status, class: `run-row run-row-${r.status}` },
        h('td', null, runStatusEl(r.status)),
        h('th', { scope: 'row', class: 'clip' }, h('a', { href: runHref(kind, r), title: r.id }, r.id),
          kind === 'batches' && r.process_id ? h('div', { class: 'muted small' }, 'run ', h('a', { href: runHref('processes', { id: r.process_id, tenant: r.tenant }) }, r.process_id)) : null),
        h('td', { class: 'clip', title: (kind === 'batches' ? r.action : r.process_name) || '' }, (kind === 'batches' ? r.action : r.process_name) || h('span', { class: 'muted' }, '—')),
        h('td', { class: 'clip' }, r.tenant ?? h('span', { class: 'muted' }, 'none')),
        h('td', null, timeEl(r.started_at)),
        h('td', { 'data-test': 'run-duration' }, durationEl(r.duration_ms, live)),
        h('td', null, itemsText(r)),
        h('td', { class: 'num' }, String(r.events)),
        h('td', { class: `num${r.errors ? ' has-errors' : ''}`, title: (r.last_errors || []).join('\n') || null }, String(r.errors)));
    })));
}

function figuresTable(kind, figures) {
  const k = KINDS[kind];
  return h('table', { class: 'grid-table figures', 'data-test': 'figures' },
    h('caption', { class: 'sr-only' }, `Figures per ${k.nameLabel.toLowerCase()}`),
    h('thead', null, h('tr', null, [k.nameLabel, 'Tenant', 'Runs', 'By status', 'Success rate', 'p50', 'p95', 'Runs / day', 'Median gap', 'Last run']
      .map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, figures.map((f) => {
      const name = f[k.name];
      const by = f.runs_by_status || {};
      const filter = { [k.name]: name ?? '', tenant: f.tenant ?? '', kind: kind === 'batches' ? 'batches' : '' };
      return h('tr', { 'data-test': 'figure', 'data-name': name ?? '', 'data-tenant': f.tenant ?? '' },
        h('th', { scope: 'row', class: 'clip' }, name ? h('a', { href: routeHref('/processes', filter), title: `Only ${name}` }, name) : h('span', { class: 'muted' }, '(no name)')),
        h('td', { class: 'clip' }, f.tenant ?? h('span', { class: 'muted' }, 'none')),
        h('td', { class: 'num' }, String(f.executions)),
        h('td', null, h('span', { class: 'by-status' }, RUN_STATUSES.filter((s) => by[s]).map((s) => h('span', { class: `chip run-${s}` }, `${by[s]} ${s}`)))),
        h('td', { class: 'num', 'data-test': 'success-rate', 'data-rate': f.success_rate ?? '' }, rateEl(f.success_rate)),
        h('td', { class: 'num', 'data-test': 'p50' }, durationEl(f.duration_p50_ms)),
        h('td', { class: 'num', 'data-test': 'p95' }, durationEl(f.duration_p95_ms)),
        h('td', { class: 'num' }, Number(f.runs_per_day).toFixed(f.runs_per_day >= 10 ? 0 : 1)),
        h('td', { class: 'num' }, fmtDuration(f.median_start_gap_ms)),
        h('td', null, f.last_run ? [h('a', { href: runHref(kind, { id: f.last_run.id, tenant: f.tenant }) }, f.last_run.id), ' ', runStatusEl(f.last_run.status)] : '—'));
    })));
}

function rateEl(r) {
  if (r === null || r === undefined) return h('span', { class: 'muted', title: 'No finished run yet' }, '—');
  const band = r >= 0.95 ? 'good' : r >= 0.8 ? 'fair' : 'poor';
  return h('span', { class: `rate rate-${band}` }, fmtRate(r));
}

function emptyRuns(kind, filtered) {
  if (filtered) {
    return h('div', { class: 'empty', 'data-test': 'empty' }, h('h2', null, `No matching ${KINDS[kind].whats}`),
      h('p', null, 'Nothing matches these filters. ', h('a', { href: routeHref('/processes', { kind: kind === 'batches' ? kind : '' }) }, 'Clear the filters'), '.'));
  }
  const id = kind === 'batches' ? 'batch_id' : 'process_id';
  const sample = kind === 'batches'
    ? '{"action": "bulk_update", "source": "scheduled", "batch_id": "b-7", "phase": "started", "items_total": 500}'
    : '{"action": "export_started", "source": "scheduled", "process_name": "nightly_export", "process_id": "run-42", "phase": "started"}';
  return h('div', { class: 'empty', 'data-test': 'empty' },
    h('h2', null, `No ${KINDS[kind].whats} yet`),
    h('p', null, 'An event becomes part of a ', KINDS[kind].what, ' when it carries ', h('code', null, id),
      kind === 'batches' ? ' (named by the action of its first event with a phase)' : [' (and ', h('code', null, 'process_name'), ' to be counted per process)'],
      ': its events with the same tenant and id are one run. It reports ', h('code', null, 'phase=started'), ', any ', h('code', null, 'phase=progress'),
      ' with cumulative item counts, then ', h('code', null, 'phase=finished'), ' with the outcome as ', h('code', null, 'status'), '.'),
    h('pre', null, h('code', null, sample)),
    h('p', { class: 'muted' }, 'Runs are derived from the events of the last ', h('code', null, '[processes] horizon_hours'),
      ' (default 168). A run with no finished report is running, and stuck once it runs far longer than its process usually does.'));
}

function filterForm(kind, params, me, onApply) {
  const k = KINDS[kind];
  const ctl = (name, label, input) => h('div', { class: 'ctl' }, h('label', { for: `pf-${name}` }, label), input);
  const text = (name, placeholder) => h('input', { id: `pf-${name}`, name, type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder, value: params.get(name) || '' });
  const tenants = me && Array.isArray(me.tenants) ? me.tenants : null;
  const statusSel = h('select', { id: 'pf-status', name: 'status' }, h('option', { value: '' }, 'any'),
    RUN_STATUSES.map((s) => h('option', { value: s, selected: params.get('status') === s }, s)));
  const tenantCtl = tenants
    ? h('select', { id: 'pf-tenant', name: 'tenant' }, h('option', { value: '' }, 'any'), tenants.map((t) => h('option', { value: t, selected: params.get('tenant') === t }, t)))
    : text('tenant', 'acme');
  const form = h('form', { class: 'filters filters-compact', role: 'search', 'aria-label': `Filter the ${k.whats}`, novalidate: true },
    h('div', { class: 'grid' },
      ctl('tenant', 'Tenant', tenantCtl),
      ctl(k.name, k.nameLabel, text(k.name, kind === 'batches' ? 'bulk_update' : 'nightly_export')),
      ctl('status', 'Status', statusSel),
      ctl('since', 'Started since', text('since', '24h or 2026-12-01')),
      ctl('until', 'Started before', text('until', 'RFC 3339')),
      h('div', { class: 'form-actions' },
        h('button', { type: 'submit', class: 'primary' }, 'Apply'),
        h('button', { type: 'button', onclick: () => onApply(new URLSearchParams(kind === 'batches' ? { kind } : {})) }, 'Clear'))));
  const collect = () => {
    const p = new URLSearchParams();
    for (const [key, v] of params) if (!FILTERS.includes(key) || key === 'limit') p.append(key, v);
    for (const el of form.querySelectorAll('[name]')) if (el.value.trim()) p.set(el.name, el.value.trim());
    return p;
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); onApply(collect()); });
  form.addEventListener('change', (e) => { if (e.target.tagName === 'SELECT') onApply(collect()); });
  const showError = (err) => {
    const el = err.field && form.querySelector(`[name="${CSS.escape(err.field)}"]`);
    if (!el) return false;
    markInvalid(el, err);
    return true;
  };
  return { el: form, showError };
}

/** #/processes?kind=&tenant=&process_name|action=&status=&since=&until=&limit= */
export function mountProcesses(root, ctx) {
  let params = new URLSearchParams(ctx.route.params);
  const heading = h('h1', { tabindex: '-1' }, 'Processes');
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Kind of run' });
  const body = h('div', { 'aria-live': 'off' });
  root.append(h('section', { class: 'view view-processes' }, heading, tabs, body));
  let ctrl = null;

  async function load() {
    const kind = params.get('kind') === 'batches' ? 'batches' : 'processes';
    const k = KINDS[kind];
    const inTabs = tabs.contains(document.activeElement);
    clear(tabs).append(h('ul', null, Object.entries(KINDS).map(([key, v]) => h('li', null,
      h('a', { href: routeHref('/processes', key === 'batches' ? { kind: key } : {}), 'aria-current': key === kind ? 'page' : null, 'data-test': `tab-${key}` },
        v.whats[0].toUpperCase() + v.whats.slice(1))))));
    if (inTabs) tabs.querySelector('[aria-current=page]')?.focus();
    if (ctrl) ctrl.abort();
    ctrl = new AbortController();
    const signal = ctrl.signal;
    const p = new URLSearchParams(params);
    p.delete('kind');
    const form = filterForm(kind, params, ctx.me, (next) => {
      const href = routeHref('/processes', next);
      if (href === location.hash) load(); else location.hash = href;
    });
    const errors = h('div', { class: 'errors' });
    const content = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted', role: 'status' }, `Loading ${k.whats}…`));
    const had = body.contains(document.activeElement) ? document.activeElement.getAttribute('name') : null;
    clear(body).append(form.el, errors, content);
    if (had) form.el.querySelector(`[name="${CSS.escape(had)}"]`)?.focus();
    // Stuck runs first: asked for apart (newest 1,000), so none hides beyond `limit`.
    const wantStuck = !p.get('status');
    let main; let stuck;
    try {
      const sp = new URLSearchParams(p);
      sp.set('status', 'stuck');
      sp.set('limit', '1000');
      [main, stuck] = await Promise.all([api.get(k.list, p, { signal }), wantStuck ? api.get(k.list, sp, { signal }) : null]);
    } catch (err) {
      if (err.name === 'AbortError') return;
      clear(content);
      content.removeAttribute('aria-busy');
      if (err.status !== 401 && !form.showError(err)) errors.append(errorEl(err));
      ctx.setReady();
      return;
    }
    const runs = main[k.runs] || [];
    const stuckRuns = wantStuck ? (stuck[k.runs] || []) : runs.filter((r) => r.status === 'stuck');
    const stuckIds = new Set(stuckRuns.map((r) => `${r.tenant}\u0000${r.id}`));
    const rest = runs.filter((r) => !stuckIds.has(`${r.tenant}\u0000${r.id}`));
    const filtered = [...p].some(([key, v]) => v && key !== 'limit');
    clear(content);
    content.removeAttribute('aria-busy');
    if (main.complete === false) {
      content.append(h('p', { class: 'notice', role: 'status' }, 'Stele is still replaying the log after its start: the runs and figures are not complete yet.'));
    }
    if (!runs.length && !stuckRuns.length) {
      content.append(emptyRuns(kind, filtered));
      ctx.setReady();
      return;
    }
    if (stuckRuns.length) {
      const n = stuckRuns.length;
      const owner = kind === 'batches' ? 'operation' : 'process';
      const sentence = n === 1
        ? `1 ${k.what} is stuck: running far longer than its ${owner} usually takes, with no finished report.`
        : `${n} ${k.whats} are stuck: running far longer than their ${owner} usually takes, with no finished report.`;
      content.append(h('section', { class: 'stuck-box', 'aria-labelledby': 'stuck-title', 'data-test': 'stuck' },
        h('h2', { id: 'stuck-title' }, h('span', { class: 'warn-icon', 'aria-hidden': 'true' }, '!'), `${n} stuck ${n === 1 ? k.what : k.whats}`),
        h('p', { role: 'status' }, sentence, n === 1 ? ' Check whether it still works, or report it finished with status canceled.'
          : ' Check whether each still works, or report it finished with status canceled.'),
        runsTable(kind, stuckRuns, `Stuck ${k.whats}`)));
      announce(sentence);
    }
    const figures = main[k.figures] || [];
    content.append(h('section', { class: 'figures-box', 'aria-labelledby': 'fig-title' },
      h('h2', { id: 'fig-title' }, `Per ${k.nameLabel.toLowerCase()}`),
      figures.length ? figuresTable(kind, figures) : h('p', { class: 'muted' }, 'No figures.'),
      h('p', { class: 'muted small' }, 'Success rate: succeeded / finished runs. p50 and p95: durations of the finished runs (nearest rank). Figures cover every status of the selected runs.')));
    const shown = rest.length;
    const other = main.matched - runs.filter((r) => stuckIds.has(`${r.tenant}\u0000${r.id}`)).length;
    content.append(h('section', { class: 'runs-box', 'aria-labelledby': 'runs-title' },
      h('h2', { id: 'runs-title' }, wantStuck && stuckRuns.length ? `Other ${k.whats}` : `${k.whats[0].toUpperCase()}${k.whats.slice(1)}`),
      h('p', { class: 'muted', 'data-test': 'matched' }, shown < other
        ? `The ${shown} newest of ${other}, newest start first (narrow the filters or the time to see older ones).`
        : `${shown} ${shown === 1 ? k.what : k.whats}, newest start first.`),
      shown ? runsTable(kind, rest, `${k.whats}, newest start first`) : null));
    ctx.setReady();
  }

  load();
  return {
    update(route) {
      if (route.name !== 'processes') return false;
      const next = new URLSearchParams(route.params);
      if (next.toString() !== params.toString()) { params = next; load(); }
      return true;
    },
    unmount() { if (ctrl) ctrl.abort(); },
  };
}

function runFacts(kind, r) {
  const rows = [
    [kind === 'batches' ? 'Action' : 'Process', (kind === 'batches' ? r.action : r.process_name) ?? '—'],
    kind === 'batches' ? ['Process run', r.process_id ? h('a', { href: runHref('processes', { id: r.process_id, tenant: r.tenant }) }, r.process_id) : '—'] : null,
    ['Tenant', r.tenant ?? h('span', { class: 'muted' }, 'none')],
    ['Status', runStatusEl(r.status)],
    ['Started', [utcText(r.started_at), ' ', h('span', { class: 'muted' }, '(', timeEl(r.started_at), ')')]],
    ['Finished', r.finished_at ? [utcText(r.finished_at), ' ', h('span', { class: 'muted' }, '(', timeEl(r.finished_at), ')')] : h('span', { class: 'muted' }, 'not yet')],
    ['Duration', durationEl(r.duration_ms, !r.finished_at)],
    ['Items', itemsText(r)],
    ['Events', String(r.events)],
    ['Errors', String(r.errors)],
    ['Last event', utcText(r.last_event_at)],
    ['Seqs', `${r.first_seq} … ${r.last_seq}`],
  ].filter(Boolean);
  return h('dl', { class: 'fields run-facts', 'data-test': 'run-facts' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', { 'data-key': k }, v)]));
}

/** #/process/<id>?tenant=… and #/batch/<id>?tenant=…: one run and its events, oldest first. */
export function mountRun(root, ctx) {
  const kind = ctx.route.name === 'batch' ? 'batches' : 'processes';
  const k = KINDS[kind];
  const [id] = ctx.route.args;
  const tenantGiven = ctx.route.params.has('tenant');
  const tenant = ctx.route.params.get('tenant');
  const path = `${k.list}/${seg(id)}`;
  const head = h('div', { class: 'run-head' });
  const errors = h('div', { class: 'errors' });
  const listBox = h('div');
  const back = routeHref('/processes', kind === 'batches' ? { kind } : {});
  const view = h('article', { class: 'view view-run', 'data-test': 'run-view', 'aria-busy': 'true' },
    h('p', { class: 'crumbs' }, h('a', { href: back }, `← ${k.whats[0].toUpperCase()}${k.whats.slice(1)}`)),
    h('h1', { tabindex: '-1' }, `${k.what[0].toUpperCase()}${k.what.slice(1)} `, h('code', null, id)),
    head, errors, listBox);
  root.append(view);
  const base = new URLSearchParams();
  if (tenantGiven) base.set('tenant', tenant);
  base.set('order', 'asc');
  let shownRun = false;
  const list = resultsList({
    fetchPage: async (cursor, signal) => {
      const p = new URLSearchParams(base);
      if (cursor) p.set('cursor', cursor); else p.set('total', 'true');
      const page = await api.get(path, p, { signal, keepEmpty: true });
      if (!shownRun) { shownRun = true; showRun(page[kind === 'batches' ? 'batch' : 'run'], page.total); }
      return page;
    },
    onFirst: () => { view.removeAttribute('aria-busy'); ctx.setReady(); },
    onError: (err, first) => {
      if (err.status === 401) return true;
      errors.append(errorEl(err));
      if (first && err.status === 409 && Array.isArray(err.problem.tenants)) {
        errors.append(h('p', null, 'Pick the tenant:'), h('ul', null, err.problem.tenants.map((t) =>
          h('li', null, h('a', { href: routeHref(`/${k.one}/${seg(id)}`, { tenant: t ?? '' }, ['tenant']) }, t ?? '(no tenant)')))));
      }
      return true;
    },
    empty: () => h('div', { class: 'empty', 'data-test': 'empty' }, h('p', null, 'No events of this run are stored any more (retention may have removed them).')),
  });
  const caption = list.el.querySelector('caption');
  if (caption) caption.textContent = 'The run’s events, oldest first. Arrow keys move between rows, Enter opens one.';

  function showRun(r, total) {
    if (!r) return;
    const eventsHref = routeHref('/events', { [kind === 'batches' ? 'batch_id' : 'process_id']: r.id, tenant: r.tenant ?? '' });
    head.append(...[
      r.status === 'stuck' ? h('p', { class: 'stuck-banner', role: 'alert', 'data-test': 'stuck-banner' },
        h('span', { class: 'warn-icon', 'aria-hidden': 'true' }, '!'),
        ` This ${k.what} is stuck: started ${utcText(r.started_at)}, running for ${fmtDuration(r.duration_ms)} with no finished report.`) : null,
      h('div', { class: 'run-cols' },
        runFacts(kind, r),
        r.last_errors && r.last_errors.length ? h('div', { class: 'last-errors' }, h('h2', null, 'Last errors'),
          h('ul', null, r.last_errors.map((e) => h('li', null, e)))) : null),
      h('div', { class: 'toolbar' },
        h('h2', { class: 'inline' }, 'Events ', h('span', { class: 'muted', 'data-test': 'total' }, `(${total ?? r.events})`)),
        h('a', { href: eventsHref }, 'Open in Events'),
        kind === 'processes' && r.process_name
          ? h('a', { href: routeHref('/findings', { process_name: r.process_name, tenant: r.tenant ?? '' }), 'data-test': 'run-findings' }, `Findings about ${r.process_name}`)
          : null)].filter(Boolean));
  }

  listBox.append(list.el);
  list.start();
  return { unmount() { list.destroy(); } };
}
