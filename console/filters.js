// The filter bar, built from GET /v1/fields (the fields that have a filter
// parameter, an enum's values) with a fallback when the server cannot say.
// Every input's `name` is its API parameter (browser tests rely on it).

import * as api from './api.js';
import { h, clear, markInvalid, SEVERITIES } from './dom.js';

// Shown at once (the filters users reach for); the rest under "More filters".
const PRIMARY = ['tenant', 'action', 'category', 'severity', 'min_severity', 'status', 'source',
  'user_id', 'entity_type', 'entity_id', 'risk_score', 'ip', 'correlation_id', 'session_id', 'process_name'];
const MORE = ['actor', 'user_name', 'ingested_by', 'process_id', 'batch_id', 'phase', 'risk_rules',
  'duration_ms', 'stele_records'];
const TIME = ['since', 'until'];
/** Parameters of the bar that are not filters of the API (none today). */
export const PRESETS = [['15m', '15 min'], ['1h', '1 h'], ['24h', '24 h'], ['7d', '7 days'], ['30d', '30 days']];

const LABELS = {
  tenant: 'Tenant', action: 'Action', category: 'Category', severity: 'Severity',
  min_severity: 'Min severity', status: 'Status', source: 'Source', user_id: 'User id',
  entity_type: 'Entity type', entity_id: 'Entity id', risk_score: 'Risk', ip: 'IP',
  correlation_id: 'Correlation id', session_id: 'Session id', process_name: 'Process name',
  actor: 'Actor', user_name: 'User name', ingested_by: 'Ingested by', process_id: 'Process run id',
  batch_id: 'Batch id', phase: 'Phase', risk_rules: 'Risk rule', duration_ms: 'Duration (ms)',
  stele_records: "Stele's own records", q: 'Search', since: 'Since', until: 'Until',
};
const PLACEHOLDERS = {
  risk_score: 'low, 71..100', duration_ms: '1000..5000', ip: '10.0.0.1',
  since: '15m, 2026-11-28 or RFC 3339', until: '2026-11-30T12:00:00Z',
};
const FALLBACK_ENUMS = {
  severity: SEVERITIES,
  status: ['success', 'failure', 'pending', 'canceled', 'partial'],
  source: ['user', 'system', 'integration', 'scheduled'],
  phase: ['started', 'progress', 'finished'],
};

let specPromise = null;
/** GET /v1/fields once per page: {byFilter: Map(param → field), extra: [params]}. */
export function fieldSpec() {
  if (!specPromise) {
    specPromise = api.get('/v1/fields').then((spec) => {
      const byFilter = new Map();
      for (const f of spec.fields || []) if (f.filter) byFilter.set(f.filter, f);
      return { byFilter, query: spec.parameters?.query || [] };
    }).catch((e) => {
      specPromise = null; // try again next time
      if (e.status === 401) throw e;
      return { byFilter: new Map(), query: [] };
    });
  }
  return specPromise;
}

function enumValues(param, spec) {
  if (param === 'min_severity') return (spec.byFilter.get('severity')?.values) || SEVERITIES;
  if (param === 'risk_score') return ['low', 'medium', 'high'];
  if (param === 'stele_records') return ['include', 'only', 'exclude'];
  const f = spec.byFilter.get(param);
  if (f && f.kind === 'enum' && Array.isArray(f.values)) return f.values;
  return FALLBACK_ENUMS[param] || null;
}

/** The controls' parameter names, in order (without the excluded ones). */
function paramsOf(spec, exclude) {
  const known = new Set([...PRIMARY, ...MORE, ...TIME, 'q']);
  const extra = [];
  for (const p of spec.byFilter.keys()) if (!known.has(p)) extra.push(p);
  // Parameters of the listing that are not fields' filters (min_severity, risk_score…) are known above.
  const keep = (p) => !exclude.includes(p) && (spec.byFilter.size === 0 || spec.byFilter.has(p) ||
    ['min_severity', 'risk_score', 'stele_records', 'duration_ms', 'risk_rules'].includes(p) || spec.query.includes(p));
  return {
    primary: PRIMARY.filter(keep),
    more: [...MORE, ...extra.filter((p) => !['seq', 'id', 'timestamp', 'received_at'].includes(p))].filter(keep),
  };
}

/**
 * The filter bar. `onApply(params)` gets a URLSearchParams of the non-empty
 * filters, plus the parameters of the URL the bar has no control for (a shared
 * link's `sort`, `order`…), which it keeps as they are.
 */
