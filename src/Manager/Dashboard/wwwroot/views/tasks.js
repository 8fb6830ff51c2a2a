// The task list: a page at a time (newest first by default), filtered by state, name and metadata through the
// manager's query; rows change in place as task events arrive, and new tasks appear on the first page.
import { api } from '../api.js';
import { message } from '../message.js';
import { h, STATES, stateBadge, age, stateName } from '../dom.js';

const LIMIT = 50;

export async function render(main, _params, query) {
  const view = { rows: new Map(), reload: null };
  await draw(main, query, view);
  const state = query.get('state') ?? '';
  const offset = Math.max(0, Number(query.get('offset') ?? 0) || 0);
  const order = query.get('order') ?? 'newest';

  // A task that is not on this page may belong here (a new one on the first page): redraw, at most 4 times a second.
  const reloadSoon = () => {
    view.reload ??= setTimeout(() => {
      view.reload = null;
      draw(main, query, view).catch((e) => message(e.message));
    }, 250);
  };
  return {
    onChange(type, data) {
      if (type === 'resync') return reloadSoon();
      if (type !== 'task') return;
      const tr = view.rows.get(data.id);
      if (!tr) {
        if (!data.deleted && offset === 0 && order === 'newest') reloadSoon();
        return;
      }
      if (data.deleted) { tr.classList.add('deleted'); return; }
      const t = data.task;
      if (state && stateName(t.state) !== state) tr.classList.add('stale'); // no longer matches the filter
      tr.querySelector('.state-cell').replaceChildren(stateBadge(t.state));
      tr.children[3].replaceChildren(propletLink(t));
    },
    dispose() { clearTimeout(view.reload); },
  };
}

const propletLink = (t) => t.proplet_id ? h('a', { href: `#/proplets/${t.proplet_id}` }, t.proplet_id.slice(0, 8)) : '';

async function draw(main, query, view) {
  const state = query.get('state') ?? '';
  const name = query.get('name') ?? '';
  const metadata = query.get('metadata') ?? '';
  const order = query.get('order') ?? 'newest';
  const offset = Math.max(0, Number(query.get('offset') ?? 0) || 0);

  const search = new URLSearchParams({ offset, limit: LIMIT, order });
  if (state) search.set('state', state);
  if (name) search.set('name', name);
  if (metadata) search.set('metadata', metadata);
  const page = await api.get(`/tasks?${search}`);

  const go = (changes) => {
    const next = new URLSearchParams({ state, name, metadata, order, offset, ...changes });
    for (const [k, v] of [...next]) if (v === '' || (k === 'offset' && v === '0') || (k === 'order' && v === 'newest')) next.delete(k);
    location.hash = `#/tasks${next.size ? `?${next}` : ''}`;
  };

  const filter = h('form', { class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    go({ state: f.get('state'), name: f.get('name').trim(), metadata: f.get('metadata').trim(), order: f.get('order'), offset: 0 });
  } },
  h('label', {}, 'State ', h('select', { name: 'state' }, h('option', { value: '' }, 'any'),
    STATES.map((s) => h('option', { value: s, selected: s === state }, s)))),
  h('label', {}, 'Name ', h('input', { name: 'name', value: name, placeholder: 'part of the name' })),
  h('label', {}, 'Metadata ', h('input', { name: 'metadata', value: metadata, placeholder: '{"team":"edge"}', class: 'wide' })),
  h('label', {}, 'Order ', h('select', { name: 'order' },
    h('option', { value: 'newest', selected: order === 'newest' }, 'newest first'),
    h('option', { value: 'oldest', selected: order === 'oldest' }, 'oldest first'))),
  h('button', { type: 'submit' }, 'Filter'));

  const now = Date.now();
  const rows = new Map();
  view.rows = rows;
  const row = (t) => {
    const tr = h('tr', { dataset: { id: t.id } },
      h('td', { class: 'mono' }, h('a', { href: `#/tasks/${t.id}` }, t.id)),
      h('td', {}, t.name),
      h('td', { class: 'state-cell' }, stateBadge(t.state)),
      h('td', { class: 'mono' }, propletLink(t)),
      h('td', { title: t.created_at }, age(t.created_at, now)));
    rows.set(t.id, tr);
    return tr;
  };
  const body = h('tbody', {}, page.tasks.map(row));
  const table = h('table', { class: 'tasks' },
    h('thead', {}, h('tr', {}, ['ID', 'Name', 'State', 'Proplet', 'Age'].map((c) => h('th', {}, c)))), body);

  const from = page.total === 0 ? 0 : offset + 1;
  const to = offset + page.tasks.length;
  const pager = h('div', { class: 'pager' },
    h('button', { disabled: offset === 0, onclick: () => go({ offset: Math.max(0, offset - LIMIT) }) }, '← Previous'),
    h('span', { id: 'count' }, `${from}–${to} of ${page.total}`),
    h('button', { disabled: to >= page.total, onclick: () => go({ offset: offset + LIMIT }) }, 'Next →'));

  main.replaceChildren(h('h1', {}, 'Tasks'), filter,
    page.tasks.length ? table : h('p', { class: 'muted empty' }, 'No tasks match.'), pager);
  performance.mark('tasks-rendered'); // read by the dashboard benchmark (first paint of the list)
}
