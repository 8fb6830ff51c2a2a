// The fleet: every proplet alive or offline, its running tasks, last heartbeat, and CPU and memory from its latest
// metrics. Heartbeats are not events, so the page also re-reads every 5 s.
import { api } from '../api.js';
import { message } from '../message.js';
import { h, age, stamp } from '../dom.js';

export const mib = (bytes) => (bytes === undefined || bytes === null ? '' : `${(bytes / 1048576).toFixed(1)} MiB`);

export async function latestMetrics(id) {
  try {
    const page = await api.get(`/proplets/${encodeURIComponent(id)}/metrics?limit=1`);
    return page.metrics?.[0] ?? null;
  } catch {
    return null; // metrics are optional: the row still shows
  }
}

export const cpu = (m) => (m?.cpu_metrics?.percent === undefined ? '' : `${Number(m.cpu_metrics.percent).toFixed(1)}%`);

export async function render(main) {
  const body = h('tbody');
  const count = h('p', { class: 'muted' });
  main.replaceChildren(h('h1', {}, 'Proplets'), h('table', { class: 'proplets' },
    h('thead', {}, h('tr', {}, ['ID', 'Name', 'Status', 'Running tasks', 'Last heartbeat', 'CPU', 'Memory'].map((c) => h('th', {}, c)))), body), count);

  const draw = async () => {
    const page = await api.get('/proplets?limit=1000');
    const metrics = await Promise.all(page.proplets.map((p) => latestMetrics(p.id)));
    const now = Date.now();
    body.replaceChildren(...page.proplets.map((p, i) => h('tr', { dataset: { id: p.id } },
      h('td', { class: 'mono' }, h('a', { href: `#/proplets/${p.id}` }, p.id)),
      h('td', {}, p.name),
      h('td', {}, h('span', { class: `alive ${p.alive ? 'yes' : 'no'}` }, p.alive ? 'alive' : 'offline')),
      h('td', {}, p.task_count),
      h('td', { title: stamp(p.last_alive_at) }, p.last_alive_at ? `${age(p.last_alive_at, now)} ago` : 'never'),
      h('td', {}, cpu(metrics[i])),
      h('td', {}, mib(metrics[i]?.memory_metrics?.rss_bytes)))));
    count.textContent = `${page.total} proplet(s)`;
  };
  await draw();
  const timer = setInterval(() => draw().catch((e) => message(e.message)), 5000);
  return {
    onChange(type) {
      if (type === 'proplet' || type === 'resync') draw().catch((e) => message(e.message));
    },
    dispose() { clearInterval(timer); },
  };
}
