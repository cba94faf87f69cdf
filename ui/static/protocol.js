// protocol.js — frame helpers for the chat WebSocket, a subset of the
// OpenClaw gateway protocol v3 (SPEC §5.5): requests {type:"req", id,
// method, params}, responses {type:"res", id, ok, payload | error} and
// events {type:"event", event, payload, seq}. Pure functions, no DOM.

export const protocolVersion = 3;

/** client identifies the web UI in the connect request. */
export const client = Object.freeze({ id: 'ocmt-web', version: '1', platform: 'web', mode: 'webchat' });

/** connectParams are the params of the first request on a socket. */
export function connectParams() {
  return {
    minProtocol: protocolVersion,
    maxProtocol: protocolVersion,
    client: { ...client },
    role: 'operator',
    scopes: ['operator.read', 'operator.write'],
  };
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function randomBytes(n, cryptoObj) {
  const b = new Uint8Array(n);
  cryptoObj.getRandomValues(b);
  return b;
}

/**
 * uuid returns a random RFC 4122 v4 UUID. crypto.randomUUID only exists in
 * secure contexts, getRandomValues everywhere.
 */
export function uuid(cryptoObj = globalThis.crypto) {
  const b = randomBytes(16, cryptoObj);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = hex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** newSessionKey returns a fresh chat session key, "web-" + 12 hex digits. */
export function newSessionKey(cryptoObj = globalThis.crypto) {
  return `web-${hex(randomBytes(6, cryptoObj))}`;
}

/** reqFrame returns the JSON text of a request frame. */
export function reqFrame(id, method, params = {}) {
  return JSON.stringify({ type: 'req', id: String(id), method: String(method), params: params ?? {} });
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * parseFrame parses and checks one text frame. It returns the frame object
 * (res: id string and ok boolean; event: event string; req: id and method)
 * or null for anything else, including invalid JSON.
 */
export function parseFrame(text) {
  if (typeof text !== 'string' || text.length === 0) return null;
  let f;
  try {
    f = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObj(f)) return null;
  switch (f.type) {
    case 'res':
      return typeof f.id === 'string' && typeof f.ok === 'boolean' ? f : null;
    case 'event':
      return typeof f.event === 'string' ? f : null;
    case 'req':
      return typeof f.id === 'string' && typeof f.method === 'string' ? f : null;
    default:
      return null;
  }
}

/** frameError returns {code, message, unlockUrl?} of a failed res frame. */
export function frameError(frame) {
  const e = isObj(frame && frame.error) ? frame.error : {};
  const out = {
    code: typeof e.code === 'string' && e.code ? e.code : 'error',
    message: typeof e.message === 'string' && e.message ? e.message : 'The request failed.',
  };
  if (typeof e.unlockUrl === 'string') out.unlockUrl = e.unlockUrl;
  return out;
}

/**
 * messageText returns the text of a chat message: a string, {content:
 * string} or {content: [{type:"text", text}, ...]} (other parts skipped).
 */
export function messageText(message) {
  if (typeof message === 'string') return message;
  if (!isObj(message)) return '';
  const c = message.content;
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    return c.filter((p) => isObj(p) && (p.type === 'text' || p.type === undefined) && typeof p.text === 'string').map((p) => p.text).join('');
  }
  if (typeof message.text === 'string') return message.text;
  return '';
}

const chatStates = new Set(['delta', 'final', 'aborted', 'error']);

/**
 * chatEvent normalizes the payload of a "chat" event to {runId, sessionKey,
 * seq, state, text, errorMessage}, or null when it is not one.
 */
export function chatEvent(payload) {
  if (!isObj(payload) || !chatStates.has(payload.state)) return null;
  return {
    runId: typeof payload.runId === 'string' ? payload.runId : '',
    sessionKey: typeof payload.sessionKey === 'string' ? payload.sessionKey : '',
    seq: Number.isFinite(payload.seq) ? payload.seq : 0,
    state: payload.state,
    text: messageText(payload.message),
    errorMessage: typeof payload.errorMessage === 'string' ? payload.errorMessage : '',
  };
}

/** historyMessages returns [{role, text, timestamp}] for user and assistant messages of a chat.history payload. */
export function historyMessages(payload) {
  const list = isObj(payload) && Array.isArray(payload.messages) ? payload.messages : [];
  return list
    .filter((m) => isObj(m) && (m.role === 'user' || m.role === 'assistant'))
    .map((m) => ({ role: m.role, text: messageText(m), timestamp: Number.isFinite(m.timestamp) ? m.timestamp : 0 }));
}

/** sessionList returns the sessions of a sessions.list payload, newest first. */
export function sessionList(payload) {
  const list = isObj(payload) && Array.isArray(payload.sessions) ? payload.sessions : [];
  return list
    .filter((s) => isObj(s) && typeof s.key === 'string' && s.key)
    .map((s) => ({
      key: s.key,
      title: typeof s.title === 'string' ? s.title : '',
      updatedAt: Number.isFinite(s.updatedAt) ? s.updatedAt : (typeof s.updatedAt === 'string' ? Date.parse(s.updatedAt) || 0 : 0),
      messageCount: Number.isFinite(s.messageCount) ? s.messageCount : 0,
    }))
    .sort((a, b) => b.updatedAt - a.updatedAt);
}

/**
 * backoffDelay returns the wait in ms before reconnect attempt n (0-based):
 * 1 s doubling to at most 30 s, with ±20 % jitter.
 */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(30000, 1000 * 2 ** Math.max(0, Math.min(attempt, 10)));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** chatURL returns the chat WebSocket URL for a page location. */
export function chatURL(loc = globalThis.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/api/v1/me/agent/chat`;
}
