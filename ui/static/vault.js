// vault.js — the vault as the page sees it (SPEC §3 steps 4–7, §5.1): its
// status, the vault bar (lock state, countdown to auto-lock, Lock now,
// Extend), the unlock dialog, and vaultRequest, which answers a 423
// vault_locked with the unlock prompt and then retries once.
//
// Unlocking: GET /params → derive K in a worker (kdf.js) → POST
// /unlock/challenge → proof = HMAC-SHA256(K, challenge) → POST /unlock. The
// password and K never leave this page except K to the user's own
// container; nothing is kept after the request.
import { APIError, reachabilityEvent, request, serverReachable } from './api.js';
import { $, busy, status } from './dom.js';
import { deriveKey } from './kdf.js';
import { checkKDFParams, unlockProof } from './vaultcrypto.js';

export const base = '/api/v1/me/agent/vault';

/**
 * waysChangedEvent is dispatched on document when ways back in were
 * removed in bulk ("Sign out all devices" on a password change or a
 * reset), so that the cards that list them reload.
 */
export const waysChangedEvent = 'ocmt:ways-changed';
const statusEveryMs = 60000;

const state = {
  known: false, // a status answer has arrived
  initialized: false,
  locked: true,
  expiresAt: 0, // ms timestamp of the auto-lock, 0 = none known
  publicKeys: null,
  error: '',
  offline: false, // the server cannot be reached: the lock time is not known
};

const listeners = new Set();

/** onChange registers fn(state, why); why is "status", "unlocked", "locked" (by the user), "expired" (auto-lock) or "locked-answer" (a 423). */
export function onChange(fn) {
  listeners.add(fn);
}

function emit(why) {
  const snap = current();
  for (const fn of listeners) {
    try {
      fn(snap, why);
    } catch (err) {
      console.error(err);
    }
  }
}

/** current returns a copy of the vault state. */
export function current() {
  return { ...state, expiresIn: remaining() };
}

function remaining() {
  return state.expiresAt ? Math.max(0, Math.ceil((state.expiresAt - Date.now()) / 1000)) : 0;
}

function apply(s) {
  if (!s || typeof s !== 'object') return;
  // A paused or stopped container is not woken by this poll: the agent
  // role answers {sleeping: true, state} itself. Keep what we knew (a
  // paused vault keeps its state; the countdown still runs).
  if (s.sleeping === true) return;
  state.known = true;
  state.initialized = Boolean(s.initialized);
  state.locked = s.locked !== false;
  const exp = Number(s.expiresIn);
  state.expiresAt = !state.locked && exp > 0 ? Date.now() + exp * 1000 : 0;
  state.publicKeys = s.publicKeys && typeof s.publicKeys === 'object' ? s.publicKeys : null;
  state.error = '';
}

function setUnlocked(expiresIn) {
  state.initialized = true;
  state.locked = false;
  const exp = Number(expiresIn);
  state.expiresAt = exp > 0 ? Date.now() + exp * 1000 : 0;
  renderBar();
}

function setLocked() {
  state.locked = true;
  state.expiresAt = 0;
  renderBar();
}

/**
 * unlockedBy records that the vault was opened another way than the
 * password form (a recovery reset, recovery.js): it closes the unlock
 * dialog, resolves everyone waiting for it and notifies listeners.
 */
export function unlockedBy(expiresIn) {
  state.known = true;
  setUnlocked(expiresIn);
  closeDialog();
  settleWaiters(true);
  emit('unlocked');
}

/** markInitialized records a successful init (the new vault is unlocked). */
export function markInitialized(expiresIn) {
  state.known = true;
  setUnlocked(expiresIn);
  emit('unlocked');
}

function signinIfSessionEnded(err) {
  if (err && err.status === 401 && err.code !== 'wrong_key') {
    window.location.assign('/signin');
    return true;
  }
  return false;
}

let statusTimer = 0;
let refreshing = null;

/** refresh reloads GET /status, re-renders the bar and notifies listeners. */
export function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const { data } = await request('GET', `${base}/status`);
      apply(data);
    } catch (err) {
      if (signinIfSessionEnded(err)) return;
      if (err.status === 423) {
        state.known = true;
        state.initialized = true;
        setLocked();
      } else {
        state.error = err.message;
      }
    } finally {
      refreshing = null;
      clearTimeout(statusTimer);
      statusTimer = setTimeout(() => { if (!document.hidden) refresh(); }, state.error ? 5000 : statusEveryMs);
    }
    renderBar();
    emit('status');
  })();
  return refreshing;
}

// ---- the bar ----

let tickTimer = 0;

function fmtDuration(sec) {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return h ? `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}` : `${m}:${String(s).padStart(2, '0')}`;
}

