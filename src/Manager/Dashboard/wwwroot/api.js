// The manager's HTTP API. Every failure becomes an Error whose message is the manager's {"error": ...} or says why
// the manager could not be reached, so views can show it.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/**
 * Whether a failed call may pass by itself (the manager unreachable or restarting, a proxy's 502 or 503: status 0 or
 * 5xx), so it is worth making again later. A 4xx is the manager's answer for good, and an error that is not the API's
 * (a fault in the page) would only fail again.
 */
export const passing = (e) => e instanceof ApiError && (e.status === 0 || e.status >= 500);

// The dashboard is served under /ui/ by the manager: the API is one level up (also behind a path prefix).
export const apiBase = new URL('../', document.baseURI);

// A segment "." or ".." (an id such as #/proplets/.., which encodeURIComponent leaves as it is, and %2E%2E is read the
// same) would be resolved away: /proplets/.. asked for the API's root. Such a path is refused, not sent.
export const apiUrl = (path) => {
  if (path.split(/[?#]/)[0].split('/').some((s) => /^(\.|%2e){1,2}$/i.test(s))) throw new ApiError(`${path}: an id may not be "." or ".."`, 400);
  return new URL(path.replace(/^\//, ''), apiBase).href;
};

// The user the manager records in the history and shows to plugins (X-User-Id); there is no login. A header value is
// printable ASCII, as the CLI's --user: fetch refuses characters above U+00FF and the manager answers 400 to other
// non-ASCII bytes, so every call would fail. A name kept before this check that is not one is ignored.
const printable = (value) => /^[\x20-\x7e]*$/.test(value);

export const user = {
  get: () => {
    const value = localStorage.getItem('propeller.user') ?? '';
    return printable(value) ? value : '';
  },
  /** Keeps the name and returns true, or returns false for one that cannot be sent (then nothing changes). */
  set: (value) => {
    if (!printable(value)) return false;
    if (value) localStorage.setItem('propeller.user', value);
    else localStorage.removeItem('propeller.user');
    return true;
  },
};

// signal (optional) aborts the call: it then rejects with the signal's AbortError, which views do not show.
async function request(method, path, { body, headers = {}, signal } = {}) {
  const who = user.get();
  const url = apiUrl(path);
  let response;
  try {
    response = await fetch(url, { method, body, signal, headers: { Accept: 'application/json', ...(who ? { 'X-User-Id': who } : {}), ...headers } });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new ApiError(`cannot reach the manager (${e.message})`, 0);
  }
  let text;
  try {
    text = await response.text();
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new ApiError(`cannot read the manager's answer (${e.message})`, 0); // the connection dropped mid-answer
  }
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { /* not JSON: shown as text below */ }
  }
  if (!response.ok) {
    const detail = json && typeof json.error === 'string' ? json.error : (text || response.statusText);
    throw new ApiError(`${method} ${path}: ${response.status} ${detail}`, response.status);
  }
  return json;
}

const jsonBody = (value) => ({ body: JSON.stringify(value), headers: { 'Content-Type': 'application/json' } });

export const api = {
  get: (path, signal) => request('GET', path, { signal }),
  post: (path, value) => value === undefined ? request('POST', path) : request('POST', path, jsonBody(value)),
  del: (path) => request('DELETE', path),
  upload: (path, file) => {
    const form = new FormData();
    form.append('file', file, file.name);
    return request('PUT', path, { body: form });
  },
};
