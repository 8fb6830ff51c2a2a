import { apiUrl } from './api.js';

// The live feed: GET /events as an EventSource. The indicator says whether the stream is up; when it drops the
// browser reconnects by itself, and since the manager keeps no replay, every (re)connection asks the views to reload.

const listeners = new Set();
let source = null;
let dropped = false;

/** fn(type, data): type is 'task', 'proplet' or 'resync' (reload everything you show). Returns an unsubscribe. */
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(type, data) {
  for (const fn of listeners) {
    try { fn(type, data); } catch (e) { console.error(e); }
  }
}

function indicator(state, text) {
  const el = document.getElementById('live');
  el.className = `live ${state}`;
  el.textContent = text;
  el.dataset.state = state;
}

export function connect() {
  if (source) source.close();
  indicator('connecting', 'connecting…');
  source = new EventSource(apiUrl('/events'));
  source.addEventListener('hello', () => {
    indicator('up', 'live');
    if (dropped) emit('resync', null); // changes made while the stream was down were not sent
    dropped = false;
  });
  source.addEventListener('task', (e) => emit('task', JSON.parse(e.data)));
  source.addEventListener('proplet', (e) => emit('proplet', JSON.parse(e.data)));
  source.addEventListener('resync', () => emit('resync', null));
  source.addEventListener('error', () => {
    dropped = true;
    indicator('down', source.readyState === EventSource.CLOSED ? 'stream closed — reload the page' : 'stream dropped — reconnecting…');
  });
}
