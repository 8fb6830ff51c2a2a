// The message bar above the view: API errors and confirmations.

let shown = 0; // which message the bar shows: a later one replaces it, and dismiss(id) then leaves that one alone

/**
 * Shows a message above the view: kind 'error' (kept until dismissed or the next page) or 'info' (fades). Returns its
 * id, for dismiss.
 */
export function message(text, kind = 'error') {
  const bar = document.getElementById('message');
  const id = ++shown;
  bar.replaceChildren();
  bar.className = kind;
  bar.append(document.createTextNode(text));
  const close = document.createElement('button');
  close.textContent = '×';
  close.title = 'Dismiss';
  close.addEventListener('click', () => { bar.hidden = true; });
  bar.append(close);
  bar.hidden = false;
  if (kind === 'info') setTimeout(() => dismiss(id), 4000);
  return id;
}

/** Hides message id if the bar still shows it (a later message stays). */
export function dismiss(id) {
  if (id === shown) document.getElementById('message').hidden = true;
}

let flashed = null;

/** A message for the next page: shown when the router clears the bar after navigating. */
export function flash(text, kind = 'error') {
  flashed = [text, kind];
}

export function clearMessage() {
  if (flashed) {
    const [text, kind] = flashed;
    flashed = null;
    message(text, kind);
    return;
  }
  document.getElementById('message').hidden = true;
}
