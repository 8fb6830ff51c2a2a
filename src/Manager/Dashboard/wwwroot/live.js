import { apiUrl } from './api.js';

// The live feed: GET /events as an EventSource. The indicator says whether the stream is up. When it drops the browser
// reconnects by itself; when the browser gives up (an answer that is not an event stream, such as a proxy's 502 while
// the manager restarts) this module opens a new one, after 1 s doubling to 15 s. Since the manager keeps no replay,
// every reconnection asks the views to reload.

const listeners = new Set();
let source = null;
let dropped = false;
let retry = null;
let delay = 1000;
const MAX_DELAY = 15000;

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
  clearTimeout(retry);
  retry = null;
  if (source) source.close();
  if (!dropped) indicator('connecting', 'connecting…');
  const mine = new EventSource(apiUrl('/events'));
  source = mine;
  mine.addEventListener('hello', () => {
    indicator('up', 'live');
    delay = 1000;
    if (dropped) emit('resync', null); // changes made while the stream was down were not sent
    dropped = false;
  });
  mine.addEventListener('task', (e) => emit('task', JSON.parse(e.data)));
  mine.addEventListener('proplet', (e) => emit('proplet', JSON.parse(e.data)));
  mine.addEventListener('resync', () => emit('resync', null));
  mine.addEventListener('error', () => {
    if (mine !== source) return;
    dropped = true;
    indicator('down', 'stream dropped — reconnecting…');
    if (mine.readyState === EventSource.CLOSED && !retry) {
      // the browser will not retry this one: open a new stream later
      retry = setTimeout(connect, delay);
      delay = Math.min(delay * 2, MAX_DELAY);
    }
  });
}
