import assert from 'node:assert/strict';
import { test } from 'node:test';

import { APIError, request, sentence } from '../../static/api.js';

// answer makes fetch resolve to one HTTP answer.
function answer(status, body) {
  globalThis.fetch = async () => new Response(typeof body === 'string' ? body : JSON.stringify(body), { status });
}

test('server messages are shown as sentences (capital first letter)', async () => {
  answer(404, { error: { code: 'not_found', message: 'no such share' } });
  await assert.rejects(request('GET', '/api/v1/x'), (err) => err instanceof APIError && err.status === 404 && err.message === 'No such share');
  assert.equal(sentence('already Fine'), 'Already Fine');
  assert.equal(sentence(''), '');
});

test('a network failure is status 0 with a message saying the server cannot be reached', async () => {
  globalThis.fetch = async () => { throw new TypeError('Failed to fetch'); };
  await assert.rejects(request('GET', '/api/v1/x'), (err) => err.status === 0 && /^Can't reach the server/.test(err.message));
});

test('a 502 without ocmt\'s error body means the server is unreachable', async () => {
  answer(502, '<html>Bad Gateway</html>');
  await assert.rejects(request('GET', '/api/v1/x'), (err) => err.status === 0);
  answer(502, { error: { code: 'agent_unavailable', message: 'your agent did not answer' } });
  await assert.rejects(request('GET', '/api/v1/x'), (err) => err.status === 502 && err.message === 'Your agent did not answer');
});
