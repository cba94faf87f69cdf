// passkey.js — unlock the vault with a passkey (WebAuthn + the PRF
// extension; issue 10 item 4, roles/vault/passkey.go).
//
// Adding one (vault unlocked): POST /passkeys/register/begin {name} →
// navigator.credentials.create() asking the authenticator for its PRF
// output on the vault's salt (prf.eval.first; if the authenticator gives
// no output at creation, a get() right after asks again) → KEK =
// HKDF-SHA256(PRF output, no salt, "ocmt/v1/kek/passkey") with WebCrypto →
// POST /passkeys/register/finish {ceremonyId, credential, derivedKey: KEK}.
// Unlocking: POST /passkeys/unlock/begin → get() → KEK → POST
// /passkeys/unlock/finish. The PRF output never leaves this page (the
// credential JSON sent has empty clientExtensionResults); only the KEK
// goes, to the user's own container, like the key derived from the
// password. Browsers or authenticators without PRF get a clear message
// and keep the password.
import { APIError, request } from './api.js';
import { $, busy, h, status, timeEl } from './dom.js';
import * as recovery from './recovery.js';
import * as vault from './vault.js';

const kekInfo = 'ocmt/v1/kek/passkey';
const enc = new TextEncoder();

// ---- encoding ----

function b64urlToBytes(s) {
  if (typeof s !== 'string') throw new APIError(502, 'bad_options', 'The vault sent invalid passkey options.');
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesToB64(buf, url) {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  let bin = '';
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  const b64 = btoa(bin);
  return url ? b64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') : b64;
}

const b64url = (buf) => bytesToB64(buf, true);

// prfInput turns the options' prf extension (base64url salts) into bytes.
function prfInput(ext) {
  const ev = ext && ext.prf && ext.prf.eval;
  if (!ev || typeof ev.first !== 'string') throw new APIError(502, 'bad_options', 'The vault sent passkey options without a PRF salt.');
  const out = { first: b64urlToBytes(ev.first) };
  if (typeof ev.second === 'string') out.second = b64urlToBytes(ev.second);
  return { prf: { eval: out } };
}

function descriptors(list) {
  return (Array.isArray(list) ? list : []).map((d) => ({ type: 'public-key', id: b64urlToBytes(d.id), transports: Array.isArray(d.transports) ? d.transports : undefined }));
}

function creationOptions(o) {
  return {
    rp: o.rp,
    user: { ...o.user, id: b64urlToBytes(o.user.id) },
    challenge: b64urlToBytes(o.challenge),
    pubKeyCredParams: o.pubKeyCredParams,
    timeout: o.timeout,
    excludeCredentials: descriptors(o.excludeCredentials),
    authenticatorSelection: o.authenticatorSelection,
    attestation: o.attestation || 'none',
    extensions: prfInput(o.extensions),
  };
}

function requestOptions(o) {
  return {
    challenge: b64urlToBytes(o.challenge),
    rpId: o.rpId,
    timeout: o.timeout,
    allowCredentials: descriptors(o.allowCredentials),
    userVerification: o.userVerification || 'required',
    extensions: prfInput(o.extensions),
  };
}

// The responses as JSON for the vault, without any extension output (the
// PRF result stays here).
function attestationJSON(cred) {
  const r = cred.response;
  return {
    id: cred.id, rawId: b64url(cred.rawId), type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    response: {
      clientDataJSON: b64url(r.clientDataJSON),
      attestationObject: b64url(r.attestationObject),
      transports: typeof r.getTransports === 'function' ? r.getTransports() : [],
    },
    clientExtensionResults: {},
  };
}

function assertionJSON(cred) {
  const r = cred.response;
  return {
    id: cred.id, rawId: b64url(cred.rawId), type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    response: {
      clientDataJSON: b64url(r.clientDataJSON),
      authenticatorData: b64url(r.authenticatorData),
      signature: b64url(r.signature),
      userHandle: r.userHandle ? b64url(r.userHandle) : undefined,
    },
    clientExtensionResults: {},
  };
}

// ---- keys ----

/** kekFromPRF returns HKDF-SHA256(prf, empty salt, "ocmt/v1/kek/passkey") as base64 (32 bytes). */
export async function kekFromPRF(prf) {
  const ikm = await crypto.subtle.importKey('raw', prf, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: enc.encode(kekInfo) }, ikm, 256);
  const out = bytesToB64(bits, false);
  new Uint8Array(bits).fill(0);
  return out;
}

function prfFirst(cred) {
  const ext = typeof cred.getClientExtensionResults === 'function' ? cred.getClientExtensionResults() : {};
  const first = ext && ext.prf && ext.prf.results && ext.prf.results.first;
  return first ? { first, enabled: true } : { first: null, enabled: Boolean(ext && ext.prf && ext.prf.enabled) };
}

