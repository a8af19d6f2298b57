// #/admin (admin role only): the operator's page.
//   Status     GET /readyz (state: index lag, seal: digests, checkpoints, scrub)
//              and GET /v1/checkpoint (the newest signed checkpoint)
//   Holds      GET/POST /v1/holds, DELETE /v1/holds/{name}   (holds.js)
//   Retention  GET /v1/retention (the dry run: what retention drops now, and why)
//   Segments   GET /v1/segments (sizes, seq ranges, SHA-256 a backup must have)
// Every section loads on its own: one failing shows its sentence, the others
// still show. Nothing refreshes by itself; "Refresh" reads everything again.

import * as api from './api.js';
import { h, clear, errorEl, announce, utcText, timeEl } from './dom.js';
import { holdsSection } from './holds.js';

// The indexer commits every second: a few events behind is normal under ingest.
const LAG_WARN = 10_000;

const num = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '—');
const plural = (n, one, many) => `${num(n)} ${n === 1 ? one : many}`;

/** "16.0 KiB" (binary units), the exact bytes in a title by the caller. */
export function bytesText(n) {
  if (typeof n !== 'number') return '—';
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n; let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return u === 0 ? plural(n, 'byte', 'bytes') : `${v.toFixed(1)} ${units[u]}`;
}

/** A long hex value: monospace, cut to the cell with the full value on hover, and a Copy button. */
function hashEl(hex, what, test) {
  const code = h('code', { class: 'hash', title: hex, 'data-test': test }, hex);
  const copy = h('button', { type: 'button', class: 'copy', 'aria-label': `Copy ${what}` }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(hex);
      announce(`Copied ${what}.`);
      copy.textContent = 'Copied';
      setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
    } catch {
      // No clipboard access: select the value so that Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents(code);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      announce('The value is selected: press Ctrl+C to copy it.');
    }
  });
  return h('span', { class: 'hash-box' }, code, copy);
}

/** One figure of the status grid: a label, the value, and what it means. */
function stat(test, label, value, note, tone) {
  return h('div', { class: `stat${tone ? ` stat-${tone}` : ''}`, 'data-test': `stat-${test}` },
    h('dt', null, label),
    h('dd', null, h('span', { class: 'stat-value', 'data-test': test }, value), note ? h('span', { class: 'stat-note muted' }, note) : null));
}

function section(title, intro, body, test) {
  const id = `admin-${test}`;
  return h('section', { class: 'admin-section', 'aria-labelledby': id, 'data-test': `${test}-section` },
    h('h2', { id, tabindex: '-1' }, title), intro ? h('p', { class: 'muted intro' }, intro) : null, body);
}

/** A command, kept on one line. */
function cmd(text) { return h('code', { class: 'cmd' }, text); }

function loadingEl() { return h('p', { class: 'muted', role: 'status' }, 'Loading…'); }

/** A list of findings ("segment — why"), or nothing when there is none. */
function findings(title, items, test) {
  if (!items || !items.length) return null;
  return h('div', { class: 'findings', 'data-test': test },
    h('h3', null, title),
    h('ul', null, items.map((t) => h('li', null, t))));
}

