// The fleet, a page of 50 at a time: every proplet alive or offline, its running tasks, last heartbeat, and CPU and
// memory from its latest metrics (read for the page's proplets only). Heartbeats are not events, so the page also
// re-reads every 5 s (one read at a time, proplet events throttled to one read a second, the metrics of at most 4
// proplets fetched at once).
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

const LIMIT = 50;

export async function render(page, _params, query) {
  const offset = Math.max(0, Number(query.get('offset') ?? 0) || 0);
  const go = (to) => { location.hash = to > 0 ? `#/proplets?offset=${to}` : '#/proplets'; };
  const body = h('tbody');
  const pager = h('div', { class: 'pager' });
  page.show(h('h1', {}, 'Proplets'), h('table', { class: 'proplets' },
    h('thead', {}, h('tr', {}, ['ID', 'Name', 'Status', 'Running tasks', 'Last heartbeat', 'CPU', 'Memory'].map((c) => h('th', {}, c)))), body), pager);

  const draw = async () => {
    const list = await page.get(`/proplets?offset=${offset}&limit=${LIMIT}`);
    const metrics = await mapLimited(list.proplets, 4, (p) => latestMetrics(p.id, page.signal));
    const now = Date.now();
    body.replaceChildren(...list.proplets.map((p, i) => h('tr', { dataset: { id: p.id } },
      h('td', { class: 'mono' }, h('a', { href: `#/proplets/${encodeURIComponent(p.id)}` }, p.id)),
      h('td', {}, p.name),
      h('td', {}, h('span', { class: `alive ${p.alive ? 'yes' : 'no'}` }, p.alive ? 'alive' : 'offline')),
      h('td', {}, p.task_count),
      h('td', { title: stamp(p.last_alive_at) }, p.last_alive_at ? `${age(p.last_alive_at, now)} ago` : 'never'),
      h('td', {}, cpu(metrics[i])),
      h('td', {}, mib(metrics[i]?.memory_metrics?.rss_bytes)))));
    const shown = list.proplets.length;
    pager.replaceChildren(
      h('button', { disabled: offset === 0, onclick: () => go(Math.max(0, Math.min(offset - LIMIT, list.total - LIMIT))) }, '← Previous'),
      h('span', { id: 'count' }, shown || list.total === 0 ? `${shown ? offset + 1 : 0}–${offset + shown} of ${list.total} proplet(s)` : `none here (${list.total} in all)`),
      h('button', { disabled: offset + LIMIT >= list.total, onclick: () => go(offset + LIMIT) }, 'Next →'));
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