const noPRF = () => new APIError(0, 'prf_unsupported',
  'This browser or authenticator cannot unlock a vault with a passkey (it lacks the WebAuthn PRF extension). Your password still works; try a recent Chrome, Edge or Safari, or a security key that supports it.');

/** supported reports whether this browser has WebAuthn at all (PRF is only known after trying). */
export function supported() {
  return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials && window.isSecureContext;
}

function webauthnError(err) {
  if (err instanceof APIError) return err;
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'AbortError') return new APIError(0, 'passkey_cancelled', 'The passkey request was cancelled or timed out.');
  if (name === 'InvalidStateError') return new APIError(0, 'passkey_exists', 'This device already has a passkey for your vault.');
  if (name === 'SecurityError') return new APIError(0, 'passkey_unavailable', 'Passkeys are not available on this address (it must be HTTPS with a host name).');
  return new APIError(0, 'passkey_failed', `The passkey request failed: ${err && err.message ? err.message : err}`);
}

// forget asks the authenticator to drop a credential the vault will not
// keep (WebAuthn signals, where the browser has them; best effort).
async function forget(rpId, rawId) {
  try {
    if (typeof PublicKeyCredential.signalUnknownCredential === 'function') await PublicKeyCredential.signalUnknownCredential({ rpId, credentialId: b64url(rawId) });
  } catch {
    // nothing more to do: the credential stays on the device, unused
  }
}

// ---- add, list, remove ----

/** register adds a passkey named name on this device; resolves to the vault's passkey JSON. */
export async function register(name) {
  if (!supported()) throw noPRF();
  const { data: begin } = await request('POST', `${vault.base}/passkeys/register/begin`, { name });
  const opts = creationOptions(begin.publicKey);
  let cred;
  try {
    cred = await navigator.credentials.create({ publicKey: opts });
  } catch (err) {
    throw webauthnError(err);
  }
  const rpId = begin.publicKey.rp && begin.publicKey.rp.id;
  let { first, enabled } = prfFirst(cred);
  if (!first) {
    if (!enabled) {
      await forget(rpId, cred.rawId);
      throw noPRF();
    }
    // Some authenticators only evaluate the PRF on an assertion.
    let got;
    try {
      got = await navigator.credentials.get({ publicKey: {
        challenge: crypto.getRandomValues(new Uint8Array(32)),
        rpId,
        allowCredentials: [{ type: 'public-key', id: cred.rawId }],
        userVerification: 'required',
        extensions: { prf: { eval: { first: opts.extensions.prf.eval.first } } },
      } });
    } catch (err) {
      throw webauthnError(err);
    }
    first = prfFirst(got).first;
    if (!first) {
      await forget(rpId, cred.rawId);
      throw noPRF();
    }
  }
  const derivedKey = await kekFromPRF(first);
  const { data } = await request('POST', `${vault.base}/passkeys/register/finish`,
    { ceremonyId: begin.ceremonyId, credential: attestationJSON(cred), derivedKey });
  return data;
}

/** unlockWithPasskey runs the passkey unlock; resolves to {expiresIn}. */
export async function unlockWithPasskey() {
  if (!supported()) throw noPRF();
  const { data: begin } = await request('POST', `${vault.base}/passkeys/unlock/begin`);
  let cred;
  try {
    cred = await navigator.credentials.get({ publicKey: requestOptions(begin.publicKey) });
  } catch (err) {
    throw webauthnError(err);
  }
  const { first } = prfFirst(cred);
  if (!first) throw noPRF();
  const derivedKey = await kekFromPRF(first);
  const { data } = await request('POST', `${vault.base}/passkeys/unlock/finish`,
    { ceremonyId: begin.ceremonyId, credential: assertionJSON(cred), derivedKey });
  return data;
}

let list = null; // the vault's passkeys, null = not loaded

