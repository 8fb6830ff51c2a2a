// The task list: a page at a time (newest first by default), filtered by state, name and metadata through the
// manager's query; rows change in place as task events arrive, and new tasks appear on the first page. Reloads replace
// only the table and pager: the filter form keeps what is being typed in it.
import { h, STATES, stateBadge, age, stateName, time } from '../dom.js';
import { redrawer } from '../redraw.js';
import { passing } from '../api.js';

const LIMIT = 50;

const propletLink = (t) => t.proplet_id ? h('a', { href: `#/proplets/${encodeURIComponent(t.proplet_id)}` }, t.proplet_id.slice(0, 8)) : '';

export async function render(page, _params, query) {
  const state = query.get('state') ?? '';
  const name = query.get('name') ?? '';
  const metadata = query.get('metadata') ?? '';
  const order = query.get('order') ?? 'newest';
  const offset = Math.max(0, Number(query.get('offset') ?? 0) || 0);

  let rows = new Map();
  // Events that arrive while a reload is in flight, the newest per task: the answer may have been read before they
  // were committed, so they are applied again to the new rows.
  let during = null;

  const apply = (data) => {
    const tr = rows.get(data.id);
    if (!tr) return false;
    if (data.deleted) {
      tr.classList.add('deleted');
      return true;
    }
    const t = data.task;
    tr.classList.toggle('stale', Boolean(state) && stateName(t.state) !== state); // no longer (or again) matches the filter
    tr.querySelector('.state-cell').replaceChildren(stateBadge(t.state));
    tr.children[3].replaceChildren(propletLink(t));
    return true;
  };

  const search = new URLSearchParams({ offset, limit: LIMIT, order });
  if (state) search.set('state', state);
  if (name) search.set('name', name);
  if (metadata) search.set('metadata', metadata);

  // What the page shows, for the events of tasks not on it: a first page of LIMIT rows ends at `oldest` (the list is
  // ordered by created_at), so a task created before that cannot enter it.
  let full = false;
  let oldest = null;

  const results = h('div', { class: 'results' });
  const draw = async () => {
    during = new Map();
    let list;
    try {
      list = await page.get(`/tasks?${search}`);
    } catch (e) {
      during = null;
      throw e;
    }
    const now = Date.now();
    const next = new Map();
    const row = (t) => {
      const tr = h('tr', { dataset: { id: t.id } },
        h('td', { class: 'mono' }, h('a', { href: `#/tasks/${t.id}` }, t.id)),
        h('td', {}, t.name),
        h('td', { class: 'state-cell' }, stateBadge(t.state)),
        h('td', { class: 'mono' }, propletLink(t)),
        h('td', { title: t.created_at }, age(t.created_at, now)));
      next.set(t.id, tr);
      return tr;
    };
    const body = h('tbody', {}, list.tasks.map(row));
    rows = next;
    full = list.tasks.length >= LIMIT;
    oldest = time(list.tasks.at(-1)?.created_at);
    for (const data of during.values()) apply(data);
    during = null;
    const table = h('table', { class: 'tasks' },
      h('thead', {}, h('tr', {}, ['ID', 'Name', 'State', 'Proplet', 'Age'].map((c) => h('th', {}, c)))), body);

    const from = list.tasks.length === 0 ? 0 : offset + 1;
    const to = list.tasks.length === 0 ? 0 : offset + list.tasks.length;
    const pager = h('div', { class: 'pager' },
      h('button', { disabled: offset === 0, onclick: () => go({ offset: Math.max(0, Math.min(offset - LIMIT, list.total - LIMIT)) }) }, '← Previous'),
      h('span', { id: 'count' }, list.tasks.length || list.total === 0 ? `${from}–${to} of ${list.total}` : `none here (${list.total} in all)`),
      h('button', { disabled: offset + LIMIT >= list.total, onclick: () => go({ offset: offset + LIMIT }) }, 'Next →'));
    results.replaceChildren(list.tasks.length ? table : h('p', { class: 'muted empty' }, 'No tasks match.'), pager);
    performance.mark('tasks-rendered'); // read by the dashboard benchmark (first paint of the list)
  };
  // A task that is not on this page may belong here (a new one on the first page): redraw, at most 4 times a second.
  const redraw = redrawer(draw, { gap: 250, signal: page.signal, fail: page.fail });
  // Whether a change of a task not shown may put it on this page: the first page in newest order, when not full or
  // when the task is not older than its last row. A change of an older task (one of hundreds running) reloaded every
  // open list 4 times a second.
  const mayEnter = (data) => {
    if (data.deleted || offset !== 0 || order !== 'newest') return false;
    if (!full || !oldest) return true;
    const created = time(data.task?.created_at);
    return !created || created >= oldest;
  };

  const shown = { state, name, metadata, order, offset: String(offset) };
  const go = (changes) => {
    const next = { ...shown, ...changes, offset: String(changes.offset ?? offset) };
    if (Object.keys(shown).every((k) => next[k] === shown[k])) {
      redraw(); // the same filter submitted again: the hash does not change, so reload here
      return;
    }
    const hash = new URLSearchParams(next);
    for (const [k, v] of [...hash]) if (v === '' || (k === 'offset' && v === '0') || (k === 'order' && v === 'newest')) hash.delete(k);
    location.hash = `#/tasks${hash.size ? `?${hash}` : ''}`;
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

  try {
    await draw();
  } catch (e) {
    // A read that failed for a passing reason (the manager restarting, a proxy's 503) goes to the router, which draws
    // the page again after 5 s or at the stream's resync, as for every view (caught here, it never came, and the list
    // stayed empty on a quiet manager). A filter the manager refuses: the form stays, with what was typed, to be
    // corrected.
    if (passing(e)) throw e;
    redraw.failed(e);
  }
  page.show(h('h1', {}, 'Tasks'), filter, results);

  return {
    onChange(type, data) {
      if (type === 'resync') return redraw();
      if (type !== 'task') return;
      if (during && !(during.get(data.id)?.version >= data.version)) during.set(data.id, data);
      if (!apply(data) && mayEnter(data)) redraw();
    },
  };
}
