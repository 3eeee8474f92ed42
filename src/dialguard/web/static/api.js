// The /v1 API from the page: the token rides in the Authorization header, never in a URL, and stays in
// sessionStorage (this tab only). Errors arrive as {error_id, message, details} and leave as ApiError.

const KEY = 'dialguard.session';

export class ApiError extends Error {
  constructor(status, errorId, message, details) {
    super(message);
    this.status = status;
    this.errorId = errorId;
    this.details = details ?? {};
  }

  /** The gateway has no such route (yet): an older gateway, or a part of the API not deployed. */
  get absent() {
    return (this.status === 404 && this.errorId === 'not_found') || this.status === 405;
  }
}

/** {token, name, role} of the signed-in tab, or null. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY));
  } catch {
    return null;
  }
}

export function saveSession(value) {
  sessionStorage.setItem(KEY, JSON.stringify(value));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

export function canWrite() {
  return ['admin', 'dialer'].includes(session()?.role);
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {})) if (v != null && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}

export async function errorOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say
  }
  return new ApiError(
    response.status,
    body.error_id ?? `http_${response.status}`,
    body.message ?? `${response.status} ${response.statusText}`,
    body.details,
  );
}

/** A fetch with the tab's token; a 401 signs the tab out (the token was revoked meanwhile). */
export async function request(path, { method = 'GET', params, body, headers = {}, signal, token } = {}) {
  const bearer = token ?? session()?.token;
  const sent = { Accept: 'application/json', ...headers };
  if (bearer) sent.Authorization = `Bearer ${bearer}`;
  const init = { method, headers: sent, signal, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    sent['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path + query(params), init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'unreachable', 'The gateway did not answer: is it running, and is the network up?');
  }
  if (response.ok) return response;
  const error = await errorOf(response);
  if (response.status === 401 && token === undefined) {
    window.dispatchEvent(new CustomEvent('dialguard:unauthorized', { detail: error.message }));
  }
  throw error;
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

/** Every page of a cursor-paged list (GET /v1/decisions), up to `most` items. */
export async function* pages(path, params, key, { most = 100000, limit = 500, signal } = {}) {
  let cursor = null;
  let seen = 0;
  do {
    const page = await getJson(path, { params: { ...params, limit, cursor }, signal });
    const items = page[key] ?? [];
    seen += items.length;
    yield items;
    cursor = page.next_cursor;
  } while (cursor && seen < most);
}

/** Save a Blob as a file the browser downloads. */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

const EXTENSIONS = {
  'application/zip': 'zip', 'application/json': 'json', 'application/x-ndjson': 'ndjson',
  'text/csv': 'csv', 'text/plain': 'txt', 'application/gzip': 'gz', 'application/x-tar': 'tar',
};

/** Download what a GET answers (an evidence bundle), named as the gateway names it. */
export async function downloadFrom(path, params, fallbackName) {
  const response = await request(path, { params, headers: { Accept: '*/*' } });
  const blob = await response.blob();
  const disposition = response.headers.get('Content-Disposition') ?? '';
  const named = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  const type = (response.headers.get('Content-Type') ?? '').split(';')[0].trim();
  const name = named ? decodeURIComponent(named[1]) : `${fallbackName}.${EXTENSIONS[type] ?? 'bin'}`;
  download(blob, name.replace(/[\\/]/g, '_'));
  return name;
}
