// The dashboard's router: #/tasks, #/tasks/ID, #/new, #/proplets, #/proplets/ID, #/plugins. Each view renders into
// <main> and may follow the live feed; errors from the API are shown in the message bar, never as a blank page.
import { connect, onChange } from './live.js';
import { message, clearMessage } from './message.js';
import { user } from './api.js';
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
let generation = 0;
let missed = false; // a change arrived while a view was still rendering (it may predate or postdate what it fetched)

async function route() {
  const hash = location.hash && location.hash !== '#' && location.hash !== '#/' ? location.hash.split('?')[0] : '#/tasks';
  const query = new URLSearchParams(location.hash.split('?')[1] ?? '');
  const [, view, nav, match] = routes.map(([re, v, n]) => [re, v, n, hash.match(re)]).find(([, , , m]) => m) ?? [];
  current?.dispose?.();
  current = null;
  clearMessage();
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.nav === nav);
  const main = document.getElementById('view');
  if (!view) {
    main.replaceChildren();
    message(`no such page: ${hash}`);
    return;
  }
  const mine = ++generation;
  missed = false;
  try {
    const rendered = await view.render(main, match.slice(1).map(decodeURIComponent), query);
    if (mine !== generation) {
      rendered?.dispose?.();
      return;
    }
    current = rendered ?? null;
    if (missed) {
      missed = false;
      // reload what the view shows rather than lose the change
      Promise.resolve(current?.onChange?.('resync', null)).catch((e) => message(e.message));
    }
  } catch (e) {
    if (mine !== generation) return;
    main.replaceChildren();
    message(e.message);
  }
}

onChange((type, data) => {
  if (!current) {
    missed = true;
    return;
  }
  Promise.resolve(current.onChange?.(type, data)).catch((e) => message(e.message));
});
window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (e) => message(e.reason?.message ?? String(e.reason)));
const who = document.getElementById('user');
who.value = user.get();
who.addEventListener('change', () => user.set(who.value.trim()));
connect();
route();
