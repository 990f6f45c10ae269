// The page's only way to the server: every /v1 request goes through
// request(), which adds the API key (if one was given) and, when the server
// answers 401, asks for a key and tries again. Event streams are read with
// fetch (EventSource cannot send an Authorization header).

const KEY = 'tsnemap.apiKey';

/** An answer that was not 2xx: status, the problem+json (if any), a message in words. */
export class APIError extends Error {
  constructor(status, problem, message) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
  /** Field → message, from the problem's `errors`. */
  fieldErrors() {
    const out = new Map();
    for (const e of this.problem?.errors ?? []) {
      out.set(e.field, out.has(e.field) ? out.get(e.field) + '; ' + e.message : e.message);
    }
    return out;
  }
}

let askKey = async () => null; // replaced by the page: shows the dialog
let pendingAsk = null;

/** Sets the function that asks the user for a key: (reason) => Promise<string|null>. */
export function setKeyPrompt(fn) { askKey = fn; }

export function apiKey() {
  try { return sessionStorage.getItem(KEY) || ''; } catch { return ''; }
}

export function setAPIKey(k) {
  try {
    if (k) sessionStorage.setItem(KEY, k); else sessionStorage.removeItem(KEY);
  } catch { /* storage disabled: the key lasts as long as nothing */ }
}

function withAuth(init = {}) {
  const headers = new Headers(init.headers || {});
  const k = apiKey();
  if (k) headers.set('Authorization', 'Bearer ' + k);
  return { ...init, headers };
}

// One dialog at a time, however many requests were refused together.
function askOnce(reason) {
  if (!pendingAsk) {
    pendingAsk = Promise.resolve(askKey(reason)).finally(() => { pendingAsk = null; });
  }
  return pendingAsk;
}

/**
 * fetch with the key; on 401 asks for one (up to 3 times). Returns the
 * Response when 2xx or 304, else throws APIError with the problem's words.
 */
export async function request(path, init = {}) {
  for (let attempt = 0; ; attempt++) {
    let res;
    try {
      res = await fetch(path, withAuth(init));
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new APIError(0, null, 'The server could not be reached (' + e.message + '). Check that tsnemap is running, then try again.');
    }
    if (res.status === 401 && attempt < 3) {
      const problem = await readProblem(res);
      const had = apiKey();
      const k = await askOnce(had ? 'The server did not accept that key' + (problem?.detail ? ': ' + problem.detail : '.') :
        'This server asks for an API key' + (problem?.detail ? ': ' + problem.detail : '.'));
      if (!k) throw new APIError(401, problem, 'An API key is needed to use this server.');
      setAPIKey(k);
      continue;
    }
    if (res.ok || res.status === 304) return res;
    const problem = await readProblem(res);
    throw new APIError(res.status, problem, describe(res.status, problem));
  }
}

/** request() and the JSON body (null for 204). */
export async function json(path, init) {
  const res = await request(path, init);
  if (res.status === 204) return null;
  return res.json();
}

async function readProblem(res) {
  const ct = res.headers.get('Content-Type') || '';
  if (!ct.includes('json')) return null;
  try { return await res.json(); } catch { return null; }
}

function describe(status, problem) {
  if (problem?.detail) return problem.detail;
  if (problem?.title) return problem.title;
  switch (status) {
    case 404: return 'Not found: it may have been deleted.';
    case 409: return 'Not ready yet.';
    case 503: return 'The server is not ready (its job store is unreachable); try again shortly.';
  }
  return 'The server answered ' + status + '.';
}

/**
 * Reads a Server-Sent Events stream with fetch, calling onEvent(name, data)
 * for each event, until the stream ends, `done` arrives (unless pastDone:
 * a job that follows its table sends `added` after it), or signal aborts.
 * Returns true when it ended with `done`.
 */
export async function readEvents(path, onEvent, signal, pastDone = false) {
  const res = await request(path, { headers: { Accept: 'text/event-stream' }, signal, cache: 'no-store' });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let name = 'message';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) {
            onEvent(name, data.join('\n'));
            if (name === 'done' && !pastDone) return true;
          }
          name = 'message';
          data = [];
        } else if (line.startsWith(':')) {
          // comment (keep-alive)
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let v = colon < 0 ? '' : line.slice(colon + 1);
          if (v.startsWith(' ')) v = v.slice(1);
          if (field === 'event') name = v;
          else if (field === 'data') data.push(v);
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Fetches an image with the key and decodes it for drawing. */
export async function fetchBitmap(path, signal) {
  const res = await request(path, { signal });
  return createImageBitmap(await res.blob());
}

/**
 * Starts a download of path. Without a key a plain link does it (the
 * browser keeps its own progress UI); with one, the file is fetched with the
 * key and saved from a blob.
 */
export async function download(path, filename) {
  const res = await request(path);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
