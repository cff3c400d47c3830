// The REST API: JSON in and out, and its one error shape ({error, code, field}) as an Error.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code;
    this.field = body?.field;
  }
}

/** {status, data}: data is the answer's JSON, or null for an answer without a body. */
export async function request(method, path, body) {
  const init = {method, headers: {accept: 'application/json'}};
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
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
