// onboarding.js — the first-run wizard on "My agent" (SPEC §3 steps 4–5):
// 1. create the vault: the password is stretched in this browser (Argon2id
//    in WebAssembly) and only the derived key goes to the container;
// 2. add a model provider;
// 3. start chatting.
// Step 2 survives a reload (sessionStorage) so a refresh does not skip it.
import { request } from './api.js';
import { $, busy, status } from './dom.js';
import { deriveKey } from './kdf.js';
import { update as updateMeter } from './meter.js';
import { offerPhrase } from './recovery.js';
import { saveProvider, syncForm } from './settings.js';
import * as vault from './vault.js';

const stepKey = 'ocmt.onboarding.step';
let step = 0; // 0 = not shown
let onFinish = () => {};

function remembered() {
  try {
    return Number(sessionStorage.getItem(stepKey)) || 0;
  } catch {
    return 0;
  }
}

function remember(n) {
  try {
    if (n) sessionStorage.setItem(stepKey, String(n));
    else sessionStorage.removeItem(stepKey);
  } catch {
    // storage disabled: the wizard just restarts at the vault's real state
  }
}

/** wanted returns the step the wizard should show for vault state st (0 = none). */
export function wanted(st) {
  if (!st.known) return 0;
  if (!st.initialized) return 1;
  const r = remembered();
  return r >= 2 ? r : 0;
}

/** show displays step n (1–3) of the wizard, or hides it for 0. */
export function show(n) {
  const prev = step;
  step = n;
  const root = $('onboarding');
  root.hidden = n === 0;
  if (n === 0) return;
  root.dataset.step = String(n);
  for (const li of $('onboarding-steps').children) {
    const i = Number(li.dataset.step);
    li.dataset.status = i < n ? 'done' : i === n ? 'current' : 'todo';
    if (i === n) li.setAttribute('aria-current', 'step');
    else li.removeAttribute('aria-current');
  }
  for (let i = 1; i <= 3; i++) $(`onboarding-step-${i}`).hidden = i !== n;
  if (n === 2) syncForm($('provider-setup-form'));
  if (prev !== n) {
    const focus = { 1: 'vault-password', 2: 'setup-kind', 3: 'onboarding-finish' }[n];
    if (prev !== 0 || n !== 1) $(focus).focus();
  }
}

/** setFinish sets what happens when the user leaves the wizard. */
export function setFinish(fn) {
  onFinish = fn;
}

async function createVault(form) {
  const pw = $('vault-password');
  const confirm = $('vault-password-confirm');
  pw.removeAttribute('aria-invalid');
  confirm.removeAttribute('aria-invalid');
  const r = updateMeter(pw);
  if (!r.ok) {
    pw.setAttribute('aria-invalid', 'true');
    status('vault-create-status', pw.value.length < 10 ? 'Use at least 10 characters.' : `This password is too easy to guess. ${r.hints[0] || 'Make it longer.'}`, 'error');
    pw.focus();
    return;
  }
  if (pw.value !== confirm.value) {
    confirm.setAttribute('aria-invalid', 'true');
    status('vault-create-status', 'The passwords do not match.', 'error');
    confirm.focus();
    return;
  }
  await busy($('vault-create-submit'), async () => {
    form.setAttribute('aria-busy', 'true');
    pw.readOnly = true;
    confirm.readOnly = true;
    try {
      status('vault-create-status', 'Deriving key… (a few seconds)');
      const p = await vault.params();
      const key = await deriveKey(pw.value, p);
      status('vault-create-status', 'Creating your vault…');
      const { data } = await request('POST', `${vault.base}/init`, { derivedKey: key });
      form.reset();
      updateMeter(pw);
      status('vault-create-status', '');
      remember(2);
      vault.markInitialized(data && data.expiresIn);
      vault.refresh();
      await offerPhrase(); // the recovery phrase, shown once ("Skip for now" allowed)
      show(2);
    } catch (err) {
      if (err.status === 401) {
        window.location.assign('/signin');
      } else if (err.code === 'already_initialized' || err.status === 409) {
        status('vault-create-status', 'Your vault already exists. Unlock it with your password.', 'error');
        remember(0);
        await vault.refresh();
      } else {
        status('vault-create-status', err.message, 'error');
      }
    } finally {
      pw.readOnly = false;
      confirm.readOnly = false;
      form.removeAttribute('aria-busy');
    }
  });
}

function finish() {
  remember(0);
  show(0);
  onFinish();
}

export const actions = {
  'vault-create': (form) => createVault(form),
  'setup-provider': async (form) => {
    if (await saveProvider(form, 'setup-provider-status')) {
      form.reset();
      syncForm(form);
      remember(3);
      show(3);
    }
  },
  'onboarding-skip': () => finish(),
  'onboarding-finish': () => finish(),
};