function statusBody(ready, cp) {
  const out = [];
  const { state } = ready;
  const seal = state.seal || {};
  // The banner: ready, degraded (still serving) or not ready (the 503's sentence).
  if (ready.notReady) {
    out.push(h('p', { class: 'banner banner-bad', 'data-test': 'readiness' }, h('strong', null, 'Not ready: '), ready.notReady));
  } else if (ready.degraded) {
    out.push(h('p', { class: 'banner banner-warn', 'data-test': 'readiness' }, h('strong', null, 'Ready, degraded: '),
      'Stele takes events and answers queries, but something below needs an operator.'));
  } else {
    out.push(h('p', { class: 'banner banner-ok', 'data-test': 'readiness' }, h('strong', null, 'Ready: '), 'nothing needs attention.'));
  }

  const checkpoint = seal.checkpoint;
  let cpValue; let cpNote; let cpTone = null;
  if (checkpoint === null || checkpoint === undefined) {
    cpValue = 'off';
    cpNote = ['No signing key: no checkpoint and no daily digest is signed (', cmd('stele keygen --signing'), ').'];
    cpTone = 'warn';
  } else if (checkpoint.seq === null || checkpoint.seq === undefined) {
    cpValue = 'none yet';
    cpNote = 'No checkpoint was signed since the start: one follows within a checkpoint interval of the next event.';
  } else {
    cpValue = `seq ${num(checkpoint.seq)}`;
    cpNote = ['The newest chain head signed since the start; a copy kept off the box lets ', cmd('stele verify --checkpoint'), ' detect any change up to it.'];
  }
  if (checkpoint && checkpoint.error) cpTone = 'bad';

  const lag = state.lag_events;
  out.push(h('dl', { class: 'stats' },
    stat('lag', 'Index lag', plural(lag, 'event', 'events'),
      `Durable events not yet searchable: the log ends at seq ${num(state.log_last_seq)}, queries see it up to seq ${num(state.indexed_seq)}.`,
      lag > LAG_WARN ? 'warn' : null),
    stat('verified-through', 'Verified through', `seq ${num(seal.verified_through)}`,
      seal.verified_through > 0
        ? 'Every event up to this seq is covered by a signed daily digest or was verified at start against a signed checkpoint.'
        : 'No event is covered yet by a signed daily digest or a checkpoint verified at start; a day is signed about a minute after its UTC midnight.'),
    stat('startup-check', 'Start-up verification', seal.startup_check_done ? 'done' : 'running',
      'The check, in the background, of what an earlier process wrote against its last signed checkpoint.',
      seal.startup_check_done ? null : 'warn'),
    stat('checkpoint', 'Newest checkpoint', cpValue, cpNote, cpTone),
    stat('digester-runs', 'Digester runs', num(seal.digester_runs),
      'Runs since the start of the task that signs each closed UTC day (about a minute after midnight); a failure is listed under problems.'),
    stat('scrub-passes', 'Scrub passes', num(seal.scrub_passes),
      'Complete passes since the start that re-hash every sealed segment against its signed digest; a mismatch marks the segment damaged.'),
    stat('damaged', 'Damaged segments', num((seal.damaged_segments || []).length),
      'Found changed or damaged by the start-up check or the scrubber; their reads fail.', (seal.damaged_segments || []).length ? 'bad' : null),
    stat('unsigned', 'Unsigned days', num((seal.unsigned_days || []).length),
      ['Closed days no running Stele witnessed, so none can be signed; resolve with ', cmd('stele sign-days'), '.'], (seal.unsigned_days || []).length ? 'bad' : null)));

  if (checkpoint && checkpoint.error) {
    out.push(h('p', { class: 'error', 'data-test': 'checkpoint-error' }, 'The last checkpoint did not reach the local file or a witness: ', api.sentence(checkpoint.error)));
  }
  // GET /v1/checkpoint: the exact signed line, to save off the machine.
  if (cp && cp.value) {
    const c = cp.value;
    out.push(h('div', { class: 'checkpoint', 'data-test': 'checkpoint-detail' },
      h('h3', null, 'Newest signed checkpoint (GET /v1/checkpoint)'),
      h('dl', { class: 'kv' },
        h('dt', null, 'Seq'), h('dd', { 'data-test': 'cp-seq' }, num(c.seq)),
        h('dt', null, 'Signed at'), h('dd', null, timeEl(c.time), h('span', { class: 'muted' }, ` (${utcText(c.time)})`)),
        h('dt', null, 'Key id'), h('dd', null, h('code', { 'data-test': 'cp-key' }, c.key_id)),
        h('dt', null, 'Chain hash'), h('dd', null, hashEl(c.chain_hash, 'the checkpoint’s chain hash', 'cp-chain')))));
  } else if (cp && cp.error && cp.error.status !== 401) {
    out.push(h('p', { class: 'muted', 'data-test': 'checkpoint-detail' }, 'Newest signed checkpoint: ', cp.error.message));
  }

  out.push(findings('Damaged segments', (seal.damaged_segments || []).map((d) => `${d.segment}: ${api.sentence(d.why)}`), 'damaged-list'));
  out.push(findings('Unsigned days', (seal.unsigned_days || []).map((d) => `${d.day}: ${api.sentence(d.why)}`), 'unsigned-list'));
  out.push(findings('Unreadable segments', (state.unreadable_segments || []).map((u) =>
    `${u.segment}: ${plural(u.failed_reads, 'failed read', 'failed reads')}, last: ${api.sentence(u.error)}`), 'unreadable-list'));
  const problems = seal.problems || [];
  out.push(problems.length ? findings('Problems', problems.map((p) => api.sentence(p)), 'problems')
    : h('p', { class: 'muted', 'data-test': 'problems' }, 'The seal reports no problem.'));
  return out;
}

