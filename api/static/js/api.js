// The REST API: JSON in and out, and its one error shape ({error, code, field}) as an Error.
// Signed in by the session cookie, every change carries the session's CSRF token; a 401
// (the session ended: signed out, expired, its key revoked) is told to whoever listens
// (main.js: back to the sign-in page).

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code;
    this.field = body?.field;
  }
}

const SAFE = new Set(['GET', 'HEAD']);
let csrfToken = null;
let unauthorized = () => {};

/** The session's CSRF token (null: none, auth off or signed out). */
export function setCsrfToken(token) {
  csrfToken = token;
}

/** fn() on every 401 from the API (not from the sign-in's own requests). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/** {status, data}: data is the answer's JSON, or null for an answer without a body.
 * headers: more request headers; quiet: a 401 is only thrown (the sign-in's requests). */
export async function request(method, path, body, {headers = {}, quiet = false} = {}) {
  const init = {method, headers: {accept: 'application/json', ...headers},
    credentials: 'same-origin'};
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  if (csrfToken && !SAFE.has(method)) init.headers['x-csrf-token'] = csrfToken;
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401 && !quiet) unauthorized();
    throw new ApiError(response.status, data);
  }
  return {status: response.status, data};
}

export const get = async (path) => (await request('GET', path)).data;
export const post = (path, body) => request('POST', path, body);
export const del = (path) => request('DELETE', path);

/** Run fn over items, at most `width` at a time; the outcome of each, in order. */
export async function each(items, fn, width = 8) {
  const outcomes = new Array(items.length);
  let next = 0;
  async function lane() {
    while (next < items.length) {
      const i = next++;
      try {
        outcomes[i] = {ok: true, value: await fn(items[i])};
      } catch (error) {
        outcomes[i] = {ok: false, error};
      }
    }
  }
  await Promise.all(Array.from({length: Math.min(width, items.length)}, lane));
  return outcomes;
}
