import assert from 'node:assert/strict';
import { test } from 'node:test';

import { b64encode, randomBytes } from '../../static/vaultcrypto.js';

// A page stand-in: #kdf-config with the asset URLs, and a Worker that
// records that it was started and answers with a fixed key.
let started = 0;
globalThis.location = new URL('https://ocmt.example/');
globalThis.document = {
  getElementById: (id) => (id === 'kdf-config' ? { dataset: { worker: '/static/kdf-worker.js', wasm: '/static/wasm/kdf.wasm', wasmExec: '/static/wasm/wasm_exec.js' } } : null),
};
globalThis.Worker = class {
  constructor() {
    started++;
  }
  postMessage() {
    setTimeout(() => this.onmessage({ data: { ok: true, key: b64encode(new Uint8Array(32).fill(7)) } }), 0);
  }
  terminate() {}
};

const { deriveKey } = await import('../../static/kdf.js');

// ocmt issue 8 item 6: the browser refuses out-of-range parameters and
// degenerate salts before it runs Argon2id (no worker is started).
test('deriveKey refuses weak or out-of-range parameters before starting Argon2id', async () => {
  const good = { salt: b64encode(randomBytes(16)), kdf: { alg: 'argon2id', memoryKiB: 65536, iterations: 3, parallelism: 4 } };
  for (const bad of [
    { salt: b64encode(new Uint8Array(16)), kdf: { alg: 'argon2id', memoryKiB: 8192, iterations: 1, parallelism: 1 } },
    { ...good, kdf: { ...good.kdf, memoryKiB: 8192 } },
    { ...good, kdf: { ...good.kdf, iterations: 1 } },
    { ...good, kdf: { ...good.kdf, memoryKiB: 4 * 1024 * 1024 } },
    { ...good, kdf: { ...good.kdf, iterations: 1000 } },
    { ...good, salt: b64encode(new Uint8Array(16)) },
    { ...good, salt: b64encode(Uint8Array.from({ length: 16 }, (_, i) => i)) },
    { ...good, salt: b64encode(randomBytes(8)) },
    { ...good, kdf: undefined },
  ]) {
    await assert.rejects(deriveKey('correct horse battery staple', bad), Error, JSON.stringify(bad));
  }
  assert.equal(started, 0, 'a worker was started for refused parameters');
  assert.equal(await deriveKey('correct horse battery staple', good), b64encode(new Uint8Array(32).fill(7)));
  assert.equal(started, 1);
});
