// gateway.js — a client for the chat WebSocket (SPEC §5.5): the connect
// handshake, request/response matching, event delivery, a keep-alive
// watchdog and reconnects with backoff. No DOM; the WebSocket constructor
// and timers are injectable so node --test can drive it with fakes.
import { backoffDelay, connectParams, frameError, parseFrame, reqFrame, uuid } from './protocol.js';

/** GatewayError is how failed requests reject: code is the server's error code (or "timeout", "disconnected", "closed"). */
export class GatewayError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'GatewayError';
    this.code = code;
    Object.assign(this, extra);
  }
}

/**
 * CLOSE_SESSION_ENDED is the close code the server sends when the browser
 * session the socket was opened with ended (reason "signed out", "session
 * expired" or "session ended"). The client then stops for good: no
 * reconnect, and requests reject with code "signed_out".
 */
export const CLOSE_SESSION_ENDED = 4401;

// sessionEndedMessage turns the server's close reason into a sentence.
function sessionEndedMessage(reason) {
  if (reason === 'session expired') return 'Your session expired. Sign in again to continue.';
  return 'You were signed out. Sign in again to continue.';
}

// Connect errors that a reconnect cannot fix by itself; the page decides
// (unlock the vault, sign in again) and calls connect() or a request again.
const noRetryCodes = new Set(['vault_locked', 'unauthorized', 'forbidden', 'protocol_unsupported', 'invalid_request']);

// agentAsleep is the close code of a socket whose container ocmt stopped
// for hibernation (api.CloseAgentAsleep): redialing by ourselves would
// start it again, so the next request (or the user) reconnects instead.
const agentAsleep = 4100;

/**
 * GatewayClient keeps one WebSocket to url. Requests made before the socket
 * is ready are queued and sent after the handshake; requests in flight when
 * it drops reject with code "disconnected". Options: onEvent(name, payload,
 * frame) for every event but tick and connect.challenge; onStatus({state:
 * "connecting"|"open"|"closed", code?, reason?, retryInMs?, error?, hello?});
 * reconnect (default true); requestTimeoutMs; handshakeTimeoutMs;
 * WebSocket, setTimeout, clearTimeout, random, newId for tests.
 */
export class GatewayClient {
  constructor(url, opts = {}) {
    this.url = url;
    this.WS = opts.WebSocket || globalThis.WebSocket;
    this.onEvent = opts.onEvent || (() => {});
    this.onStatus = opts.onStatus || (() => {});
    this.setTimer = opts.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = opts.clearTimeout || ((t) => clearTimeout(t));
    this.random = opts.random || Math.random;
    this.newId = opts.newId || (() => uuid());
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30000;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 15000;
    this.challengeWaitMs = opts.challengeWaitMs ?? 3000;
    this.reconnect = opts.reconnect ?? true;

    this.ws = null;
    this.state = 'idle'; // idle | connecting | open | closed
    this.hello = null;
    this.pending = new Map(); // id → {resolve, reject, text, sent, timer}
    this.queue = []; // ids waiting for the handshake
    this.attempt = 0;
    this.retryTimer = 0;
    this.timers = {};
    this.manual = false;
    this.stopError = null;
    this.ended = false; // the session ended (CLOSE_SESSION_ENDED): nothing reopens the socket
    this.connectId = '';
  }

  status(s) {
    try {
      this.onStatus({ ...s });
    } catch {
      // A broken listener must not break the socket.
    }
  }

  clear(name) {
    if (this.timers[name]) this.clearTimer(this.timers[name]);
    this.timers[name] = 0;
  }

  /** connect opens the socket unless it is open or opening. */
  connect() {
    if (this.state === 'connecting' || this.state === 'open' || this.ended) return;
    if (this.retryTimer) this.clearTimer(this.retryTimer);
    this.retryTimer = 0;
    this.manual = false;
    this.stopError = null;
    this.state = 'connecting';
    this.status({ state: 'connecting', attempt: this.attempt });
    let ws;
    try {
      ws = new this.WS(this.url);
    } catch (err) {
      this.ws = {};
      this.handleClose(this.ws, 1006, String((err && err.message) || 'cannot connect'));
      return;
    }
    this.ws = ws;
    let connectSent = false;
    const sendConnect = () => {
      if (connectSent || this.ws !== ws) return;
      connectSent = true;
      this.clear('challenge');
      this.connectId = this.newId();
      this.sendRaw(ws, reqFrame(this.connectId, 'connect', connectParams()));
    };
    ws.onopen = () => {
      if (this.ws !== ws) return;
      // The server speaks first (connect.challenge); if it does not, go ahead.
      this.timers.challenge = this.setTimer(sendConnect, this.challengeWaitMs);
      this.timers.handshake = this.setTimer(() => this.drop(ws, 4000, 'The agent did not answer in time.'), this.handshakeTimeoutMs);
    };
    ws.onmessage = (e) => this.handleMessage(ws, e && e.data, sendConnect);
    ws.onclose = (e) => this.handleClose(ws, (e && e.code) || 1006, (e && e.reason) || '');
    ws.onerror = () => {}; // a close event follows
  }

