// The console's shell: the top navigation, the key prompt and the hash router.
//
// Routes (the URL always holds the view's state, so a shared link reopens it):
//   #/events?<filters>            the log
//   #/event/<id>?tenant=<t>       one event
//   #/entity/<type>/<id>?<filters> an entity's history
//   #/user/<id>?<filters>         a user's timeline
//   #/dashboard?tenant=&window=   the figures, activity and breakdowns
//   #/findings?<filters>&open=<id> the detections and their evidence
//   #/processes?kind=&<filters>   process runs (or batches), stuck ones first
//   #/process/<id>, #/batch/<id>  one run and its events
//   #/admin                       status, holds, retention, segments (admin role)
// A view is a module with mount(root, ctx) → {update(route) → bool, unmount()}.
// A route may name the role it needs: a key without it gets a sentence saying
// so (the API would refuse its requests anyway) and no nav entry.

import * as api from './api.js';
import { h, clear, errorEl } from './dom.js';
import { mountEvents } from './events.js';
import { mountEvent } from './detail.js';
import { mountHistory } from './history.js';
import { mountUser } from './user.js';
import { mountDashboard } from './dashboard.js';
import { mountFindings } from './findings.js';
import { mountProcesses, mountRun } from './processes.js';
import { mountAdmin } from './admin.js';

const ROUTES = [
  { name: 'events', re: /^\/events$/, mount: mountEvents, title: () => 'Events' },
  { name: 'event', re: /^\/event\/([^/]+)$/, mount: mountEvent, title: (a) => `Event ${a[0]}` },
  { name: 'entity', re: /^\/entity\/([^/]+)\/([^/]+)$/, mount: mountHistory, title: (a) => `History of ${a[0]} ${a[1]}` },
  { name: 'user', re: /^\/user\/([^/]+)$/, mount: mountUser, title: (a) => `User ${a[0]}` },
  { name: 'dashboard', re: /^\/dashboard$/, mount: mountDashboard, title: () => 'Dashboard' },
  { name: 'findings', re: /^\/findings$/, mount: mountFindings, title: () => 'Findings', role: 'read' },
  { name: 'processes', re: /^\/processes$/, mount: mountProcesses, title: () => 'Processes', role: 'read' },
  { name: 'process', re: /^\/process\/([^/]+)$/, mount: mountRun, title: (a) => `Process run ${a[0]}`, role: 'read' },
  { name: 'batch', re: /^\/batch\/([^/]+)$/, mount: mountRun, title: (a) => `Batch operation ${a[0]}`, role: 'read' },
  { name: 'admin', re: /^\/admin$/, mount: mountAdmin, title: () => 'Admin', role: 'admin' },
];

// Only views that exist, each shown to keys with its role.
const NAV = [
  { href: '#/events', label: 'Events', role: 'read', match: ['events', 'event', 'entity', 'user'] },
  { href: '#/dashboard', label: 'Dashboard', role: 'read', match: ['dashboard'] },
  { href: '#/findings', label: 'Findings', role: 'read', match: ['findings'] },
  { href: '#/processes', label: 'Processes', role: 'read', match: ['processes', 'process', 'batch'] },
  { href: '#/admin', label: 'Admin', role: 'admin', match: ['admin'] },
];

const main = document.getElementById('main');
const navList = document.getElementById('nav-list');
const who = document.getElementById('who');

let me = null;
let current = null; // {name, view}
let prompting = false;
let rendered = false; // whether a view was shown already

