// #/user/<id>?<filters>: the user's timeline (GET /v1/users/{id}/events),
// newest first, with the filter bar's filters.

import * as api from './api.js';
import { h, clear, errorEl, routeHref, seg } from './dom.js';
import { filterBar, hasFilters } from './filters.js';
import { resultsList } from './results.js';
import { noMatch } from './events.js';

export function mountUser(root, ctx) {
  const [userId] = ctx.route.args;
  let params = new URLSearchParams(ctx.route.params);
  const here = (p) => routeHref(`/user/${seg(userId)}`, p);
  const bar = filterBar({ params, exclude: ['user_id'], onApply: (p) => { location.hash = here(p); } });
  const total = h('span', { 'data-test': 'total' }, '…');
  const totalWord = h('span', null, 'events');
  const errors = h('div', { class: 'errors' });
  const listBox = h('div');
  const allLink = h('a', { href: routeHref('/events', { user_id: userId }) }, 'Open in Events');
  root.append(h('section', { class: 'view view-user' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/events' }, '← Events')),
    h('h1', { tabindex: '-1' }, 'Timeline of user ', h('code', null, userId)),
    bar.el,
    h('div', { class: 'toolbar' }, h('p', { class: 'total' }, total, ' ', totalWord), allLink),
    errors, listBox));

  let list = null;
  function reload() {
    clear(errors);
    bar.clearErrors();
    if (list) list.destroy();
    clear(listBox);
    total.textContent = '…';
    allLink.href = routeHref('/events', { ...Object.fromEntries(params), user_id: userId });
    list = resultsList({
      fetchPage: async (cursor, signal) => {
        const p = new URLSearchParams(params);
        if (cursor) p.set('cursor', cursor);
        else p.set('total', 'true');
        return api.get(`/v1/users/${seg(userId)}/events`, p, { signal });
      },
      onFirst: (page) => {
        const n = page && typeof page.total === 'number' ? page.total : (page ? page.events.length : 0);
        total.textContent = String(n);
        totalWord.textContent = n === 1 ? 'event' : 'events';
        ctx.setReady();
      },
      onError: (err) => { if (err.status !== 401 && !bar.showError(err)) errors.append(errorEl(err)); return true; },
      empty: (page) => (hasFilters(params) ? noMatch(page, here({}))
        : h('div', { class: 'empty', 'data-test': 'empty' }, h('h2', null, 'No events'), h('p', null, 'This user has no events the key can see.'))),
    });
    listBox.append(list.el);
    list.start();
  }
  bar.ready.then(reload).catch(() => {});
  return {
    update(route) {
      if (route.name !== 'user' || route.args[0] !== userId) return false;
      const next = new URLSearchParams(route.params);
      if (next.toString() !== params.toString()) { params = next; bar.sync(params); reload(); }
      return true;
    },
    unmount() { if (list) list.destroy(); },
  };
}
