import assert from 'node:assert/strict';
import { createHmac, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { b64decode, b64encode, checkKDFParams, hmacSHA256, randomBytes, saltIsDegenerate, sha256, unlockProof } from '../../static/vaultcrypto.js';
import { staticURL } from '../../static/trusted.js';

test('base64 round trip', () => {
  const b = randomBytes(60000);
  assert.deepEqual(b64decode(b64encode(b)), b);
  assert.equal(b64encode(new Uint8Array([0xfb, 0xff])), '+/8=');
  assert.deepEqual(b64decode('-_8'), new Uint8Array([0xfb, 0xff]));
  assert.throws(() => b64decode('no spaces allowed'));
});

test('sha256 fallback matches node', () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 1000]) {
    const m = randomBytes(n);
    assert.equal(Buffer.from(sha256(m)).toString('hex'), createHash('sha256').update(m).digest('hex'), `len ${n}`);
  }
});

test('HMAC-SHA256 with WebCrypto and with the fallback', async () => {
  for (const klen of [32, 64, 100]) {
    const key = randomBytes(klen);
    const msg = randomBytes(32);
    const want = createHmac('sha256', key).update(msg).digest('hex');
    assert.equal(Buffer.from(await hmacSHA256(key, msg)).toString('hex'), want);
    assert.equal(Buffer.from(await hmacSHA256(key, msg, null)).toString('hex'), want);
  }
});

test('unlock proof = base64(HMAC-SHA256(key = derived key, msg = challenge))', async () => {
  const key = randomBytes(32);
  const challenge = randomBytes(32);
  const want = createHmac('sha256', key).update(challenge).digest('base64');
  assert.equal(await unlockProof(b64encode(key), b64encode(challenge)), want);
  assert.equal(await unlockProof(b64encode(key), b64encode(challenge), null), want);
});

test('KDF params are checked', () => {
  const ok = { salt: b64encode(randomBytes(16)), kdf: { alg: 'argon2id', memoryKiB: 65536, iterations: 3, parallelism: 4 } };
  assert.deepEqual(checkKDFParams(ok), ok);
  for (const bad of [
    null,
    { ...ok, salt: 1 },
    { ...ok, salt: b64encode(randomBytes(4)) },
    { ...ok, salt: '***' },
    { ...ok, kdf: { ...ok.kdf, alg: 'scrypt' } },
    { ...ok, kdf: { ...ok.kdf, memoryKiB: 1024 } },
    { ...ok, kdf: { ...ok.kdf, memoryKiB: 1 << 22 } },
    { ...ok, kdf: { ...ok.kdf, iterations: 0 } },
    { ...ok, kdf: { ...ok.kdf, parallelism: 1.5 } },
    // ocmt issue 8 item 6: a tampered params file offered these.
    { salt: b64encode(new Uint8Array(16)), kdf: { alg: 'argon2id', memoryKiB: 8192, iterations: 1, parallelism: 1 } },
    { ...ok, kdf: { ...ok.kdf, memoryKiB: 8192 } },
    { ...ok, kdf: { ...ok.kdf, iterations: 1 } },
    { ...ok, salt: b64encode(new Uint8Array(16)) },
    { ...ok, salt: b64encode(randomBytes(8)) },
  ]) {
    assert.throws(() => checkKDFParams(bad), Error, JSON.stringify(bad));
  }
});

// crypto/testdata/kdfparams.json is also run by crypto.TestKDFVectors
// against crypto.KDFParams.Validate and crypto.CheckSalt: both sides give
// the same verdict on every case.
test('KDF params and salts: the same verdicts as package crypto', () => {
  const v = JSON.parse(readFileSync(new URL('../../../crypto/testdata/kdfparams.json', import.meta.url), 'utf8'));
  const salt = b64encode(randomBytes(16));
  assert.ok(v.params.length >= 10 && v.salts.length >= 8);
  for (const c of v.params) {
    let ok = true;
    try {
      checkKDFParams({ salt, kdf: c.kdf });
    } catch {
      ok = false;
    }
    assert.equal(ok, c.valid, `params ${c.name}`);
  }
  const kdf = { alg: 'argon2id', memoryKiB: 65536, iterations: 3, parallelism: 4 };
  for (const c of v.salts) {
    let ok = true;
    try {
      checkKDFParams({ salt: Buffer.from(c.hex, 'hex').toString('base64'), kdf });
    } catch {
      ok = false;
    }
    assert.equal(ok, c.valid, `salt ${c.name}`);
  }
  for (let i = 0; i < 1000; i++) assert.equal(saltIsDegenerate(randomBytes(16)), false);
});

test('the Trusted Types policy only allows same-origin /static/ URLs', () => {
  const base = 'https://ocmt.example/';
  assert.equal(staticURL('/static/kdf-worker.1234abcd.js', base), 'https://ocmt.example/static/kdf-worker.1234abcd.js');
  for (const bad of ['https://evil.example/static/x.js', '/api/v1/x', '/static/../api/x', 'data:text/javascript,1',
    'javascript:alert(1)', '/static/x.js?y=1', '//evil.example/static/x.js', 'blob:https://ocmt.example/uuid']) {
    assert.equal(staticURL(bad, base), '', bad);
  }
});
