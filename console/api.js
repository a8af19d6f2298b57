// The API client: every request of the console goes through here.
//
// - The key (an API key or a JWT) lives in sessionStorage only: never in a URL
//   (the server refuses credentials in query strings), never logged.
// - Errors are problem+json; they become an ApiError whose message is the
//   problem's `detail` as a sentence, with `field` naming the parameter at fault.
// - A 401 calls the handler registered with onUnauthorized (the key prompt).

const STORE = 'stele.key';

export function getKey() {
  try { return sessionStorage.getItem(STORE) || null; } catch { return null; }
}
export function setKey(key) {
  try { sessionStorage.setItem(STORE, key); } catch { /* private mode: the key lasts this page */ }
  memoryKey = key;
}
export function clearKey() {
  try { sessionStorage.removeItem(STORE); } catch { /* nothing stored */ }
  memoryKey = null;
}
let memoryKey = null;
function currentKey() { return getKey() || memoryKey; }

export class ApiError extends Error {
  constructor(status, problem = {}) {
    super(sentence(problem.detail || problem.title || (status ? `The server answered ${status}` : 'The request failed')));
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
    this.type = typeof problem.type === 'string' ? problem.type.replace(/^.*\/problems\//, '') : '';
    const f = problem.field ?? problem.param;
    this.field = typeof f === 'string' ? f : null;
  }
}

/** `text` as a sentence: capital first letter, final full stop. */
export function sentence(text) {
  let s = String(text).trim();
  if (!s) return s;
  s = s[0].toUpperCase() + s.slice(1);
  return /[.!?…]$/.test(s) ? s : s + '.';
}

let unauthorized = () => {};
/** `fn(error)` runs on every 401 (the app shows the key prompt). */
export function onUnauthorized(fn) { unauthorized = fn; }

function headers(accept) {
  const h = { Accept: accept };
  const key = currentKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

/** `path?params`, dropping empty values (the API refuses empty parameters). */
export function url(path, params) {
  const p = new URLSearchParams();
  if (params) {
    for (const [k, v] of (params instanceof URLSearchParams ? params : Object.entries(params))) {
      if (v !== undefined && v !== null && v !== '') p.append(k, String(v));
    }
  }
  const qs = p.toString();
  return qs ? `${path}?${qs}` : path;
}

async function toError(res) {
  let problem = {};
  const type = res.headers.get('content-type') || '';
  try {
    if (type.includes('json')) problem = await res.json();
  } catch { /* a body that is not JSON: the status says enough */ }
  if (!problem || typeof problem !== 'object') problem = {};
  if (!problem.detail && !problem.title) {
    problem.detail = res.status === 401 ? 'This page needs an API key'
      : `The server answered ${res.status} ${res.statusText || ''}`.trim();
  }
  if (res.status === 429 && problem.retry_after) {
    problem.detail = `${sentence(problem.detail)} Try again in ${problem.retry_after} s`;
  }
  return new ApiError(res.status, problem);
}

/**
 * GET `path` with `params`. Resolves to the parsed JSON (or the Response
 * with `raw`); rejects with an ApiError. `rawUrl` is used as is (with its own
 * query string) when given.
 */
export async function get(path, params, { signal, raw = false, accept = 'application/json', keepEmpty = false } = {}) {
  const target = keepEmpty ? `${path}${params && String(params) ? '?' + String(params) : ''}` : url(path, params);
  let res;
  try {
    res = await fetch(target, { headers: headers(accept), signal, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, { detail: 'The server could not be reached; check that Stele is running and try again' });
  }
  if (!res.ok) {
    const err = await toError(res);
    if (res.status === 401) unauthorized(err);
    throw err;
  }
  return raw ? res : res.json();
}

/**
 * Downloads `path?params` with the key: fetch → Blob → a temporary object URL
 * clicked as a link. Resolves to the file name.
 */
export async function download(path, params, fallbackName) {
  const res = await get(path, params, { raw: true, accept: '*/*' });
  let blob;
  try {
    blob = await res.blob();
  } catch {
    throw new ApiError(0, { detail: 'The export was cut short before its end, so nothing was saved; try again' });
  }
  const cd = res.headers.get('content-disposition') || '';
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
  const name = m ? decodeURIComponent(m[1]) : fallbackName;
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
  return name;
}

/**
 * Follows a Server-Sent Events route with fetch + ReadableStream (an
 * EventSource cannot send the Authorization header), parsing `id:`/`data:`
 * lines itself. On a drop it reconnects with `from_seq = last seq + 1`, so
 * nothing is missed and nothing repeats.
 *
 * handlers: onEvent(obj, seq), onStatus('connecting'|'live'|'reconnecting'|'stopped', detail?),
 * onFatal(ApiError) (a refusal that retrying cannot fix: the stream stops).
 * `fromSeq`: the first seq wanted (null: from now on).
 */
export function stream(path, params, { fromSeq = null, onEvent, onStatus = () => {}, onFatal = () => {} }) {
  let stopped = false;
  let ctrl = null;
  let next = fromSeq;
  let attempt = 0;
  let timer = null;
  let watchdog = null;
  const STALL_MS = 45_000; // three heartbeats

  function stop() {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(watchdog);
    if (ctrl) ctrl.abort();
    onStatus('stopped');
  }

  function retry(detail) {
    if (stopped) return;
    const delay = Math.min(15_000, 1000 * 2 ** Math.min(attempt, 4));
    attempt += 1;
    onStatus('reconnecting', detail || `Connection lost; reconnecting in ${Math.round(delay / 1000)} s`);
    timer = setTimeout(connect, delay);
  }

  async function connect() {
    if (stopped) return;
    ctrl = new AbortController();
    const p = new URLSearchParams(params);
    p.delete('from_seq');
    if (next != null) p.set('from_seq', String(next));
    onStatus(attempt ? 'reconnecting' : 'connecting');
    let res;
    try {
      res = await fetch(url(path, p), { headers: headers('text/event-stream'), signal: ctrl.signal, cache: 'no-store', credentials: 'omit' });
    } catch {
      return retry();
    }
    if (!res.ok) {
      const err = await toError(res);
      if (res.status === 401) unauthorized(err);
      if (res.status >= 500 || (res.status === 429 && err.type === 'rate-limited')) return retry(err.message);
      stopped = true;
      onFatal(err);
      onStatus('stopped');
      return;
    }
    attempt = 0;
    onStatus('live');
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let id = null;
    let kind = null;
    let data = [];
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => ctrl.abort(), STALL_MS);
    };
    const dispatch = () => {
      if (data.length) {
        const text = data.join('\n');
        if (kind === 'error') {
          let detail = 'The stream failed on the server';
          try { detail = JSON.parse(text).detail || detail; } catch { /* keep the default */ }
          onStatus('reconnecting', sentence(detail));
        } else {
          try {
            const ev = JSON.parse(text);
            const seq = Number(id ?? ev.seq);
            if (Number.isFinite(seq)) {
              if (next == null || seq >= next) {
                next = seq + 1;
                onEvent(ev, seq);
              }
            } else {
              onEvent(ev, null);
            }
          } catch { /* a malformed message: skip it, the next one resumes */ }
        }
      }
      id = null; kind = null; data = [];
    };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          let line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') { dispatch(); continue; }
          if (line[0] === ':') continue; // a comment: ": heartbeat"
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val[0] === ' ') val = val.slice(1);
          if (field === 'id') id = val;
          else if (field === 'event') kind = val;
          else if (field === 'data') data.push(val);
        }
      }
    } catch { /* aborted or dropped: reconnect below */ }
    clearTimeout(watchdog);
    retry();
  }

  connect();
  return { stop, get nextSeq() { return next; } };
}

/**
 * A request with a JSON body (or none): `send('POST', '/v1/holds', {...})`.
 * Resolves to the parsed JSON, or null for an answer without a body (204);
 * rejects with an ApiError as `get` does.
 */
async function send(method, path, body) {
  const init = { method, headers: headers('application/json'), cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: 'The server could not be reached; check that Stele is running and try again' });
  }
  if (!res.ok) {
    const err = await toError(res);
    if (res.status === 401) unauthorized(err);
    throw err;
  }
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : null;
}

/** POST `body` as JSON to `path`. */
export function post(path, body) { return send('POST', path, body); }
/** DELETE `path`. */
export function del(path) { return send('DELETE', path); }
