// One proplet: liveness, metadata, latest CPU and memory, and its tasks (newest first).
import { h, fields, stamp, age, stateBadge } from '../dom.js';
import { latestMetrics, cpu, mib } from './proplets.js';
import { redrawer } from '../redraw.js';

export async function render(page, [id]) {
  const draw = async () => {
    const key = encodeURIComponent(id);
    const [p, metrics, tasks] = await Promise.all([page.get(`/proplets/${key}`), latestMetrics(id, page.signal), page.get(`/tasks?limit=50&order=newest&proplet_id=${key}`)]);
    const m = p.metadata ?? {};
    const now = Date.now();
    page.show(
      h('h1', {}, p.name || p.id, ' ', h('span', { class: `alive ${p.alive ? 'yes' : 'no'}` }, p.alive ? 'alive' : 'offline')),
      h('div', { class: 'mono muted' }, p.id),
      h('section', { class: 'card' }, fields([
        ['Last heartbeat', p.last_alive_at ? `${stamp(p.last_alive_at)} (${age(p.last_alive_at, now)} ago)` : 'never'],
        ['Running tasks', p.task_count],
        ['CPU', cpu(metrics)],
        ['Memory (RSS)', mib(metrics?.memory_metrics?.rss_bytes)],
        ['Hostname', m.hostname], ['OS', m.os], ['Arch', m.cpu_arch], ['Total memory', mib(m.total_memory_bytes)],
        ['Wasm runtime', m.wasm_runtime], ['Version', m.proplet_version], ['Location', m.location], ['Description', m.description],
      ])),
      h('h2', {}, `Tasks (${tasks.total})`),
      h('table', {}, h('thead', {}, h('tr', {}, ['ID', 'Name', 'State', 'Created'].map((c) => h('th', {}, c)))),
        h('tbody', {}, tasks.tasks.map((t) => h('tr', {},
          h('td', { class: 'mono' }, h('a', { href: `#/tasks/${t.id}` }, t.id)), h('td', {}, t.name), h('td', {}, stateBadge(t.state)),
          h('td', {}, `${age(t.created_at, now)} ago`))))));
  };
  await draw();
  const redraw = redrawer(draw, { gap: 1000, signal: page.signal, fail: page.fail });
  const timer = setInterval(redraw, 5000);
  return {
    onChange(type, data) {
      if (type === 'resync' || (type === 'proplet' && data.id === id) || (type === 'task' && data.task?.proplet_id === id)) redraw();
    },
    dispose() { clearInterval(timer); },
  };
}
