// kdf.js — derives the vault key K = Argon2id(password, salt, params) in a
// module worker (kdf-worker.js) running the project's Go crypto as
// WebAssembly (SPEC §5.1, §9). The worker and wasm URLs are content-hashed
// asset URLs that the page template puts on #kdf-config; the worker URL
// passes through the "ocmt" Trusted Types policy.
import { scriptURL } from './trusted.js';
import { checkKDFParams } from './vaultcrypto.js';

const timeoutMs = 180000;

function config() {
  const el = document.getElementById('kdf-config');
  const d = el ? el.dataset : {};
  if (!d.worker || !d.wasm || !d.wasmExec) throw new Error('Key derivation is not available on this page.');
  return { worker: d.worker, wasm: d.wasm, wasmExec: d.wasmExec };
}

/**
 * runInWorker starts a fresh kdf-worker.js named name (the project's Go
 * crypto as WebAssembly), posts message with the wasm URLs added, and
 * resolves to the worker's answer object once it says {ok: true, …}; the
 * worker is terminated either way. It rejects with a readable Error when
 * the browser cannot run the worker, the page's policy blocks
 * WebAssembly, the worker fails to start, after timeoutMs ms, or with the
 * worker's own message (err.fromWorker = true) when it answers
 * {ok: false, error}. Used for the password's Argon2id (deriveKey), the
 * recovery keys (recoverykeys.js) and trusted contacts (social.js).
 */
export function runInWorker(name, message, timeoutMs) {
  return new Promise((resolve, reject) => {
    let cfg;
    let worker;
    try {
      cfg = config();
      if (typeof Worker !== 'function' || typeof WebAssembly !== 'object') throw new Error('This browser cannot run the vault\'s key code (no Web Workers or WebAssembly).');
      worker = new Worker(scriptURL(cfg.worker), { type: 'module', name });
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
      if (m.ok) {
        finish(resolve, m);
        return;
      }
      if (/Content Security Policy|wasm-unsafe-eval/i.test(m.error || '')) {
        finish(reject, new Error('This server\'s security policy blocks WebAssembly, so the key cannot be derived. Ask the administrator to allow \'wasm-unsafe-eval\'.'));
        return;
      }
      const err = new Error(m.error || 'unknown error');
      err.fromWorker = true;
      finish(reject, err);
    };
    worker.onerror = (e) => {
      if (e && typeof e.preventDefault === 'function') e.preventDefault();
      finish(reject, new Error(`Could not start the key code${e && e.message ? `: ${e.message}` : ''}.`));
    };
    worker.onmessageerror = () => finish(reject, new Error('The key code gave an unreadable answer.'));
    worker.postMessage({ ...message, wasm: cfg.wasm, wasmExec: cfg.wasmExec });
  });
}

/**
 * deriveKey resolves to the base64 derived key for password under params
 * ({salt, kdf}). It first checks params with checkKDFParams (the floor and
 * ceiling of package crypto) and rejects, without starting Argon2id, when
 * they are out of range or the salt is not random-looking. It rejects with
 * a readable Error when the browser cannot run the worker or the
 * derivation fails.
 */
export async function deriveKey(password, params) {
  const checked = checkKDFParams(params);
  let m;
  try {
    // NFC, so the same password typed on different systems gives the same key.
    m = await runInWorker('ocmt-kdf', { password: String(password).normalize('NFC'), salt: checked.salt, kdf: checked.kdf }, timeoutMs);
  } catch (err) {
    if (err.fromWorker) throw new Error(`Could not derive the key: ${err.message}.`);
    throw err;
  }
  if (typeof m.key !== 'string') throw new Error('Could not derive the key.');
  return m.key;
}