export function filterBar({ params, exclude = [], onApply }) {
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filters', novalidate: true });
  const controls = new Map(); // param → input/select
  let current = new URLSearchParams(params);
  let moreDetails = null;
  let spec = null;

  const general = h('div', { class: 'filter-errors' });

  function control(param, values) {
    const id = `f-${param}`;
    let input;
    if (values) {
      input = h('select', { id, name: param },
        h('option', { value: '' }, 'any'),
        values.map((v) => h('option', { value: v }, v)));
    } else {
      input = h('input', { id, name: param, type: 'text', autocomplete: 'off', spellcheck: 'false',
        placeholder: PLACEHOLDERS[param] || '' });
      const f = spec.byFilter.get(param);
      if (f && f.groupable) {
        const list = h('datalist', { id: `${id}-values` });
        input.setAttribute('list', list.id);
        input.addEventListener('focus', () => suggest(param, f.name, list), { once: false });
        return wrap(param, input, list);
      }
    }
    return wrap(param, input);
  }

  function wrap(param, input, ...rest) {
    controls.set(param, input);
    input.addEventListener('change', () => { if (input.tagName === 'SELECT') apply(); });
    return h('div', { class: 'ctl' }, h('label', { for: input.id }, LABELS[param] || param), input, ...rest);
  }

  const suggested = new Map();
  async function suggest(param, field, list) {
    const others = new URLSearchParams(current);
    others.delete(param);
    others.set('top', '50');
    const key = `${field}?${others}`;
    if (suggested.get(param) === key) return;
    suggested.set(param, key);
    try {
      const r = await api.get(`/v1/fields/${encodeURIComponent(field)}/values`, others);
      clear(list);
      for (const v of r.values || []) {
        if (v.value === null || v.value === undefined) continue;
        list.append(h('option', { value: String(v.value) }, `${v.value} (${v.count})`));
      }
    } catch { suggested.delete(param); /* suggestions are a convenience */ }
  }

  function collect() {
    const p = new URLSearchParams();
    const mine = new Set(controls.keys());
    for (const [k, v] of current) if (!mine.has(k) && !exclude.includes(k)) p.append(k, v);
    for (const [k, input] of controls) {
      const v = input.value.trim();
      if (v) p.set(k, v);
    }
    return p;
  }

  function apply() {
    clearErrors();
    onApply(collect());
  }

  function sync(next) {
    current = new URLSearchParams(next);
    for (const [k, input] of controls) {
      const v = current.get(k) || '';
      if (input.tagName === 'SELECT' && v && ![...input.options].some((o) => o.value === v)) {
        input.append(h('option', { value: v }, v));
      }
      input.value = v;
    }
    for (const b of form.querySelectorAll('button[data-preset]')) {
      const on = (current.get('since') || '') === b.dataset.preset && !current.get('until');
      b.setAttribute('aria-pressed', String(on));
    }
    if (moreDetails) {
      const n = [...moreDetails.querySelectorAll('[name]')].filter((i) => i.value).length;
      moreDetails.querySelector('summary').textContent = n ? `More filters (${n} set)` : 'More filters';
      if (n) moreDetails.open = true;
    }
  }

  function clearErrors() {
    clear(general);
    for (const el of form.querySelectorAll('.ctl .error')) el.remove();
    for (const input of controls.values()) {
      input.removeAttribute('aria-invalid');
      input.removeAttribute('aria-describedby');
    }
  }

  /** Shows `err` near its control (its `field`); false when it concerns none. */
  function showError(err) {
    const input = err.field && controls.get(err.field);
    if (!input) return false;
    markInvalid(input, err);
    const d = input.closest('details');
    if (d) d.open = true;
    return true;
  }

  function build() {
    const { primary, more } = paramsOf(spec, exclude);
    const q = exclude.includes('q') ? null : h('input', { id: 'f-q', name: 'q', type: 'search', autocomplete: 'off',
      spellcheck: 'false', placeholder: '"password reset" action:login NOT status:success', 'aria-describedby': 'q-help' });
    if (q) controls.set('q', q);
    const help = h('details', { class: 'q-help', id: 'q-help' },
      h('summary', null, 'Search syntax'),
      h('ul', null,
        h('li', null, h('code', null, 'word'), ' searches descriptions, names, user agents, changes and metadata values'),
        h('li', null, h('code', null, '"password reset"'), ' an exact phrase'),
        h('li', null, h('code', null, 'action:login'), ', ', h('code', null, 'user_id:u-42'), ' a field’s value'),
        h('li', null, h('code', null, 'login AND NOT status:success'), ', ', h('code', null, 'a OR b'), ', parentheses group'),
        h('li', null, h('code', null, 'risk_score:[71 TO 100]'), ', ', h('code', null, 'duration_ms:>1000'), ' ranges')));
    const time = h('fieldset', { class: 'time' },
      h('legend', null, 'Time'),
      h('div', { class: 'presets', role: 'group', 'aria-label': 'Time presets' },
        PRESETS.map(([v, label]) => h('button', { type: 'button', class: 'preset', 'data-preset': v, 'aria-pressed': 'false',
          onclick: () => { controls.get('since').value = v; controls.get('until').value = ''; apply(); } }, label)),
        h('button', { type: 'button', class: 'preset', 'data-preset': '', 'aria-pressed': 'false',
          onclick: () => { controls.get('since').value = ''; controls.get('until').value = ''; apply(); } }, 'All time')),
      TIME.filter((p) => !exclude.includes(p)).map((p) => control(p, null)));
    form.append(
      q ? h('div', { class: 'q-row' },
        h('div', { class: 'ctl ctl-q' }, h('label', { for: 'f-q' }, 'Search'), q),
        h('button', { type: 'submit', class: 'primary' }, 'Apply'),
        h('button', { type: 'button', onclick: () => { for (const i of controls.values()) i.value = ''; apply(); } }, 'Clear all'))
        : h('div', { class: 'q-row' }, h('button', { type: 'submit', class: 'primary' }, 'Apply')),
      q ? help : null,
      time,
      h('div', { class: 'grid' }, primary.map((p) => control(p, enumValues(p, spec)))),
      more.length ? (moreDetails = h('details', { class: 'more' }, h('summary', null, 'More filters'),
        h('div', { class: 'grid' }, more.map((p) => control(p, enumValues(p, spec)))))) : null,
      general);
    sync(current);
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); apply(); });
  form.addEventListener('change', (e) => {
    // Text fields apply when they change (Enter or leaving them); selects at once (above).
    if (e.target.tagName === 'INPUT' && e.target.name) apply();
  });

  const ready = fieldSpec().then((s) => { spec = s; build(); });
  return { el: form, ready, sync, showError, clearErrors, general, get params() { return collect(); } };
}

/** Whether `params` hold any filter (the empty state differs: no events at all vs no matches). */
export function hasFilters(params) {
  for (const [, v] of new URLSearchParams(params)) if (v) return true;
  return false;
}