function row(p) {
  return h('li', { class: 'provider', dataset: { passkey: p.id } },
    h('div', { class: 'provider-main' },
      h('span', { class: 'provider-name' }, p.name),
      h('span', { class: 'provider-added muted small' }, 'Added ', timeEl(p.addedAt),
        p.lastUsed ? ' · last used ' : '', p.lastUsed ? timeEl(p.lastUsed) : null)),
    h('div', { class: 'btn-group' },
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm btn-danger', dataset: { action: 'remove-passkey', passkey: p.id }, 'aria-label': `Remove the passkey ${p.name}` }, 'Remove')));
}

function render() {
  const ul = $('passkey-list');
  if (!ul) return;
  const st = vault.current();
  const form = $('passkey-form');
  if (form) form.hidden = st.locked;
  if (st.locked) {
    ul.replaceChildren(h('li', { class: 'provider-empty muted' }, 'Unlock your vault to see your passkeys.'));
    return;
  }
  if (list === null) {
    ul.replaceChildren(h('li', { class: 'provider-empty muted' }, 'Loading…'));
    return;
  }
  if (!list.length) {
    ul.replaceChildren(h('li', { class: 'provider-empty muted' }, 'No passkey yet. Add one to unlock with Face ID, Touch ID, Windows Hello or a security key.'));
    return;
  }
  ul.replaceChildren(...list.map(row));
}

/** load fetches the passkey list (names and dates only). */
export async function load() {
  if (vault.current().locked) {
    render();
    return;
  }
  try {
    const data = await vault.vaultRequest('GET', '/passkeys');
    list = data && Array.isArray(data.passkeys) ? data.passkeys.filter((p) => p && typeof p.id === 'string') : [];
  } catch (err) {
    if (err.code !== 'unlock_cancelled') status('passkey-status', err.message, 'error');
  }
  render();
}

async function add(form) {
  const input = $('passkey-name');
  const name = input.value.trim();
  if (!name) {
    status('passkey-status', 'Name this device first (for example “Work laptop”).', 'error');
    input.focus();
    return;
  }
  await busy($('passkey-add'), async () => {
    form.setAttribute('aria-busy', 'true');
    try {
      status('passkey-status', 'Follow your browser’s prompt…');
      const p = await register(name);
      input.value = '';
      status('passkey-status', `Passkey “${p.name}” added. You can now unlock with it on this device.`, 'ok');
      await load();
      recovery.refresh(); // the "Ways back in" card counts passkeys
    } catch (err) {
      status('passkey-status', err.message, 'error');
    } finally {
      form.removeAttribute('aria-busy');
    }
  });
}

async function remove(el) {
  const id = el.dataset.passkey;
  const p = (list || []).find((x) => x.id === id);
  await busy(el, async () => {
    try {
      await vault.vaultRequest('DELETE', `/passkeys/${encodeURIComponent(id)}`);
      // If it lives on this device, its passkey manager may drop it too.
      if (p && typeof p.credentialId === 'string') await forget(location.hostname, b64urlToBytes(p.credentialId));
      status('passkey-status', 'Passkey removed; it no longer unlocks your vault.', 'ok');
      await load();
      recovery.refresh();
    } catch (err) {
      if (err.code !== 'unlock_cancelled') status('passkey-status', err.message, 'error');
    }
  });
}

// ---- the unlock dialog ----

// offer shows "Unlock with a passkey" in the unlock dialog when the vault
// has a passkey wrap (GET /ways answers while locked) and WebAuthn exists.
async function offer() {
  const box = $('unlock-passkey-box');
  if (!box) return;
  let has = false;
  if (supported()) {
    try {
      const { data } = await request('GET', `${vault.base}/ways`);
      has = !!data && Array.isArray(data.wraps) && data.wraps.some((w) => w && w.kind === 'passkey');
    } catch {
      has = false;
    }
  }
  box.hidden = !has;
  // Offer it first, unless the user has started typing the password.
  const pw = $('unlock-password');
  if (has && $('unlock-dialog').open && (!pw || (document.activeElement === pw && !pw.value))) $('unlock-passkey').focus();
}

async function unlockClicked(el) {
  await busy(el, async () => {
    try {
      status('unlock-status', 'Follow your browser’s prompt…');
      const data = await unlockWithPasskey();
      status('unlock-status', '');
      vault.unlockedWith(data && data.expiresIn);
    } catch (err) {
      if (err.status === 429 || err.code === 'unlock_backoff') status('unlock-status', err.message, 'error');
      else status('unlock-status', `${err.message} You can use your password instead.`, 'error');
    }
  });
}

let started = false;

/** start wires the passkey panel and the unlock dialog's passkey button (call once). */
export function start() {
  if (started) return;
  started = true;
  vault.onPrompt(() => { offer(); });
  document.addEventListener(vault.waysChangedEvent, () => { load(); });
  vault.onChange((st, why) => {
    if (why === 'unlocked') load();
    else if (why === 'locked' || why === 'expired' || why === 'locked-answer') {
      list = null;
      status('passkey-status', '');
      render();
    } else if (why === 'status' && !st.locked && list === null) load();
  });
}

export const actions = {
  'add-passkey': (form) => add(form),
  'remove-passkey': (el) => remove(el),
  'unlock-passkey': (el) => unlockClicked(el),
};