function retentionBody(plan) {
  const cfg = plan.config || {};
  const tenants = Object.entries(cfg.tenants || {});
  const hours = cfg.interval_secs % 3600 === 0 ? ` (${plural(cfg.interval_secs / 3600, 'hour', 'hours')})` : '';
  const summary = h('dl', { class: 'kv', 'data-test': 'retention-config' },
    h('dt', null, 'Today (UTC)'), h('dd', { 'data-test': 'ret-today' }, plan.today),
    h('dt', null, 'Oldest seq kept'), h('dd', { 'data-test': 'ret-first-seq' }, num(plan.first_seq)),
    h('dt', null, 'Global TTL'), h('dd', { 'data-test': 'ret-days' },
      cfg.days ? `${plural(cfg.days, 'day', 'days')} after the UTC day an event was received${tenants.length ? ', for tenants without their own' : ''}`
        : 'none: a day holding an event without a tenant TTL is kept forever'),
    h('dt', null, 'Tenant TTLs'), h('dd', { 'data-test': 'ret-tenants' },
      tenants.length ? tenants.map(([t, d], i) => [i ? ', ' : '', h('span', { 'data-tenant': t, 'data-days': d }, `${t}: ${plural(d, 'day', 'days')}`)])
        : h('span', { class: 'muted' }, 'none')),
    h('dt', null, 'Runs'), h('dd', { 'data-test': 'ret-interval' }, `at start and every ${num(cfg.interval_secs)} s${hours}`));

  const days = plan.days || [];
  const table = days.length ? h('table', { class: 'admin-table plan-table' },
    h('caption', { class: 'sr-only' }, 'Every UTC day of the log and what retention does with it now'),
    h('thead', null, h('tr', null,
      h('th', { scope: 'col' }, 'UTC day'), h('th', { scope: 'col' }, 'Segments'), h('th', { scope: 'col', class: 'num' }, 'Seqs'),
      h('th', { scope: 'col', class: 'num' }, 'Events'), h('th', { scope: 'col', class: 'num' }, 'Age'), h('th', { scope: 'col', class: 'num' }, 'TTL'),
      h('th', { scope: 'col' }, 'Now'), h('th', { scope: 'col' }, 'Why'))),
    h('tbody', null, days.map((d) => h('tr', { 'data-test': 'plan-row', 'data-day': d.day, class: d.drop ? 'drop' : null },
      h('th', { scope: 'row', class: 'mono' }, d.day),
      h('td', { 'data-test': 'plan-segments', title: d.segments.join('\n') }, plural(d.segments.length, 'segment', 'segments')),
      h('td', { class: 'num', 'data-test': 'plan-seqs' }, d.events ? `${num(d.first_seq)}–${num(d.last_seq)}` : '—'),
      h('td', { class: 'num', 'data-test': 'plan-events' }, num(d.events)),
      h('td', { class: 'num', 'data-test': 'plan-age', title: 'Whole days since the day ended' }, d.age_days < 0 ? 'today' : plural(d.age_days, 'day', 'days')),
      h('td', { class: 'num', 'data-test': 'plan-ttl' }, d.ttl_days == null ? h('span', { class: 'muted' }, '—') : plural(d.ttl_days, 'day', 'days')),
      h('td', { 'data-test': 'plan-drop' }, d.drop ? h('strong', { class: 'verdict-drop' }, 'dropped') : h('span', { class: 'verdict-keep' }, 'kept')),
      h('td', { class: 'c-reason', 'data-test': 'plan-reason' }, api.sentence(d.reason)))))) : h('p', { class: 'muted' }, 'The log holds no day yet.');
  return [summary, table];
}

