import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CLOSE_SESSION_ENDED, GatewayClient, GatewayError } from '../../static/gateway.js';

// FakeSocket records what the client sends; the test plays the server.
class FakeSocket {
  static all = [];

  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = null;
    FakeSocket.all.push(this);
  }

  send(text) {
    if (this.closed) throw new Error('closed');
    this.sent.push(JSON.parse(text));
  }

  close(code, reason) {
    this.closed = { code, reason };
  }

  open() { this.onopen(); }

  frame(obj) { this.onmessage({ data: JSON.stringify(obj) }); }

  serverClose(code, reason) { this.onclose({ code, reason }); }

  last() { return this.sent[this.sent.length - 1]; }
}

// FakeTimers runs timers by hand.
function fakeTimers() {
  let id = 0;
  const timers = new Map();
  return {
    setTimeout: (fn, ms) => { timers.set(++id, { fn, ms }); return id; },
    clearTimeout: (t) => { timers.delete(t); },
    pending: () => [...timers.values()].map((t) => t.ms),
    fire(ms) {
      for (const [k, t] of [...timers]) {
        if (t.ms === ms) { timers.delete(k); t.fn(); }
      }
    },
  };
}

function setup(opts = {}) {
  FakeSocket.all = [];
  const timers = fakeTimers();
  const events = [];
  const statuses = [];
  let n = 0;
  const c = new GatewayClient('ws://h/api/v1/me/agent/chat', {
    WebSocket: FakeSocket,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    random: () => 0.5,
    newId: () => `id${++n}`,
    onEvent: (name, payload) => events.push([name, payload]),
    onStatus: (s) => statuses.push(s),
    ...opts,
  });
  return { c, timers, events, statuses, ws: () => FakeSocket.all[FakeSocket.all.length - 1] };
}

function handshake(ws) {
  ws.open();
  ws.frame({ type: 'event', event: 'connect.challenge', payload: { nonce: 'n', ts: 1 }, seq: 1 });
  const req = ws.last();
  ws.frame({ type: 'res', id: req.id, ok: true, payload: { type: 'hello-ok', protocol: 3, policy: { tickIntervalMs: 15000 } } });
  return req;
}

const tick = () => new Promise((r) => setImmediate(r));

test('handshake: connect is the first request, after the challenge', () => {
  const { c, ws, statuses } = setup();
  c.connect();
  assert.equal(ws().url, 'ws://h/api/v1/me/agent/chat');
  ws().open();
  assert.equal(ws().sent.length, 0, 'waits for connect.challenge');
  ws().frame({ type: 'event', event: 'connect.challenge', payload: { nonce: 'n' }, seq: 1 });
  const req = ws().sent[0];
  assert.equal(req.type, 'req');
  assert.equal(req.method, 'connect');
  assert.equal(req.params.minProtocol, 3);
  assert.equal(req.params.client.id, 'ocmt-web');
  assert.deepEqual(req.params.scopes, ['operator.read', 'operator.write']);
  ws().frame({ type: 'res', id: req.id, ok: true, payload: { type: 'hello-ok', protocol: 3 } });
  assert.equal(c.state, 'open');
  assert.deepEqual(statuses.map((s) => s.state), ['connecting', 'open']);
});

test('connect goes out anyway when the server stays silent', () => {
  const { c, ws, timers } = setup({ challengeWaitMs: 123 });
  c.connect();
  ws().open();
  timers.fire(123);
  assert.equal(ws().sent[0].method, 'connect');
});

test('requests queue until the handshake, then resolve by id', async () => {
  const { c, ws } = setup();
  const p = c.request('sessions.list', {});
  assert.equal(FakeSocket.all.length, 1, 'a request connects');
  handshake(ws());
  const req = ws().last();
  assert.equal(req.method, 'sessions.list');
  ws().frame({ type: 'res', id: 'unknown', ok: true, payload: {} });
  ws().frame({ type: 'res', id: req.id, ok: true, payload: { sessions: [{ key: 'a' }] } });
  assert.deepEqual(await p, { sessions: [{ key: 'a' }] });
});

test('error responses reject with the server code', async () => {
  const { c, ws } = setup();
  c.connect();
  handshake(ws());
  const p = c.request('chat.send', { sessionKey: 'k', message: 'hi', idempotencyKey: 'u' });
  const req = ws().last();
  assert.deepEqual(req.params, { sessionKey: 'k', message: 'hi', idempotencyKey: 'u' });
  ws().frame({ type: 'res', id: req.id, ok: false, error: { code: 'vault_locked', message: 'Locked', unlockUrl: '/#unlock' } });
  await assert.rejects(p, (err) => err instanceof GatewayError && err.code === 'vault_locked' && err.unlockUrl === '/#unlock');
});

test('events reach onEvent; tick and challenge do not', () => {
  const { c, ws, events } = setup();
  c.connect();
  handshake(ws());
  ws().frame({ type: 'event', event: 'tick', payload: {}, seq: 2 });
  ws().frame({ type: 'event', event: 'chat', payload: { runId: 'r', state: 'delta' }, seq: 3 });
  ws().onmessage({ data: 'garbage' });
  assert.deepEqual(events, [['chat', { runId: 'r', state: 'delta' }]]);
});

