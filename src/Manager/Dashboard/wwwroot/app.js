// The dashboard's router: #/tasks, #/tasks/ID, #/new, #/proplets, #/proplets/ID, #/plugins. Each view renders into
// <main> through its page (pageFor) and may follow the live feed; errors from the API are shown in the message bar,
// never as a blank page.
import { connect, onChange } from './live.js';
import { message, clearMessage } from './message.js';
import { api, user, passing } from './api.js';
import * as tasks from './views/tasks.js';
import * as task from './views/task.js';
import * as create from './views/create.js';
import * as proplets from './views/proplets.js';
import * as proplet from './views/proplet.js';
import * as plugins from './views/plugins.js';

const routes = [
  [/^#\/tasks\/([^/]+)$/, task, 'tasks'],
  [/^#\/tasks$/, tasks, 'tasks'],
  [/^#\/new$/, create, 'new'],
  [/^#\/proplets\/([^/]+)$/, proplet, 'proplets'],
  [/^#\/proplets$/, proplets, 'proplets'],
  [/^#\/plugins$/, plugins, 'plugins'],
];

let current = null;
let controller = null; // aborted when the user leaves the page: the view's fetches stop and it no longer draws
let missed = false; // a change arrived while a view was still rendering (it may predate or postdate what it fetched)

/**
 * What a view draws through: show() replaces <main> and fail(e) shows an error (returning the message's id, or null
 * when not shown), both only while the view is the current page (a draw that was awaiting a fetch when the user
 * navigated away must not overwrite the new page); get(path) is api.get aborted when the user leaves.
 */
function pageFor(main, signal) {
  return {
    signal,
    show: (...nodes) => { if (!signal.aborted) main.replaceChildren(...nodes); },
    fail: (e) => (signal.aborted ? null : message(e.message)),
    get: (path) => api.get(path, signal),
  };
}

let page = null;

async function route() {
  const hash = location.hash && location.hash !== '#' && location.hash !== '#/' ? location.hash.split('?')[0] : '#/tasks';
  const query = new URLSearchParams(location.hash.split('?')[1] ?? '');
  const [, view, nav, match] = routes.map(([re, v, n]) => [re, v, n, hash.match(re)]).find(([, , , m]) => m) ?? [];
  current?.dispose?.();
  current = null;
  controller?.abort();
  controller = new AbortController();
  const mine = pageFor(document.getElementById('view'), controller.signal);
  page = mine;
  clearMessage();
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.nav === nav);
  // An id that is not percent-encoded UTF-8 (#/tasks/%E0%A4%A, typed or cut short) names no page either. Decoded
  // before the load: its URIError was taken for a failed load, shown as "URI malformed" and retried every 5 s.
  let params = null;
  try {
    params = view ? match.slice(1).map(decodeURIComponent) : null;
  } catch { /* no such page */ }
  if (!params) {
    mine.show();
    message(`no such page: ${hash}`);
    return;
  }
  missed = false;
  try {
    const rendered = await view.render(mine, params, query);
    if (mine.signal.aborted) {
      rendered?.dispose?.();
      return;
    }
    current = rendered ?? null;
    if (missed) {
      missed = false;
      // reload what the view shows rather than lose the change
      Promise.resolve(current?.onChange?.('resync', null)).catch(mine.fail);
    }
  } catch (e) {
    if (mine.signal.aborted) return; // left meanwhile: the new page is the current one
    mine.show();
    mine.fail(e);
    // The first draw failed, so the view has no handler of its own and no timer: after a passing failure (the
    // manager restarting, a proxy's 503, the network) the page stayed blank for good. Such a page is drawn again at
    // the next resync (the stream reconnected) or after 5 s, not at every change (on a busy manager that re-read it
    // back to back); one the manager refused for good (a 4xx: a deleted task) or a fault in the page is not retried.
    if (!passing(e)) return;
    const retry = setTimeout(() => { if (page === mine) route(); }, 5000);
    current = { onChange: (type) => { if (type === 'resync') route(); }, dispose: () => clearTimeout(retry) };
  }
}

onChange((type, data) => {
  if (!current) {
    missed = true;
    return;
  }
  Promise.resolve(current.onChange?.(type, data)).catch(page.fail);
});
window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (e) => {
  if (e.reason?.name !== 'AbortError') message(e.reason?.message ?? String(e.reason)); // a left page's fetch: not news
});
const who = document.getElementById('user');
who.value = user.get();
who.addEventListener('change', () => {
  if (user.set(who.value.trim())) return;
  message(`user name "${who.value.trim()}" not kept: it must be printable ASCII (it is sent as the X-User-Id header)`);
  who.value = user.get();
});
connect();
route();
