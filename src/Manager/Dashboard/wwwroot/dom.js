// Small DOM helpers: elements are built with text nodes, never from HTML strings (task names and errors are data).

/** h('a', {href: '#/x', class: 'c', onclick: f}, 'text', child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const STATES = ['pending', 'scheduled', 'running', 'completed', 'failed', 'skipped', 'interrupted'];

export const stateName = (state) => STATES[state] ?? String(state);

export const ended = (state) => state >= 3;

export function stateBadge(state) {
  return h('span', { class: `state state-${stateName(state)}`, dataset: { state: stateName(state) } }, stateName(state));
}

const ZERO = '0001-01-01T00:00:00Z';

export function time(value) {
  if (!value || value === ZERO) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function age(value, now = Date.now()) {
  const date = time(value);
  if (!date) return '';
  const s = Math.max(0, (now - date.getTime()) / 1000);
  if (s < 1) return 'now';
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function stamp(value) {
  const date = time(value);
  return date ? date.toISOString().replace('T', ' ').replace('Z', ' UTC') : '';
}

/** A definition list of [label, value] pairs, skipping empty values. */
export function fields(pairs) {
  return h('dl', { class: 'fields' }, pairs
    .filter(([, value]) => value !== undefined && value !== null && value !== '')
    .map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]));
}

export function results(task) {
  if (task.results === undefined || task.results === null) return '';
  return typeof task.results === 'string' ? task.results : JSON.stringify(task.results);
}
