// recoverykeys.js — the browser side of the recovery ways in (issue 10):
// make a 12-word recovery phrase or a printable backup key, and turn either
// into the key-encryption key (KEK) that wraps the vault key. The work runs
// in the same module worker and WebAssembly build as the password's
// Argon2id (kdf-worker.js, static/wasm/kdf.wasm: crypto/internal/recovery,
// the Go code the container's tests use), so the phrase and key never leave
// this page; only the derived KEK (base64) goes to the user's container.
// Randomness comes from crypto.getRandomValues and is passed in as entropy.
// No DOM besides reading #kdf-config.
import { runInWorker } from './kdf.js';
import { b64encode, randomBytes } from './vaultcrypto.js';

/** run calls the wasm operation op (see kdf-worker.js) with arg in a fresh worker and resolves to its string result. */
async function run(op, arg) {
  const m = await runInWorker('ocmt-recovery', { op, arg: String(arg) }, 60000);
  if (typeof m.key !== 'string') throw new Error('The key could not be derived.');
  return m.key;
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
