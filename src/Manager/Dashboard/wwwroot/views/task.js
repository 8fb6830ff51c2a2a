// One task: its state, result or error, spec, and its history as a timeline (time, user, the plugin decisions that
// applied), with replay to any version; start, stop and delete. Follows the task's events live.
import { api } from '../api.js';
import { message, flash } from '../message.js';
import { h, fields, stateBadge, stamp, results, ended } from '../dom.js';
import { redrawer } from '../redraw.js';

// The history is read as its last events (a recurring task gains some with every run): this many at first, as many
// more per "earlier events", up to the most the manager answers in one page (the CLI's `task history` reads it all).
const HISTORY_PAGE = 100;
const HISTORY_MAX = 1000;

const eventName = (type) => type.replace(/^task\./, '').replace(/\.v\d+$/, '').replaceAll('_', ' ');

function decisions(entry) {
  const raw = entry.headers?.plugins;
  if (!raw) return [];
  try {
    return JSON.parse(raw);
  } catch {
    return [{ plugin: '?', hook: raw, allow: true }];
  }
}

function summary(task) {
  return fields([
    ['State', stateBadge(task.state)],
    ['Proplet', task.proplet_id ? h('a', { href: `#/proplets/${encodeURIComponent(task.proplet_id)}`, class: 'mono' }, task.proplet_id) : ''],
    ['Created', stamp(task.created_at)],
    ['Started', stamp(task.start_time)],
    ['Finished', stamp(task.finish_time)],
    ['Updated', stamp(task.updated_at)],
  ]);
}

function spec(task) {
  return fields([
    ['Function', task.name],
    ['Kind', task.kind],
    ['Module', task.file ? 'inline .wasm' : task.image_url ?? ''],
    ['Inputs', task.inputs?.length ? task.inputs.join(', ') : ''],
    ['Env', task.env ? Object.entries(task.env).map(([k, v]) => `${k}=${v}`).join(' ') : ''],
    ['CLI args', task.cli_args?.length ? task.cli_args.join(' ') : ''],
    ['Daemon', task.daemon ? 'yes' : ''],
    ['Priority', task.priority ?? ''],
    ['Metadata', task.metadata ? JSON.stringify(task.metadata) : ''],
  ]);
}

function outcome(task) {
  if (task.error) return h('div', { id: 'outcome', class: 'outcome error' }, h('h2', {}, 'Error'), h('pre', { id: 'error' }, task.error));
  const text = results(task);
  if (text !== '') return h('div', { id: 'outcome', class: 'outcome ok' }, h('h2', {}, 'Result'), h('pre', { id: 'result' }, text));
  return h('div', { id: 'outcome', class: 'outcome muted' }, ended(task.state) ? 'No result.' : 'No result yet.');
}