function renderBar() {
  const bar = $('vault-bar');
  if (!bar) return;
  bar.hidden = !state.known || !state.initialized;
  const el = $('vault-state');
  el.dataset.locked = String(state.locked);
  const text = state.locked ? 'Vault locked' : 'Vault unlocked';
  if ($('vault-state-text').textContent !== text) $('vault-state-text').textContent = text;
  const left = remaining();
  const timer = $('vault-timer');
  clearTimeout(tickTimer);
  if (state.offline) {
    // Nothing counts down while the server is away: the vault may have
    // locked (or been locked) meanwhile. The status reloads on its return.
    timer.hidden = false;
    timer.dataset.offline = 'true';
    timer.dataset.soon = 'false';
    timer.textContent = "Offline: can't reach the server";
    timer.removeAttribute('title');
    return;
  }
  delete timer.dataset.offline;
  if (!state.locked && state.expiresAt) {
    timer.hidden = false;
    timer.textContent = `locks in ${fmtDuration(left)}`;
    timer.dataset.soon = String(left <= 120);
    timer.setAttribute('title', `Auto-locks at ${new Date(state.expiresAt).toLocaleTimeString()}`);
  } else {
    timer.hidden = true;
    timer.textContent = '';
  }
  $('vault-unlock').hidden = !state.locked;
  $('vault-extend').hidden = state.locked;
  $('vault-lock').hidden = state.locked;
  if (!state.locked && state.expiresAt) {
    if (left <= 0) {
      setLocked();
      emit('expired');
      refresh();
      promptUnlock('Your vault locked itself after a while without use.').catch(() => {});
      return;
    }
    tickTimer = setTimeout(renderBar, 1000 - (Date.now() % 1000) + 5);
  }
}

async function lockNow(button) {
  await busy(button, async () => {
    try {
      await request('POST', `${base}/lock`);
      setLocked();
      status('vault-bar-status', 'Vault locked.');
      emit('locked');
    } catch (err) {
      if (!signinIfSessionEnded(err)) status('vault-bar-status', err.message, 'error');
    }
  });
  $('vault-unlock').focus();
}

async function extend(button) {
  await busy(button, async () => {
    try {
      const data = await vaultRequest('POST', '/extend');
      setUnlocked(data && data.expiresIn);
      status('vault-bar-status', state.expiresAt ? `Extended: locks in ${fmtDuration(remaining())}.` : 'Extended.');
      emit('status');
    } catch (err) {
      if (!signinIfSessionEnded(err) && err.code !== 'unlock_cancelled') status('vault-bar-status', err.message, 'error');
    }
  });
}

// ---- requests that may meet a locked vault ----

/**
 * vaultRequest calls the vault API (path below /api/v1/me/agent/vault) and
 * resolves to the response body. On 423 vault_locked it shows the unlock
 * prompt and retries once after the user unlocked; if they cancel it
 * rejects with code "unlock_cancelled".
 */
export async function vaultRequest(method, path, body) {
  try {
    return (await request(method, base + path, body)).data;
  } catch (err) {
    if (err.status !== 423 && err.code !== 'vault_locked') throw err;
    setLocked();
    emit('locked-answer');
    await promptUnlock();
    return (await request(method, base + path, body)).data;
  }
}

/**
 * withChallenge runs a challenge–proof exchange with the derived key K
 * (base64): it fetches a challenge, signs it and POSTs {challengeId,
 * derivedKey, proof, ...extra} to path. A stale challenge
 * (challenge_invalid) is retried once with a fresh one.
 */
export async function withChallenge(path, key, extra = {}) {
  for (let attempt = 0; ; attempt++) {
    const { data: ch } = await request('POST', `${base}/unlock/challenge`);
    if (!ch || typeof ch.challengeId !== 'string' || typeof ch.challenge !== 'string') throw new APIError(502, 'bad_challenge', 'The vault sent an invalid challenge.');
    const proof = await unlockProof(key, ch.challenge);
    try {
      return (await request('POST', base + path, { challengeId: ch.challengeId, derivedKey: key, proof, ...extra })).data;
    } catch (err) {
      if (err.code === 'challenge_invalid' && attempt === 0) continue;
      throw err;
    }
  }
}

/** params fetches and checks the KDF parameters and salt. */
export async function params() {
  const { data } = await request('GET', `${base}/params`);
  return checkKDFParams(data);
}

// ---- the unlock dialog ----

let waiters = [];
const promptHooks = [];
let backoffUntil = 0;

/** onPrompt registers fn(), called each time the unlock dialog opens (passkey.js offers a passkey). */
export function onPrompt(fn) {
  promptHooks.push(fn);
}

/** unlockedWith finishes an unlock done another way (a passkey): the dialog closes and waiters resume. */
export function unlockedWith(expiresIn) {
  $('unlock-password').value = '';
  setUnlocked(expiresIn);
  closeDialog();
  settleWaiters(true);
  status('vault-bar-status', 'Vault unlocked.', 'ok');
  emit('unlocked');
}
let backoffTimer = 0;

