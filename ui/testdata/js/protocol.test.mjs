import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  backoffDelay, chatEvent, chatURL, client, connectParams, frameError, historyMessages, messageText,
  newSessionKey, parseFrame, reqFrame, sessionList, uuid,
} from '../../static/protocol.js';

test('connect params are the v3 operator handshake', () => {
  assert.deepEqual(JSON.parse(reqFrame('id1', 'connect', connectParams())), {
    type: 'req',
    id: 'id1',
    method: 'connect',
    params: {
      minProtocol: 3,
      maxProtocol: 3,
      client: { id: 'ocmt-web', version: '1', platform: 'web', mode: 'webchat' },
      role: 'operator',
      scopes: ['operator.read', 'operator.write'],
    },
  });
  assert.ok(Object.isFrozen(client));
});

test('reqFrame', () => {
  assert.deepEqual(JSON.parse(reqFrame(7, 'chat.send', { sessionKey: 'k', message: 'hi', idempotencyKey: 'u' })),
    { type: 'req', id: '7', method: 'chat.send', params: { sessionKey: 'k', message: 'hi', idempotencyKey: 'u' } });
  assert.deepEqual(JSON.parse(reqFrame('x', 'sessions.list')).params, {});
});

test('parseFrame accepts the three frame types and nothing else', () => {
  assert.equal(parseFrame('{"type":"res","id":"1","ok":true,"payload":{}}').id, '1');
  assert.equal(parseFrame('{"type":"event","event":"tick","payload":{},"seq":3}').event, 'tick');
  assert.equal(parseFrame('{"type":"req","id":"1","method":"x"}').method, 'x');
  for (const bad of ['', 'nope', '[]', 'null', '{"type":"res","id":1,"ok":true}', '{"type":"res","id":"1"}', '{"type":"event"}', '{"type":"other"}', 42]) {
    assert.equal(parseFrame(bad), null, String(bad));
  }
});

test('frameError', () => {
  assert.deepEqual(frameError({ ok: false, error: { code: 'vault_locked', message: 'locked', unlockUrl: '/u' } }),
    { code: 'vault_locked', message: 'locked', unlockUrl: '/u' });
  assert.deepEqual(frameError({ ok: false }), { code: 'error', message: 'The request failed.' });
});

test('messageText joins text parts', () => {
  assert.equal(messageText({ role: 'assistant', content: [{ type: 'text', text: 'a' }, { type: 'image' }, { type: 'text', text: 'b' }] }), 'ab');
  assert.equal(messageText({ content: 'plain' }), 'plain');
  assert.equal(messageText('s'), 's');
  assert.equal(messageText(null), '');
});

test('chatEvent normalizes chat payloads', () => {
  assert.deepEqual(chatEvent({ runId: 'r', sessionKey: 'k', seq: 2, state: 'delta', message: { role: 'assistant', content: [{ type: 'text', text: 'Hel' }] } }),
    { runId: 'r', sessionKey: 'k', seq: 2, state: 'delta', text: 'Hel', errorMessage: '' });
  assert.equal(chatEvent({ runId: 'r', state: 'error', errorMessage: 'bad key' }).errorMessage, 'bad key');
  assert.equal(chatEvent({ state: 'weird' }), null);
  assert.equal(chatEvent(null), null);
});

test('history and sessions', () => {
  assert.deepEqual(historyMessages({ messages: [
    { role: 'user', content: [{ type: 'text', text: 'hi' }], timestamp: 5 },
    { role: 'tool', content: [] },
    { role: 'assistant', content: [{ type: 'text', text: 'yo' }] },
  ] }), [{ role: 'user', text: 'hi', timestamp: 5 }, { role: 'assistant', text: 'yo', timestamp: 0 }]);
  assert.deepEqual(sessionList({ sessions: [{ key: 'a', title: 'A', updatedAt: 1, messageCount: 2 }, { key: 'b', updatedAt: 9 }, { title: 'no key' }] }),
    [{ key: 'b', title: '', updatedAt: 9, messageCount: 0 }, { key: 'a', title: 'A', updatedAt: 1, messageCount: 2 }]);
  assert.deepEqual(sessionList(undefined), []);
});

test('ids', () => {
  assert.match(uuid(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(uuid(), uuid());
  assert.match(newSessionKey(), /^web-[0-9a-f]{12}$/);
});

test('backoff doubles to 30 s with jitter', () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 20].map((n) => backoffDelay(n, mid)), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  assert.equal(backoffDelay(0, () => 0), 800);
  assert.equal(backoffDelay(0, () => 1), 1200);
});

test('chatURL follows the page scheme', () => {
  assert.equal(chatURL({ protocol: 'https:', host: 'ocmt.example:8443' }), 'wss://ocmt.example:8443/api/v1/me/agent/chat');
  assert.equal(chatURL({ protocol: 'http:', host: 'localhost:8080' }), 'ws://localhost:8080/api/v1/me/agent/chat');
});
