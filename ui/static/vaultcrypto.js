// vaultcrypto.js — the browser's small share of the vault crypto: base64,
// random salts and the unlock proof HMAC-SHA256(key = derived key, msg =
// challenge) (SPEC §5.1). The key derivation itself (Argon2id) runs in
// WebAssembly in a worker (kdf.js). WebCrypto is used when present; it only
// exists in secure contexts (https or localhost), so a plain-JS SHA-256
// backs it up for a server reached over http on a LAN. No DOM.

import { kdfLimits } from './kdflimits.js';

/** b64encode returns the standard base64 of bytes. */
export function b64encode(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

/** b64decode decodes standard (or URL-safe, unpadded) base64; it throws on invalid input. */
export function b64decode(str) {
  let s = String(str ?? '').trim().replace(/-/g, '+').replace(/_/g, '/');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new Error('invalid base64');
  while (s.length % 4) s += '=';
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** randomBytes returns n bytes from crypto.getRandomValues. */
export function randomBytes(n, cryptoObj = globalThis.crypto) {
  const b = new Uint8Array(n);
  cryptoObj.getRandomValues(b);
  return b;
}

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** sha256 is a plain-JS SHA-256 (used only when WebCrypto is missing). */
export function sha256(data) {
  const msg = data instanceof Uint8Array ? data : new Uint8Array(data);
  const len = msg.length;
  const total = ((len + 9 + 63) >> 6) << 6;
  const buf = new Uint8Array(total);
  buf.set(msg);
  buf[len] = 0x80;
  const dv = new DataView(buf.buffer);
  dv.setUint32(total - 8, Math.floor(len / 0x20000000));
  dv.setUint32(total - 4, (len << 3) >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < total; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]);
  return out;
}

function hmacFallback(key, msg) {
  let k = key.length > 64 ? sha256(key) : key;
  const block = new Uint8Array(64);
  block.set(k);
  k = block;
  const ipad = new Uint8Array(64 + msg.length);
  const opad = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    ipad[i] = k[i] ^ 0x36;
    opad[i] = k[i] ^ 0x5c;
  }
  ipad.set(msg, 64);
  opad.set(sha256(ipad), 64);
  return sha256(opad);
}

/**
 * hmacSHA256 returns HMAC-SHA256(key, msg) as bytes, with WebCrypto when
 * available (pass subtle = null to force the fallback).
 */
export async function hmacSHA256(key, msg, subtle = globalThis.crypto && globalThis.crypto.subtle) {
  const k = key instanceof Uint8Array ? key : new Uint8Array(key);
  const m = msg instanceof Uint8Array ? msg : new Uint8Array(msg);
  if (subtle) {
    const ck = await subtle.importKey('raw', k, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return new Uint8Array(await subtle.sign('HMAC', ck, m));
  }
  return hmacFallback(k, m);
}

/** unlockProof returns base64(HMAC-SHA256(key = derived key, msg = challenge)) for base64 inputs. */
export async function unlockProof(derivedKeyB64, challengeB64, subtle = globalThis.crypto && globalThis.crypto.subtle) {
  const key = b64decode(derivedKeyB64);
  const challenge = b64decode(challengeB64);
  try {
    return b64encode(await hmacSHA256(key, challenge, subtle));
  } finally {
    key.fill(0);
  }
}

/**
 * saltIsDegenerate is crypto.CheckSalt's shape rule: fewer than len/4
 * distinct byte values (all zero, "abab…") or a constant step between
 * neighbouring bytes (00 01 02 …) cannot come from a random source.
 */
export function saltIsDegenerate(salt) {
  const seen = new Set(salt);
  let constStep = true;
  for (let i = 2; i < salt.length; i++) {
    if (((salt[i] - salt[i - 1]) & 0xff) !== ((salt[1] - salt[0]) & 0xff)) constStep = false;
  }
  return seen.size < Math.floor(salt.length / 4) || constStep;
}

/**
 * checkKDFParams validates KDF parameters and a salt ({salt, kdf}, as GET
 * /params sends them) against the floor and ceiling of package crypto
 * (kdfLimits, generated from Go) and returns {salt, kdf}; it throws a
 * readable Error otherwise. deriveKey (kdf.js) calls it before it starts
 * Argon2id, so a tampered params file or vault header cannot make the
 * browser send a key that is cheap to brute-force.
 */
export function checkKDFParams(p) {
  const kdf = p && p.kdf;
  if (!p || typeof p.salt !== 'string' || !kdf || typeof kdf !== 'object') throw new Error('The vault sent no key derivation parameters.');
  if (kdf.alg !== kdfLimits.alg) throw new Error(`Unsupported key derivation "${String(kdf.alg)}".`);
  const int = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;
  const L = kdfLimits;
  if (!int(kdf.memoryKiB, 0, L.maxMemoryKiB) || !int(kdf.iterations, 0, L.maxIterations) || !int(kdf.parallelism, L.minParallelism, L.maxParallelism)) {
    throw new Error('The vault sent key derivation parameters out of range.');
  }
  if (kdf.memoryKiB < L.minMemoryKiB || kdf.iterations < L.minIterations) {
    throw new Error(`The vault asked for key derivation parameters weaker than allowed (at least ${L.minMemoryKiB / 1024} MiB and ${L.minIterations} passes); refusing to derive the key.`);
  }
  let salt;
  try {
    salt = b64decode(p.salt);
  } catch {
    throw new Error('The vault sent an invalid salt.');
  }
  if (salt.length < L.minSaltBytes || salt.length > L.maxSaltBytes) throw new Error('The vault sent a salt of the wrong size.');
  if (saltIsDegenerate(salt)) throw new Error('The vault sent a salt that is not random.');
  return { salt: p.salt, kdf: { alg: L.alg, memoryKiB: kdf.memoryKiB, iterations: kdf.iterations, parallelism: kdf.parallelism } };
}
