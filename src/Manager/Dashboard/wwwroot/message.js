// The message bar above the view: API errors and confirmations.

/** Shows a message above the view: kind 'error' (kept until dismissed or the next page) or 'info' (fades). */
export function message(text, kind = 'error') {
  const bar = document.getElementById('message');
  bar.replaceChildren();
  bar.className = kind;
  bar.append(document.createTextNode(text));
  const close = document.createElement('button');
  close.textContent = '×';
  close.title = 'Dismiss';
  close.addEventListener('click', () => { bar.hidden = true; });
  bar.append(close);
  bar.hidden = false;
  if (kind === 'info') setTimeout(() => { if (bar.textContent.startsWith(text)) bar.hidden = true; }, 4000);
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