export async function render(page, [id]) {
  const path = `/tasks/${encodeURIComponent(id)}`;
  let historyShown = HISTORY_PAGE;
  const readHistory = () => page.get(`${path}/history?last=${historyShown}`);
  const [task, history] = await Promise.all([page.get(path), readHistory()]);
  const head = h('div', { class: 'title' });
  const summaryBox = h('section', { class: 'card' });
  const outcomeBox = h('section', { class: 'card' });
  const replayBox = h('section', { class: 'card replay', hidden: true });
  const timeline = h('ol', { class: 'timeline', id: 'timeline' });
  const earlier = h('div', { class: 'earlier muted', id: 'earlier' });

  let deleted = false; // the task is gone (its deletion announced, or a reload answered 404): its actions can only fail
  const act = (label, run, confirmText, done = () => message(`${label}: done`, 'info')) => h('button', {
    class: label === 'Delete' ? 'danger' : '',
    disabled: deleted,
    onclick: async (e) => {
      if (confirmText && !confirm(confirmText)) return;
      e.target.disabled = true;
      try {
        await run();
        done();
      } catch (err) {
        message(err.message);
      } finally {
        e.target.disabled = deleted;
      }
    },
  }, label);

  const showTask = (t) => {
    head.replaceChildren(h('h1', {}, t.name, ' ', stateBadge(t.state)), h('div', { class: 'mono muted' }, t.id),
      h('div', { class: 'actions' },
        act('Start', () => api.post(`${path}/start`)),
        act('Stop', () => api.post(`${path}/stop`)),
        act('Delete', () => api.del(path), 'Delete this task?', () => {
          flash('Delete: done', 'info'); // opening the list clears the message bar: shown there
          location.hash = '#/tasks';
        })));
    summaryBox.replaceChildren(h('h2', {}, 'Status'), summary(t), h('h2', {}, 'Spec'), spec(t));
    outcomeBox.replaceChildren(outcome(t));
  };

  // Only the replay asked for last is shown: an earlier one answered after it is dropped.
  let replays = 0;
  const replay = async (version) => {
    const asked = ++replays;
    try {
      const then = await page.get(`${path}?version=${version}`);
      if (asked !== replays) return;
      replayBox.replaceChildren(h('h2', {}, `As it was at version ${version}`,
        h('button', { class: 'link', onclick: () => { replayBox.hidden = true; } }, 'close')), summary(then), outcome(then));
      replayBox.hidden = false;
      replayBox.scrollIntoView({ block: 'nearest' });
    } catch (e) {
      if (asked === replays) page.fail(e);
    }
  };

  const showHistory = (entries) => {
    const before = entries.length ? entries[0].version - 1 : 0;
    earlier.replaceChildren(before <= 0 ? '' : historyShown < HISTORY_MAX
      ? h('button', { class: 'link', id: 'earlier-events', onclick: () => {
        historyShown = Math.min(historyShown + HISTORY_PAGE, HISTORY_MAX);
        redrawHistory();
      } }, `${before} earlier event${before === 1 ? '' : 's'}`)
      : `${before} earlier events: propeller task history ${id}`);
    timeline.replaceChildren(...entries.map((entry) => h('li', { dataset: { version: entry.version, type: entry.type } },
      h('div', { class: 'when' }, stamp(entry.timestamp)),
      h('div', { class: 'what' },
        h('strong', {}, eventName(entry.type)), ' ',
        h('span', { class: 'muted' }, `v${entry.version}`),
        entry.user_id ? h('span', { class: 'who' }, ` by ${entry.user_id}`) : '',
        entry.data?.proplet_id ? h('span', { class: 'muted' }, ` → ${entry.data.proplet_id.slice(0, 8)}`) : '',
        entry.data?.reason ? h('span', { class: 'muted' }, ` (${entry.data.reason})`) : '',
        h('button', { class: 'link', onclick: () => replay(entry.version) }, 'replay')),
      h('div', { class: 'decisions' }, decisions(entry).map((d) => h('span', {
        class: `decision ${d.allow ? 'allow' : 'deny'}`,
        title: d.duration_us !== undefined ? `${d.duration_us} µs` : '',
      }, `${d.plugin}: ${d.hook} ${d.allow ? 'allow' : 'deny'}${d.reason ? ` — ${d.reason}` : ''}`))))));
  };

  showTask(task);
  showHistory(history);
  page.show(head, h('div', { class: 'columns' }, h('div', {}, outcomeBox, summaryBox), h('div', {},
    h('section', { class: 'card' }, h('h2', {}, 'History'), earlier, timeline), replayBox)));

  const markDeleted = () => {
    deleted = true;
    for (const button of head.querySelectorAll('.actions button')) button.disabled = true;
    message('This task was deleted.'); // kept until the user leaves the page, as the page can no longer change
  };

  // One history read at a time (one asked for meanwhile follows it), so an older answer never replaces a newer one.
  const redrawHistory = redrawer(async () => showHistory(await readHistory()), { gap: 100, signal: page.signal, fail: page.fail });
  // GET /tasks/{id} carries no version: a read that an event overtook may predate that event (it was read before the
  // commit), so it is dropped; the event shows a state at least as new, and any later change comes as its own event.
  let events = 0;
  // Two commits on one task may be announced out of order (each is announced after its own commit): an event not
  // newer than one already shown is dropped.
  let shown = 0;
  return {
    async onChange(type, data) {
      if (type === 'resync') {
        if (deleted) return;
        const before = events;
        let t;
        try {
          t = await page.get(path);
        } catch (e) {
          // deleted while the stream was down (no event told): as the announced deletion, not "404 task not found"
          // with its actions enabled
          if (e.status !== 404) throw e;
          markDeleted();
          return;
        }
        if (events === before) showTask(t);
        redrawHistory();
      } else if (type === 'task' && data.id === id) {
        if (data.version <= shown) return;
        shown = data.version;
        events++;
        if (data.deleted) {
          markDeleted();
          return;
        }
        showTask(data.task);
        redrawHistory();
      }
    },
  };
}