function segmentsBody(list) {
  const segs = list.segments || [];
  const sealed = segs.filter((s) => s.sealed).length;
  const total = h('p', { class: 'seg-total', 'data-test': 'segments-total', 'data-bytes': list.bytes },
    `${plural(segs.length, 'segment', 'segments')} (${num(sealed)} sealed), ${bytesText(list.bytes)} in all`,
    h('span', { class: 'muted' }, ` (${plural(list.bytes, 'byte', 'bytes')})`), '.');
  if (!segs.length) return [total];
  return [total, h('table', { class: 'admin-table seg-table' },
    h('caption', { class: 'sr-only' }, 'Segment files, oldest first; the last is the active one'),
    h('thead', null, h('tr', null,
      h('th', { scope: 'col' }, 'Segment file'), h('th', { scope: 'col' }, 'State'), h('th', { scope: 'col', class: 'num' }, 'Seqs'),
      h('th', { scope: 'col', class: 'num' }, 'Events'), h('th', { scope: 'col', class: 'num' }, 'Bytes'), h('th', { scope: 'col' }, 'SHA-256 of the file'))),
    h('tbody', null, segs.map((s) => h('tr', { 'data-test': 'segment-row', 'data-name': s.name },
      h('th', { scope: 'row', class: 'mono' }, s.name),
      h('td', null, s.sealed ? 'sealed' : h('strong', null, 'active')),
      h('td', { class: 'num' }, s.last_seq == null ? '—' : `${num(s.first_seq)}–${num(s.last_seq)}`),
      h('td', { class: 'num', 'data-test': 'seg-count' }, num(s.count)),
      h('td', { class: 'num', 'data-test': 'seg-bytes', title: bytesText(s.bytes) }, num(s.bytes)),
      h('td', { class: 'c-sha' }, s.sha256 ? hashEl(s.sha256, `the SHA-256 of ${s.name}`, 'seg-sha')
        : h('span', { class: 'muted', 'data-test': 'seg-sha' }, 'none while active: it changes until sealed'))))))];
}

/** GET `path` as {value} or {error}. */
async function settle(path) {
  try { return { value: await api.get(path) }; } catch (error) { return { error }; }
}

/** /readyz: 200 {ready, degraded, state}, or 503 whose problem carries `state`. */
async function readiness() {
  try {
    return { value: await api.get('/readyz') };
  } catch (error) {
    if (error.status === 503 && error.problem && error.problem.state) {
      return { value: { ready: false, degraded: true, notReady: error.message, state: error.problem.state } };
    }
    return { error };
  }
}

