// The gateway's /v1 API as the page uses it: cookies (httpOnly, out of the page's reach)
// carry the access and refresh tokens; the page only reads the kush_csrf cookie and sends
// it back as X-CSRF-Token on every state-changing request (double-submit CSRF check).

const CSRF_COOKIE = 'kush_csrf';
const CSRF_HEADER = 'X-CSRF-Token';
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** An error answer of the API: `{"error": {"code", "message"}}` with its status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }

  static async from(response) {
    let code = 'http_' + response.status;
    let message = response.statusText || 'Request failed';
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch {
      // not JSON: keep the status text
    }
    return new ApiError(response.status, code, message);
  }
}

/** The value of the readable kush_csrf cookie, or '' when not signed in. */
export function csrfToken() {
  for (const part of document.cookie.split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join('='));
  }
  return '';
}

let refreshing = null;

/** Rotate the refresh cookie once, however many requests saw a 401 at the same time.
 *
 * Presenting a used refresh token again revokes the whole login (theft detection), so
 * concurrent refreshes must not happen: one in flight per page, and one per browser
 * across tabs where the Web Locks API exists.
 */
export function refreshSession() {
  if (!refreshing) {
    const run = async () => {
      const resp = await fetch('/v1/auth/refresh', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { [CSRF_HEADER]: csrfToken() },
      });
      return resp.ok;
    };
    const locked = navigator.locks ? navigator.locks.request('kush-refresh', run) : run();
    refreshing = locked.catch(() => false).finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** Call the API; JSON in and out. Throws ApiError for an error answer.
 *
 * A 401 on a signed-in page (it has the CSRF cookie) is retried once after a refresh:
 * access tokens live 15 minutes, the refresh cookie 7 days.
 */
export async function api(path, { method = 'GET', body, keepalive = false, retry = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (UNSAFE.has(method)) {
    const token = csrfToken();
    if (token) headers[CSRF_HEADER] = token;
  }
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    keepalive,
  });
  if (response.status === 401 && retry && !keepalive && csrfToken()
      && !path.startsWith('/v1/auth/')) {
    if (await refreshSession()) return api(path, { method, body, keepalive, retry: false });
  }
  if (!response.ok) throw await ApiError.from(response);
  if (response.status === 204) return null;
  return response.json();
}

/** Sign in as a browser: the refresh token stays in its httpOnly cookie. */
export function signIn(email, password) {
  return api('/v1/auth/login', { method: 'POST', body: { email, password, client: 'web' } });
}

/** Sign out: revokes the login server-side and clears the cookies. */
export async function signOut() {
  try {
    await api('/v1/auth/logout', { method: 'POST' });
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) throw err;
  }
}

/** The signed-in viewer (`{id, email, role, plan}`), or null. */
export async function currentUser() {
  if (!csrfToken()) return null; // never signed in on this browser: skip the round trip
  try {
    return await api('/v1/me');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null;
    throw err;
  }
}