function parse() {
  let hash = location.hash.replace(/^#/, '');
  if (!hash || hash === '/') hash = '/events';
  const q = hash.indexOf('?');
  const path = q < 0 ? hash : hash.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
  for (const r of ROUTES) {
    const m = r.re.exec(path);
    if (m) {
      let args;
      try { args = m.slice(1).map(decodeURIComponent); } catch { return { name: 'notfound', path, params, args: [] }; }
      return { name: r.name, route: r, path, params, args };
    }
  }
  return { name: 'notfound', path, params, args: [] };
}

// Marks for the performance timeline (loadgen's console scenario reads them):
// stele-view when a view's controls are in place, stele-ready when it shows
// its first data (the first results page, the dashboard's figures).
function setReady() {
  if (document.body.dataset.ready !== '1') performance.mark('stele-ready');
  document.body.dataset.ready = '1';
}

function unmount() {
  if (current && current.view && current.view.unmount) current.view.unmount();
  current = null;
}

function render() {
  if (prompting || !me) return;
  const route = parse();
  for (const a of navList.querySelectorAll('a')) {
    if ((a.dataset.match || '').split(' ').includes(route.name)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (current && current.view.update && current.view.update(route)) return;
  unmount();
  clear(main);
  if (route.name !== 'notfound' && route.route.role && !(me.roles || []).includes(route.route.role)) {
    document.title = 'Not allowed · Stele';
    main.append(h('section', { class: 'view', 'data-test': 'forbidden' }, h('h1', { tabindex: '-1' }, 'Not allowed'),
      h('p', null, `This page needs a key with the ${route.route.role} role; this key has `,
        (me.roles || []).join(', ') || 'no roles', '. ', h('a', { href: '#/events' }, 'Go to Events'), '.')));
    setReady();
    return;
  }
  if (route.name === 'notfound') {
    document.title = 'Not found · Stele';
    main.append(h('section', { class: 'view' }, h('h1', { tabindex: '-1' }, 'Not found'),
      h('p', null, 'The console has no page ', h('code', null, route.path), '. ', h('a', { href: '#/events' }, 'Go to Events'), '.')));
    setReady();
    return;
  }
  document.title = `${route.route.title(route.args)} · Stele`;
  const view = route.route.mount(main, { route, me, setReady });
  if (!rendered) performance.mark('stele-view');
  current = { name: route.name, view };
  // A new view takes the focus to its heading (not on the first page load),
  // so keyboard and screen reader users start from its top.
  const heading = main.querySelector('h1');
  if (heading && rendered) heading.focus();
  rendered = true;
}

function renderNav() {
  clear(navList);
  const roles = me ? me.roles || [] : [];
  for (const n of NAV) {
    if (n.role && !roles.includes(n.role)) continue;
    navList.append(h('li', null, h('a', { href: n.href, 'data-match': n.match.join(' ') }, n.label)));
  }
  clear(who);
  if (!me) return;
  if (me.authenticated) {
    const scope = me.tenants === null ? 'all tenants' : `tenants: ${me.tenants.join(', ') || 'none'}`;
    who.append(h('span', { class: 'muted', title: `roles: ${(me.roles || []).join(', ')}` }, `Key ${me.key} · ${scope}`), ' ',
      h('button', { type: 'button', onclick: signOut }, 'Forget key'));
  } else {
    who.append(h('span', { class: 'muted', title: 'No API keys are configured: loopback access has every role' }, 'No key needed (loopback)'));
  }
}

function signOut() {
  api.clearKey();
  me = null;
  unmount();
  renderNav();
  showLogin(null);
}

/** The key prompt (on a 401): the key goes to sessionStorage only. */
function showLogin(err) {
  const hadKey = !!api.getKey();
  if (hadKey) api.clearKey(); // refused: do not send it again
  unmount();
  prompting = true;
  me = null;
  renderNav();
  clear(main);
  document.title = 'Sign in · Stele';
  const input = h('input', { id: 'key', name: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
    'aria-describedby': 'key-help' });
  const msg = h('div', { class: 'login-msg' });
  if (err && hadKey) msg.append(errorEl(new Error(`The key was refused: ${err.message}`)));
  const form = h('form', { class: 'login', 'data-test': 'login', method: 'post', novalidate: true },
    h('h1', { tabindex: '-1' }, 'Sign in to Stele'),
    h('p', { id: 'key-help' }, 'This Stele needs an API key (stele_…) or a JWT with the read role. ',
      'It is kept in this tab’s session storage only and sent as an Authorization header; it never goes into a URL.'),
    h('div', { class: 'ctl' }, h('label', { for: 'key' }, 'API key or JWT'), input),
    msg,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const key = input.value.trim();
    clear(msg);
    if (!key) { msg.append(errorEl(new Error('Enter a key.'))); input.focus(); return; }
    if (/\s/.test(key)) { msg.append(errorEl(new Error('A key has no spaces: paste only the key, without “Bearer”.'))); input.focus(); return; }
    input.value = '';
    api.setKey(key);
    prompting = false;
    start();
  });
  main.append(form);
  input.focus();
}

api.onUnauthorized((err) => {
  if (prompting) return;
  showLogin(err);
});

async function start() {
  clear(main).append(h('p', { class: 'muted', role: 'status' }, 'Loading…'));
  try {
    me = await api.get('/v1/me');
  } catch (err) {
    if (err.status === 401) return; // the prompt is up
    me = null;
    renderNav();
    clear(main).append(h('section', { class: 'view' }, h('h1', null, 'Stele'), errorEl(
      err.status === 403 ? new Error(`${err.message} The console needs a key with the read role.`) : err),
    h('p', null, h('button', { type: 'button', onclick: start }, 'Try again'),
      api.getKey() ? [' ', h('button', { type: 'button', onclick: signOut }, 'Use another key')] : null)));
    setReady();
    return;
  }
  renderNav();
  render();
}

window.addEventListener('hashchange', render);
// The skip link focuses the content without touching the hash (the router's).
document.querySelector('a.skip')?.addEventListener('click', (e) => { e.preventDefault(); main.focus(); });
start();
