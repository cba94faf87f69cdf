// kdf-worker.js — a module Web Worker that derives the vault key with the
// project's Go crypto compiled to WebAssembly (static/wasm/kdf.wasm and
// Go's static/wasm/wasm_exec.js), so the page stays responsive during the
// seconds Argon2id takes. kdf.js starts one worker per derivation and
// terminates it afterwards, which also drops the password and the 64 MiB
// of Argon2 memory.
//
// Message in:  {password, salt, kdf: {memoryKiB, iterations, parallelism}, wasmExec, wasm}
// Message out: {ok: true, key: "<base64>"} or {ok: false, error: "<text>"}
//
// Recovery ways in (recoverykeys.js): a message with op set to one of the
// names in recoveryOps and a string arg calls that wasm function instead
// and answers {ok: true, key: "<its string result>"}.
//
// The wasm module registers ocmtDeriveKey(password, saltB64, memoryKiB,
// iterations, parallelism) on globalThis; it returns the base64 key or a
// Promise of it, and throws on error.

function sameOriginStatic(u) {
  const url = new URL(String(u), self.location.href);
  if (url.origin !== self.location.origin || !url.pathname.startsWith('/static/')) throw new Error('refusing to load code from outside /static/');
  return url.href;
}

async function loadGo(wasmExec, wasm) {
  if (typeof globalThis.ocmtDeriveKey === 'function') return;
  if (typeof globalThis.Go !== 'function') await import(sameOriginStatic(wasmExec)); // wasm_exec.js defines globalThis.Go
  if (typeof globalThis.Go !== 'function') throw new Error('wasm_exec.js did not define Go');
  const go = new globalThis.Go();
  const url = sameOriginStatic(wasm);
  let instance;
  const res = await fetch(url, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`Could not load the key derivation module (HTTP ${res.status})`);
  if (WebAssembly.instantiateStreaming && (res.headers.get('Content-Type') || '').startsWith('application/wasm')) {
    ({ instance } = await WebAssembly.instantiateStreaming(res, go.importObject));
  } else {
    ({ instance } = await WebAssembly.instantiate(await res.arrayBuffer(), go.importObject));
  }
  go.run(instance); // resolves only when the Go program exits; it registers its functions first
  for (let i = 0; i < 200 && typeof globalThis.ocmtDeriveKey !== 'function'; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  if (typeof globalThis.ocmtDeriveKey !== 'function') throw new Error('The key derivation module did not start');
}

const recoveryOps = { newPhrase: 'ocmtNewPhrase', phraseKey: 'ocmtPhraseKey', newBackupKey: 'ocmtNewBackupKey', backupKeyKey: 'ocmtBackupKeyKey' };
// Trusted contacts (social.js): {social: "KeyPair"|"Recover", args: [...]}
// calls ocmtSocial<name>(...args) and answers {ok: true, result: {...}}.
const socialOps = ['KeyPair', 'Recover'];

self.onmessage = async (e) => {
  const m = e.data || {};
  try {
    await loadGo(m.wasmExec, m.wasm);
    if (m.op !== undefined) {
      const fn = Object.hasOwn(recoveryOps, m.op) && globalThis[recoveryOps[m.op]];
      if (typeof fn !== 'function') throw new Error(`unknown operation ${String(m.op)}`);
      self.postMessage({ ok: true, key: String(await fn(String(m.arg))) });
      return;
    }
    if (m.social !== undefined) {
      const fn = socialOps.includes(m.social) && globalThis[`ocmtSocial${m.social}`];
      if (typeof fn !== 'function') throw new Error(`unknown operation ${String(m.social)}`);
      self.postMessage({ ok: true, result: fn(...(Array.isArray(m.args) ? m.args : [])) });
      return;
    }
    const k = m.kdf || {};
    const key = await globalThis.ocmtDeriveKey(String(m.password), String(m.salt), k.memoryKiB, k.iterations, k.parallelism);
    if (typeof key !== 'string' || key.length < 40) throw new Error('The key derivation returned no key');
    self.postMessage({ ok: true, key });
  } catch (err) {
    self.postMessage({ ok: false, error: String((err && err.message) || err || 'key derivation failed') });
  }
};
