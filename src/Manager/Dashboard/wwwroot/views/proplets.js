// The fleet: every proplet alive or offline, its running tasks, last heartbeat, and CPU and memory from its latest
// metrics. Heartbeats are not events, so the page also re-reads every 5 s (one read at a time, proplet events throttled
// to one read a second, the metrics of at most 4 proplets fetched at once).
import { api } from '../api.js';
import { h, age, stamp } from '../dom.js';
import { redrawer, mapLimited } from '../redraw.js';

export const mib = (bytes) => (bytes === undefined || bytes === null ? '' : `${(bytes / 1048576).toFixed(1)} MiB`);

export async function latestMetrics(id, signal) {
  try {
    const page = await api.get(`/proplets/${encodeURIComponent(id)}/metrics?limit=1`, signal);
    return page.metrics?.[0] ?? null;
  } catch {
    return null; // metrics are optional: the row still shows
  }
}

export const cpu = (m) => (m?.cpu_metrics?.percent === undefined ? '' : `${Number(m.cpu_metrics.percent).toFixed(1)}%`);

export async function render(page) {
  const body = h('tbody');
  const count = h('p', { class: 'muted' });
  page.show(h('h1', {}, 'Proplets'), h('table', { class: 'proplets' },
    h('thead', {}, h('tr', {}, ['ID', 'Name', 'Status', 'Running tasks', 'Last heartbeat', 'CPU', 'Memory'].map((c) => h('th', {}, c)))), body), count);

  const draw = async () => {
    const list = await page.get('/proplets?limit=1000');
    const metrics = await mapLimited(list.proplets, 4, (p) => latestMetrics(p.id, page.signal));
    const now = Date.now();
    body.replaceChildren(...list.proplets.map((p, i) => h('tr', { dataset: { id: p.id } },
      h('td', { class: 'mono' }, h('a', { href: `#/proplets/${p.id}` }, p.id)),
      h('td', {}, p.name),
      h('td', {}, h('span', { class: `alive ${p.alive ? 'yes' : 'no'}` }, p.alive ? 'alive' : 'offline')),
      h('td', {}, p.task_count),
      h('td', { title: stamp(p.last_alive_at) }, p.last_alive_at ? `${age(p.last_alive_at, now)} ago` : 'never'),
      h('td', {}, cpu(metrics[i])),
      h('td', {}, mib(metrics[i]?.memory_metrics?.rss_bytes)))));
    count.textContent = `${list.total} proplet(s)`;
  };
  await draw();
  const redraw = redrawer(draw, { gap: 1000, signal: page.signal, fail: page.fail });
  const timer = setInterval(redraw, 5000);
  return {
    onChange(type) {
      if (type === 'proplet' || type === 'resync') redraw();
    },
    dispose() { clearInterval(timer); },
  };
}