test('a dropped socket rejects in-flight requests and reconnects with backoff', async () => {
  const { c, ws, timers, statuses } = setup();
  c.connect();
  handshake(ws());
  const p = c.request('chat.history', { sessionKey: 'k', limit: 200 });
  const first = ws();
  first.serverClose(1012, 'server restarting');
  await assert.rejects(p, (err) => err.code === 'disconnected' && /restarting/.test(err.message));
  const st = statuses[statuses.length - 1];
  assert.equal(st.state, 'closed');
  assert.equal(st.reason, 'server restarting');
  assert.equal(st.retryInMs, 1000);
  timers.fire(1000);
  assert.equal(FakeSocket.all.length, 2);
  // A second drop before the handshake waits longer.
  ws().serverClose(1006, '');
  assert.equal(statuses[statuses.length - 1].retryInMs, 2000);
  timers.fire(2000);
  handshake(ws());
  assert.equal(c.state, 'open');
  assert.equal(c.attempt, 0, 'backoff resets after a handshake');
});

test('a refused connect (vault_locked) does not retry by itself', async () => {
  const { c, ws, statuses, timers } = setup();
  const p = c.request('sessions.list', {});
  ws().open();
  ws().frame({ type: 'event', event: 'connect.challenge', payload: {} });
  const req = ws().last();
  ws().frame({ type: 'res', id: req.id, ok: false, error: { code: 'vault_locked', message: 'Your vault is locked.' } });
  await assert.rejects(p, (err) => err.code === 'vault_locked');
  const st = statuses[statuses.length - 1];
  assert.equal(st.state, 'closed');
  assert.equal(st.error.code, 'vault_locked');
  assert.equal(st.retryInMs, null);
  assert.ok(ws().closed);
  assert.ok(!timers.pending().includes(1000));
  // After an unlock the page reconnects.
  c.reconnectNow();
  assert.equal(FakeSocket.all.length, 2);
});

test('requests time out', async () => {
  const { c, ws, timers } = setup({ requestTimeoutMs: 50 });
  c.connect();
  handshake(ws());
  const p = c.request('chat.abort', { sessionKey: 'k', runId: 'r' });
  timers.fire(50);
  await assert.rejects(p, (err) => err.code === 'timeout');
});

test('a silent server trips the keep-alive watchdog', async () => {
  const { c, ws, timers, statuses } = setup();
  c.connect();
  handshake(ws());
  assert.ok(timers.pending().includes(37500), 'watchdog at 2.5 × tickIntervalMs');
  timers.fire(37500);
  assert.equal(c.state, 'closed');
  assert.ok(ws().closed);
  assert.match(statuses[statuses.length - 1].reason, /stopped responding/);
  await tick();
});

test('close() is final until the next request', async () => {
  const { c, ws, statuses } = setup();
  c.connect();
  handshake(ws());
  c.close();
  assert.equal(c.state, 'closed');
  assert.equal(statuses[statuses.length - 1].retryInMs, null);
  const p = c.request('sessions.list', {});
  assert.equal(FakeSocket.all.length, 2, 'a request reopens');
  handshake(ws());
  const req = ws().last();
  ws().frame({ type: 'res', id: req.id, ok: true, payload: { sessions: [] } });
  assert.deepEqual(await p, { sessions: [] });
});

test('a session that ended (close code 4401) is final: no reconnect, requests reject at once', async () => {
  const { c, ws, timers, statuses } = setup();
  c.connect();
  handshake(ws());
  const p = c.request('chat.history', { sessionKey: 'k', limit: 200 });
  ws().serverClose(4401, 'signed out');
  await assert.rejects(p, (err) => err.code === 'disconnected');
  const st = statuses[statuses.length - 1];
  assert.equal(st.state, 'closed');
  assert.equal(st.code, 4401);
  assert.equal(st.retryInMs, null, 'no reconnect is scheduled');
  assert.equal(st.error.code, 'signed_out');
  assert.match(st.error.message, /signed out/i);
  assert.equal(timers.pending().filter((ms) => ms >= 1000 && ms <= 30000 && ms !== 30000).length, 0);
  // Neither a request, nor reconnectNow, nor connect opens a new socket.
  await assert.rejects(c.request('chat.send', { sessionKey: 'k', message: 'hi' }), (err) => err.code === 'signed_out');
  c.reconnectNow();
  c.connect();
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(c.state, 'closed');
});

test('an expired session (4401 "session expired") says so', () => {
  const { c, ws, statuses } = setup();
  c.connect();
  handshake(ws());
  ws().serverClose(4401, 'session expired');
  const st = statuses[statuses.length - 1];
  assert.equal(st.error.code, 'signed_out');
  assert.match(st.error.message, /expired/);
  assert.equal(st.retryInMs, null);
});

test('CLOSE_SESSION_ENDED is the documented code', () => {
  assert.equal(CLOSE_SESSION_ENDED, 4401);
});

test('a socket closed because the agent sleeps (4100) is not redialed; the next request reconnects', async () => {
  const { c, ws, timers, statuses } = setup();
  c.connect();
  handshake(ws());
  ws().serverClose(4100, 'your agent is asleep; it wakes when you send a message');
  const st = statuses[statuses.length - 1];
  assert.equal(st.state, 'closed');
  assert.equal(st.retryInMs, null);
  assert.match(st.reason, /asleep/);
  assert.ok(!timers.pending().includes(1000), 'no redial timer');
  assert.equal(FakeSocket.all.length, 1);
  c.request('sessions.list', {});
  assert.equal(FakeSocket.all.length, 2, 'a request reopens');
});
