// api.js — fetch wrapper for the ocmt HTTP API (SPEC §11): JSON bodies, the
// CSRF header on state-changing requests, and {"error":{"code","message"}}
// bodies turned into APIError (with unlockUrl and retryAfterMs when the
// error carries them).

/** APIError is thrown for non-2xx answers and network failures (status 0). */
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'APIError';
    this.status = status;
    this.code = code;
  }
}

/** csrfToken returns the token from <body data-csrf>, else the ocmt_csrf cookie. */
export function csrfToken() {
  const fromBody = document.body ? document.body.dataset.csrf : '';
  if (fromBody) return fromBody;
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === 'ocmt_csrf') return decodeURIComponent(v.join('='));
  }
  return '';
}

const fallbackMessages = {
  400: 'The request was not accepted. Check the form and try again.',
  401: 'Your session has ended. Please sign in again.',
  403: 'You are not allowed to do that.',
  404: 'Not found.',
  409: 'That conflicts with the current state. Refresh and try again.',
  413: 'That request is too large.',
  423: 'Your vault is locked.',
  429: 'Too many attempts. Please wait a moment and try again.',
  503: 'The server is busy. Please try again shortly.',
};

/** sentence returns msg with its first letter in upper case (messages are shown as sentences). */
export function sentence(msg) {
  return msg.charAt(0).toUpperCase() + msg.slice(1);
}

function fallbackMessage(status) {
  if (fallbackMessages[status]) return fallbackMessages[status];
  if (status >= 500) return 'Something went wrong on the server. Please try again.';
  return `Request failed (HTTP ${status}).`;
}

/**
 * reachabilityEvent is dispatched on document when the server stops or
 * starts answering: detail {reachable: bool}. A network failure (or a
 * 502/504 without ocmt's JSON error, i.e. a proxy in front whose upstream
 * is gone) marks the server unreachable; any other answer marks it back.
 */
export const reachabilityEvent = 'ocmt:reachability';
let reachable = true;

/** serverReachable reports whether the last request reached the server. */
export function serverReachable() {
  return reachable;
}

function setReachable(ok) {
  if (ok === reachable) return;
  reachable = ok;
  if (typeof document !== 'undefined') document.dispatchEvent(new CustomEvent(reachabilityEvent, { detail: { reachable: ok } }));
}

const unreachableMessage = "Can't reach the server. Check your connection; the page updates when it answers again.";

/**
 * request sends method to path with an optional JSON body and resolves to
 * {status, data} (data is the parsed JSON body or null). It rejects with
 * APIError for any non-2xx status or network failure.
 */
export async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken();
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    setReachable(false);
    throw new APIError(0, 'network_error', unreachableMessage);
  }
  let data = null;
  const text = await res.text().catch(() => '');
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if ((res.status === 502 || res.status === 504) && !(data && typeof data === 'object' && data.error)) {
    setReachable(false);
    throw new APIError(0, 'network_error', unreachableMessage);
  }
  setReachable(true);
  if (!res.ok) {
    const e = data && typeof data === 'object' && data.error && typeof data.error === 'object' ? data.error : {};
    const code = typeof e.code === 'string' && e.code ? e.code : `http_${res.status}`;
    const message = typeof e.message === 'string' && e.message ? sentence(e.message) : fallbackMessage(res.status);
    const err = new APIError(res.status, code, message);
    if (typeof e.unlockUrl === 'string') err.unlockUrl = e.unlockUrl;
    const retry = Number(e.retryAfterMs);
    if (Number.isFinite(retry) && retry >= 0) err.retryAfterMs = retry;
    else if (res.status === 429 && /^\d+$/.test(res.headers.get('Retry-After') || '')) err.retryAfterMs = Number(res.headers.get('Retry-After')) * 1000;
    throw err;
  }
  return { status: res.status, data };
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body);
export const put = (path, body) => request('PUT', path, body);
export const del = (path) => request('DELETE', path);
