// recoverykeys.js — the browser side of the recovery ways in (issue 10):
// make a 12-word recovery phrase or a printable backup key, and turn either
// into the key-encryption key (KEK) that wraps the vault key. The work runs
// in the same module worker and WebAssembly build as the password's
// Argon2id (kdf-worker.js, static/wasm/kdf.wasm: crypto/internal/recovery,
// the Go code the container's tests use), so the phrase and key never leave
// this page; only the derived KEK (base64) goes to the user's container.
// Randomness comes from crypto.getRandomValues and is passed in as entropy.
// No DOM besides reading #kdf-config.
import { scriptURL } from './trusted.js';
import { b64encode, randomBytes } from './vaultcrypto.js';

const timeoutMs = 60000;

function config() {
  const el = document.getElementById('kdf-config');
  const d = el ? el.dataset : {};
  if (!d.worker || !d.wasm || !d.wasmExec) throw new Error('Key derivation is not available on this page.');
  return { worker: d.worker, wasm: d.wasm, wasmExec: d.wasmExec };
}

/** run calls the wasm operation op (see kdf-worker.js) with arg in a fresh worker and resolves to its string result. */
function run(op, arg) {
  return new Promise((resolve, reject) => {
    let worker;
    let cfg;
    try {
      cfg = config();
      if (typeof Worker !== 'function' || typeof WebAssembly !== 'object') throw new Error('This browser cannot run the vault\'s key code (no Web Workers or WebAssembly).');
      worker = new Worker(scriptURL(cfg.worker), { type: 'module', name: 'ocmt-recovery' });
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    let done = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      worker.terminate();
      fn(v);
    };
    const timer = setTimeout(() => finish(reject, new Error('This took too long. Try again.')), timeoutMs);
    worker.onmessage = (e) => {
      const m = e.data || {};
      if (m.ok && typeof m.key === 'string') finish(resolve, m.key);
      else finish(reject, new Error(m.error || 'The key could not be derived.'));
    };
    worker.onerror = (e) => {
      if (e && typeof e.preventDefault === 'function') e.preventDefault();
      finish(reject, new Error(`Could not start the key code${e && e.message ? `: ${e.message}` : ''}.`));
    };
    worker.postMessage({ op, arg: String(arg), wasm: cfg.wasm, wasmExec: cfg.wasmExec });
  });
}

/** newPhrase resolves to a fresh 12-word BIP39 English phrase (128 bits from crypto.getRandomValues). */
export function newPhrase() {
  const e = randomBytes(16);
  try {
    return run('newPhrase', b64encode(e));
  } finally {
    e.fill(0);
  }
}

/** phraseKey resolves to the base64 KEK of a phrase as typed (case and spacing do not matter); it rejects with a readable message for a wrong word or checksum. */
export function phraseKey(phrase) {
  return run('phraseKey', String(phrase));
}

/** newBackupKey resolves to a fresh backup key "XXXX-XXXX-…" (8 groups of Crockford base32, 128 bits + a check). */
export function newBackupKey() {
  const e = randomBytes(16);
  try {
    return run('newBackupKey', b64encode(e));
  } finally {
    e.fill(0);
  }
}

/** backupKeyKey resolves to the base64 KEK of a backup key as typed (case, spaces, dashes, I/L/O look-alikes tolerated); it rejects for a typo. */
export function backupKeyKey(text) {
  return run('backupKeyKey', String(text));
}
