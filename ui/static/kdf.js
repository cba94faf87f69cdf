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
 * deriveKey resolves to the base64 derived key for password under params
 * ({salt, kdf}). It first checks params with checkKDFParams (the floor and
 * ceiling of package crypto) and rejects, without starting Argon2id, when
 * they are out of range or the salt is not random-looking. It rejects with
 * a readable Error when the browser cannot run the worker or the
 * derivation fails.
 */
export function deriveKey(password, params) {
  return new Promise((resolve, reject) => {
    let cfg;
    let worker;
    let checked;
    try {
      checked = checkKDFParams(params);
      cfg = config();
      if (typeof Worker !== 'function' || typeof WebAssembly !== 'object') throw new Error('This browser cannot derive the key (no Web Workers or WebAssembly).');
      worker = new Worker(scriptURL(cfg.worker), { type: 'module', name: 'ocmt-kdf' });
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
    const timer = setTimeout(() => finish(reject, new Error('Deriving the key took too long. Try again.')), timeoutMs);
    worker.onmessage = (e) => {
      const m = e.data || {};
      if (m.ok && typeof m.key === 'string') finish(resolve, m.key);
      else if (/Content Security Policy|wasm-unsafe-eval/i.test(m.error || '')) finish(reject, new Error('This server\'s security policy blocks WebAssembly, so the key cannot be derived. Ask the administrator to allow \'wasm-unsafe-eval\'.'));
      else finish(reject, new Error(`Could not derive the key: ${m.error || 'unknown error'}.`));
    };
    worker.onerror = (e) => {
      if (e && typeof e.preventDefault === 'function') e.preventDefault();
      finish(reject, new Error(`Could not start key derivation${e && e.message ? `: ${e.message}` : ''}.`));
    };
    worker.onmessageerror = () => finish(reject, new Error('Could not derive the key.'));
    // NFC, so the same password typed on different systems gives the same key.
    worker.postMessage({ password: String(password).normalize('NFC'), salt: checked.salt, kdf: checked.kdf, wasm: cfg.wasm, wasmExec: cfg.wasmExec });
  });
}