/**
 * promptUnlock opens the unlock dialog (if it is not open) and resolves once
 * the vault is unlocked; it rejects with code "unlock_cancelled" if the user
 * closes the dialog first. message (optional) explains why it appeared.
 */
export function promptUnlock(message = '') {
  if (state.known && state.initialized && !state.locked) return Promise.resolve();
  return new Promise((resolve, reject) => {
    waiters.push({ resolve, reject });
    const dlg = $('unlock-dialog');
    if (!dlg) {
      reject(new APIError(423, 'vault_locked', 'Your vault is locked.'));
      return;
    }
    const why = $('unlock-reason');
    why.textContent = message;
    why.hidden = !message;
    if (!dlg.open) {
      if (backoffUntil <= Date.now()) status('unlock-status', '');
      if (typeof dlg.showModal === 'function') dlg.showModal();
      else dlg.setAttribute('open', '');
      $('unlock-password').focus();
      for (const fn of promptHooks) fn();
    }
  });
}

function settleWaiters(ok) {
  const list = waiters;
  waiters = [];
  for (const w of list) {
    if (ok) w.resolve();
    else w.reject(new APIError(423, 'unlock_cancelled', 'Your vault is still locked.'));
  }
}

function closeDialog() {
  const dlg = $('unlock-dialog');
  if (dlg && dlg.open) dlg.close();
}

function startBackoff(ms) {
  backoffUntil = Date.now() + Math.max(1000, Number(ms) || 1000);
  const submit = $('unlock-submit');
  const tick = () => {
    const left = Math.ceil((backoffUntil - Date.now()) / 1000);
    if (left <= 0) {
      backoffUntil = 0;
      submit.disabled = false;
      status('unlock-status', 'You can try again now.');
      return;
    }
    submit.disabled = true;
    status('unlock-status', `Too many attempts, try again in ${left} s.`, 'error');
    backoffTimer = setTimeout(tick, 1000);
  };
  clearTimeout(backoffTimer);
  tick();
}

async function unlock(form) {
  const input = $('unlock-password');
  const password = input.value;
  if (backoffUntil > Date.now()) return;
  if (!password) {
    status('unlock-status', 'Enter your vault password.', 'error');
    input.focus();
    return;
  }
  const submit = $('unlock-submit');
  let failed = false;
  await busy(submit, async () => {
    form.setAttribute('aria-busy', 'true');
    input.readOnly = true;
    try {
      status('unlock-status', 'Deriving key… (a few seconds)');
      const p = await params();
      const key = await deriveKey(password, p);
      status('unlock-status', 'Unlocking…');
      const data = await withChallenge('/unlock', key);
      input.value = '';
      status('unlock-status', '');
      setUnlocked(data && data.expiresIn);
      closeDialog();
      settleWaiters(true);
      status('vault-bar-status', 'Vault unlocked.', 'ok');
      emit('unlocked');
    } catch (err) {
      failed = true;
      if (err.code === 'wrong_key') {
        status('unlock-status', 'Wrong password.', 'error');
      } else if (err.status === 429 || err.code === 'unlock_backoff') {
        startBackoff(err.retryAfterMs);
      } else if (!signinIfSessionEnded(err)) {
        status('unlock-status', err.message, 'error');
      }
    } finally {
      input.readOnly = false;
      form.removeAttribute('aria-busy');
    }
  });
  if (failed) {
    if (backoffUntil > Date.now()) submit.disabled = true;
    input.focus();
    input.select();
  }
}

// ---- start ----

let started = false;

/** start loads the status and keeps it fresh (call once the container runs). */
export function start() {
  if (started) return refresh();
  started = true;
  const dlg = $('unlock-dialog');
  if (dlg) {
    dlg.addEventListener('close', () => {
      $('unlock-password').value = '';
      if (state.locked) settleWaiters(false);
    });
  }
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refresh();
  });
  document.addEventListener(reachabilityEvent, (e) => {
    state.offline = !e.detail.reachable;
    if (state.offline) renderBar();
    else refresh();
  });
  state.offline = !serverReachable();
  return refresh();
}

export const actions = {
  'vault-lock': (el) => lockNow(el),
  'vault-extend': (el) => extend(el),
  'vault-unlock': () => promptUnlock().catch(() => {}),
  'vault-retry': () => refresh(),
  unlock: (form) => unlock(form),
  'unlock-cancel': () => closeDialog(),
  'toggle-password': (el) => {
    const input = $(el.dataset.target);
    if (!input) return;
    const show = input.type === 'password';
    input.type = show ? 'text' : 'password';
    el.setAttribute('aria-pressed', String(show));
    el.textContent = show ? 'Hide' : 'Show';
  },
};