  sendRaw(ws, text) {
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  // drop closes ws from our side and handles it as closed right away.
  drop(ws, code, reason) {
    if (this.ws !== ws) return;
    this.handleClose(ws, code, reason);
    try {
      ws.close(code >= 4000 ? code : 1000, reason.slice(0, 120));
    } catch {
      // already closed
    }
  }

  armWatchdog() {
    this.clear('watchdog');
    const tick = this.hello && this.hello.policy && Number(this.hello.policy.tickIntervalMs);
    if (!tick || !(tick > 0)) return;
    const ws = this.ws;
    this.timers.watchdog = this.setTimer(() => this.drop(ws, 4001, 'The connection stopped responding.'), Math.max(10000, tick * 2.5));
  }

  handleMessage(ws, data, sendConnect) {
    if (ws !== this.ws) return;
    const f = parseFrame(typeof data === 'string' ? data : '');
    if (!f) return;
    if (this.state === 'open') this.armWatchdog();
    if (f.type === 'event') {
      if (f.event === 'connect.challenge') {
        if (this.state === 'connecting') sendConnect();
        return;
      }
      if (f.event === 'tick') return;
      try {
        this.onEvent(f.event, f.payload, f);
      } catch {
        // listener bug; keep the connection
      }
      return;
    }
    if (f.type !== 'res') return;
    if (this.state === 'connecting' && f.id === this.connectId) {
      this.clear('handshake');
      if (f.ok) {
        this.state = 'open';
        this.attempt = 0;
        this.hello = f.payload && typeof f.payload === 'object' ? f.payload : {};
        this.armWatchdog();
        this.status({ state: 'open', hello: this.hello });
        this.flush();
      } else {
        const e = frameError(f);
        this.stopError = new GatewayError(e.code, e.message, e.unlockUrl ? { unlockUrl: e.unlockUrl } : {});
        this.drop(ws, 1000, e.message);
      }
      return;
    }
    const p = this.pending.get(f.id);
    if (!p) return;
    this.pending.delete(f.id);
    this.clearTimer(p.timer);
    if (f.ok) {
      p.resolve(f.payload && typeof f.payload === 'object' ? f.payload : {});
    } else {
      const e = frameError(f);
      p.reject(new GatewayError(e.code, e.message, e.unlockUrl ? { unlockUrl: e.unlockUrl } : {}));
    }
  }

  handleClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    for (const t of Object.keys(this.timers)) this.clear(t);
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    if (code === CLOSE_SESSION_ENDED) {
      this.ended = true;
      this.stopError = new GatewayError('signed_out', sessionEndedMessage(reason));
    }
    for (const [id, p] of this.pending) {
      if (!p.sent) continue;
      this.pending.delete(id);
      this.clearTimer(p.timer);
      p.reject(new GatewayError('disconnected', reason || 'The connection to your agent was lost.'));
    }
    const stop = this.ended || this.manual || !this.reconnect || code === agentAsleep || (this.stopError && noRetryCodes.has(this.stopError.code));
    let retryInMs = null;
    if (stop) {
      const err = this.stopError || new GatewayError('closed', reason || 'The connection is closed.');
      for (const id of this.queue) {
        const p = this.pending.get(id);
        if (!p) continue;
        this.pending.delete(id);
        this.clearTimer(p.timer);
        p.reject(err);
      }
      this.queue = [];
    } else {
      retryInMs = backoffDelay(this.attempt, this.random);
      this.attempt++;
      this.retryTimer = this.setTimer(() => {
        this.retryTimer = 0;
        this.connect();
      }, retryInMs);
    }
    this.status({ state: 'closed', code, reason, retryInMs, error: this.stopError, wasOpen, manual: this.manual });
  }

  flush() {
    const ids = this.queue;
    this.queue = [];
    for (const id of ids) {
      const p = this.pending.get(id);
      if (p && !p.sent) this.send(id, p);
    }
  }

  send(id, p) {
    if (this.sendRaw(this.ws, p.text)) p.sent = true;
    else this.queue.push(id);
  }

  /**
   * request sends method with params and resolves to the response payload,
   * or rejects with a GatewayError. A closed client reconnects for it,
   * unless its session ended (code "signed_out").
   */
  request(method, params = {}, { timeoutMs = this.requestTimeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      if (this.ended) {
        reject(this.stopError);
        return;
      }
      const id = this.newId();
      const p = { resolve, reject, text: reqFrame(id, method, params), sent: false, timer: 0 };
      p.timer = this.setTimer(() => {
        if (!this.pending.has(id)) return;
        this.pending.delete(id);
        this.queue = this.queue.filter((q) => q !== id);
        reject(new GatewayError('timeout', 'Your agent did not answer in time.'));
      }, timeoutMs);
      this.pending.set(id, p);
      if (this.state === 'open') {
        this.send(id, p);
        return;
      }
      this.queue.push(id);
      if (this.state === 'idle' || (this.state === 'closed' && !this.retryTimer)) this.connect();
    });
  }

  /** reconnectNow skips the backoff wait (e.g. after the user clicks Reconnect or the vault was unlocked). */
  reconnectNow() {
    if (this.state === 'open' || this.state === 'connecting') return;
    this.attempt = 0;
    this.connect();
  }

  /** close closes the socket for good (until connect or a request); queued and in-flight requests reject. */
  close() {
    this.manual = true;
    if (this.retryTimer) this.clearTimer(this.retryTimer);
    this.retryTimer = 0;
    const ws = this.ws;
    if (ws) this.drop(ws, 1000, 'closed');
    else this.state = 'closed';
  }
}
