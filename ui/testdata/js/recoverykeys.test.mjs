import assert from 'node:assert/strict';
import { test } from 'node:test';

import { b64decode } from '../../static/vaultcrypto.js';

// A page stand-in: #kdf-config and a Worker that records each message and
// answers like kdf-worker.js would.
const sent = [];
let answer = (m) => ({ ok: true, key: `result of ${m.op}` });
globalThis.location = new URL('https://ocmt.example/');
globalThis.document = {
  getElementById: (id) => (id === 'kdf-config' ? { dataset: { worker: '/static/kdf-worker.js', wasm: '/static/wasm/kdf.wasm', wasmExec: '/static/wasm/wasm_exec.js' } } : null),
};
globalThis.Worker = class {
  postMessage(m) {
    sent.push(m);
    setTimeout(() => this.onmessage({ data: answer(m) }), 0);
  }
  terminate() {}
};

const keys = await import('../../static/recoverykeys.js');

test('newPhrase and newBackupKey pass 16 fresh random bytes to the wasm', async () => {
  sent.length = 0;
  assert.equal(await keys.newPhrase(), 'result of newPhrase');
  assert.equal(await keys.newBackupKey(), 'result of newBackupKey');
  assert.deepEqual(sent.map((m) => m.op), ['newPhrase', 'newBackupKey']);
  const [a, b] = sent.map((m) => b64decode(m.arg));
  assert.equal(a.length, 16);
  assert.equal(b.length, 16);
  assert.notDeepEqual(a, b);
  assert.equal(sent[0].wasm, '/static/wasm/kdf.wasm');
});

test('phraseKey and backupKeyKey send the text as typed and reject with the wasm message', async () => {
  sent.length = 0;
  assert.equal(await keys.phraseKey(' Legal winner '), 'result of phraseKey');
  assert.equal(sent[0].arg, ' Legal winner ');
  answer = () => ({ ok: false, error: 'This backup key has a typo: its check does not match.' });
  await assert.rejects(keys.backupKeyKey('abcd'), /has a typo/);
  answer = (m) => ({ ok: true, key: `result of ${m.op}` });
});

// kdf-worker.js dispatches {op, arg} to the wasm globals and refuses
// anything else (no wasm load here: the globals are stubs).
test('the worker calls the recovery function named by op', async () => {
  const posted = [];
  globalThis.self = { location: new URL('https://ocmt.example/static/kdf-worker.js'), postMessage: (m) => posted.push(m) };
  const argonKey = 'A'.repeat(43) + '=';
  globalThis.ocmtDeriveKey = async () => argonKey;
  globalThis.ocmtPhraseKey = async (m) => `phrase:${m}`;
  globalThis.ocmtBackupKeyKey = async () => { throw new Error('A backup key has no letter U.'); };
  await import('../../static/kdf-worker.js');
  const run = async (data) => {
    posted.length = 0;
    await globalThis.self.onmessage({ data });
    return posted[0];
  };
  assert.deepEqual(await run({ op: 'phraseKey', arg: 'zoo' }), { ok: true, key: 'phrase:zoo' });
  assert.deepEqual(await run({ op: 'backupKeyKey', arg: 'U' }), { ok: false, error: 'A backup key has no letter U.' });
  assert.equal((await run({ op: 'constructor', arg: '' })).ok, false);
  assert.equal((await run({ op: 'toString', arg: '' })).ok, false);
  // A message without op still derives the password key.
  assert.deepEqual(await run({ password: 'pw', salt: 's', kdf: {} }), { ok: true, key: argonKey });
});