export function mountAdmin(root, ctx) {
  const heading = h('h1', { tabindex: '-1' }, 'Admin');
  const refreshBtn = h('button', { type: 'button', 'data-test': 'refresh' }, 'Refresh');
  const stamp = h('span', { class: 'muted', 'data-test': 'loaded-at', 'aria-live': 'polite' });
  const statusBox = h('div', { 'data-test': 'status' }, loadingEl());
  const retentionBox = h('div', { 'data-test': 'retention' }, loadingEl());
  const segmentsBox = h('div', { 'data-test': 'segments' }, loadingEl());
  let alive = true;
  let gen = 0;

  const holds = holdsSection({ onChange: () => { loadHolds(); } });

  const toc = h('nav', { class: 'admin-toc', 'aria-label': 'Admin sections' }, h('ul', null,
    [['admin-status', 'Status'], ['holds', 'Legal holds'], ['admin-retention', 'Retention plan'], ['admin-segments', 'Segments']].map(([id, label]) => {
      const b = h('button', { type: 'button', class: 'link' }, label);
      // Not a #fragment link: the hash is the router's.
      b.addEventListener('click', () => {
        const target = id === 'holds' ? holds.el.querySelector('h2') : document.getElementById(id);
        if (target) { target.scrollIntoView({ block: 'start' }); target.focus({ preventScroll: true }); }
      });
      return h('li', null, b);
    })));

  const view = h('section', { class: 'view view-admin', 'data-test': 'admin' },
    h('div', { class: 'admin-head' }, heading, h('div', { class: 'admin-tools' }, stamp, refreshBtn)),
    toc,
    section('Status', 'What /readyz reports: how far the indexes trail the log, and what the seal (signed digests, checkpoints, scrubbing) knows. Counts are since this process started.', statusBox, 'status'),
    holds.el,
    section('Retention plan', 'A dry run of retention now: every UTC day of the log, whether the next run drops it, and why. A day lives as long as the longest TTL among the tenants in it; the active segment’s day is never dropped, and only the oldest days go, as whole segment files.', retentionBox, 'retention'),
    section('Segments', 'Every segment file, oldest first: a backup copy of a sealed one must have exactly this size and SHA-256. The last is the active one.', segmentsBox, 'segments'));
  root.append(view);

  const failed = (box, err) => {
    if (err.status === 401) return; // the key prompt takes over
    clear(box).append(errorEl(err));
  };

  // Holds and the plan together: the plan lists the configuration's holds,
  // which the API refuses to lift (they are marked "configuration file").
  async function loadHolds(mine = gen) {
    const [hl, plan] = await Promise.all([settle('/v1/holds'), settle('/v1/retention')]);
    if (!alive || mine !== gen) return;
    if (hl.value) {
      const configured = new Set(((plan.value && plan.value.config && plan.value.config.holds) || []).map((x) => x.name));
      holds.show(hl.value.holds || [], configured);
    } else holds.showError(hl.error);
    if (plan.value) clear(retentionBox).append(...retentionBody(plan.value));
    else failed(retentionBox, plan.error);
  }

  async function load() {
    const mine = ++gen;
    refreshBtn.disabled = true;
    refreshBtn.setAttribute('aria-busy', 'true');
    const status = (async () => {
      const ready = await readiness();
      // The signed line only when /readyz says there is one (no 404 otherwise).
      const seq = ready.value?.state?.seal?.checkpoint?.seq;
      const cp = seq == null ? null : await settle('/v1/checkpoint');
      if (!alive || mine !== gen) return;
      if (ready.value) clear(statusBox).append(...statusBody(ready.value, cp).filter(Boolean));
      else failed(statusBox, ready.error);
    })();
    const segments = (async () => {
      const s = await settle('/v1/segments');
      if (!alive || mine !== gen) return;
      if (s.value) clear(segmentsBox).append(...segmentsBody(s.value));
      else failed(segmentsBox, s.error);
    })();
    await Promise.all([status, segments, loadHolds(mine)]);
    if (!alive || mine !== gen) return;
    refreshBtn.disabled = false;
    refreshBtn.removeAttribute('aria-busy');
    const now = new Date().toISOString();
    clear(stamp).append('Read ', h('time', { datetime: now, title: utcText(now) }, now.slice(11, 19) + ' UTC'));
    view.dataset.loaded = String(mine);
    ctx.setReady();
  }

  refreshBtn.addEventListener('click', () => { load().then(() => announce('Admin status read again.')); });
  load();

  return {
    update(route) { return route.name === 'admin'; },
    unmount() { alive = false; },
  };
}
