// Redraws that follow the live feed and timers: one at a time (a request while one runs queues exactly one more after
// it, so answers are applied in the order they were asked for and an older one never overwrites a newer one), at most
// one start per `gap` ms (a burst of events makes one or two reloads, not one each), and none once the view is gone.
// The error a failed draw showed goes away when a later draw succeeds: it said the page was out of date, and no longer
// is (it stayed above the fresh page until the user left).
import { dismiss } from './message.js';

/**
 * Returns request(): asks for draw() to run soon. Errors go to fail(e), which returns the id of the message it showed
 * (or null); nothing runs after signal aborts. request.failed(e) shows the error of a draw the view ran itself (its
 * first) as one of these, so the next successful draw clears it too.
 */
export function redrawer(draw, { gap, signal, fail }) {
  let running = false;
  let queued = false;
  let timer = null;
  let last = -Infinity;
  let shown = null; // the message of the last failed draw
  const failed = (e) => { shown = fail(e) ?? null; };
  const start = () => {
    timer = null;
    if (signal.aborted) return;
    running = true;
    queued = false;
    last = Date.now();
    Promise.resolve().then(draw).then(() => {
      if (shown !== null) dismiss(shown);
      shown = null;
    }, failed).finally(() => {
      running = false;
      if (queued) request();
    });
  };
  const request = () => {
    if (signal.aborted) return;
    if (running) {
      queued = true;
      return;
    }
    if (timer) return;
    const wait = last + gap - Date.now();
    if (wait > 0) timer = setTimeout(start, wait);
    else start();
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  request.failed = failed;
  return request;
}

/** fn over items, at most `limit` at a time; the results in the items' order. */
export async function mapLimited(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
