// social.js — trusted contacts (social recovery, issue 10):
//  - the "Trusted contacts" card in Vault & keys: pick 2 to 10 contacts by
//    email and how many are needed (PUT /vault/ways/social; the server
//    finds their keys, the vault splits and sends the pieces);
//  - the "Someone asks for your help" card: a contact's approval inbox
//    (GET /api/v1/me/recovery/inbox, POST …/inbox/{id}/approve);
//  - "Forgot password? Ask my trusted contacts" in the unlock dialog: this
//    browser makes a one-time key pair (ocmtSocialKeyPair in kdf.wasm, in
//    the worker), starts a request (POST /api/v1/me/recovery/requests),
//    polls it, and once enough contacts approved, rebuilds the key from
//    their pieces (ocmtSocialRecover) and sets a new password
//    (POST /vault/recovery/reset {"kind":"social","requestId"}).
// The one-time private key stays in this tab (sessionStorage, so a reload
// keeps the request) and is dropped when the request ends.
// The owner's flow is one of the "Forgot password?" choices
// (recovery.js's registerForgotPath), offered when the vault has a social
// wrap.
import { request } from './api.js';
import { $, busy, h, status } from './dom.js';
import { deriveKey, runInWorker } from './kdf.js';
import { registerForgotPath } from './recovery.js';
import * as vault from './vault.js';
import { b64encode, randomBytes } from './vaultcrypto.js';

const pollMs = 4000;
const storeKey = 'ocmt.socialRecovery';

// ---- the wasm functions, in the key derivation worker ----

/** socialOp runs ocmtSocial<name>(...args) in a fresh worker and resolves to its result object. */
export async function socialOp(name, args) {
  const m = await runInWorker('ocmt-social', { social: name, args }, 60000);
  if (!m.result || typeof m.result !== 'object') throw new Error('The browser could not run the recovery code.');
  return m.result;
}

// ---- setup card ----

let ways = null; // last GET /vault/ways

function fillThreshold(n, chosen) {
  const sel = $('social-threshold');
  if (!sel) return;
  const max = Math.max(2, Math.min(10, n));
  const want = chosen || Math.min(3, max);
  sel.replaceChildren(...Array.from({ length: max - 1 }, (_, i) => {
    const k = i + 2;
    const o = h('option', { value: String(k) }, `${k} of them`);
    if (k === want) o.selected = true;
    return o;
  }));
}

function contactEmails() {
  return $('social-contacts').value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
}

function renderCard() {
  const card = $('social-card');
  if (!card) return;
  const st = vault.current();
  const social = ways && ways.social;
  const cur = $('social-current');
  if (social && Array.isArray(social.contacts)) {
    const names = social.contacts.map((c) => c.email || c.userId).join(', ');
    const waiting = social.contacts.filter((c) => !c.held).map((c) => c.email || c.userId);
    cur.textContent = `✓ ${social.threshold} of ${social.contacts.length} trusted contacts can help you back in: ${names}.` +
      (waiting.length ? ` Waiting for ${waiting.join(', ')} to open their vault and take their piece (within 7 days).` : ' Each of them keeps their piece.');
    cur.hidden = false;
    if (!$('social-contacts').value) $('social-contacts').value = social.contacts.map((c) => c.email || '').filter(Boolean).join('\n');
  } else {
    cur.hidden = true;
  }
  $('social-remove').hidden = !social;
  $('social-save').disabled = Boolean(st.locked);
  fillThreshold(contactEmails().length || 5, Number($('social-threshold').value) || (social && social.threshold));
}

async function loadWays() {
  try {
    const { data } = await request('GET', `${vault.base}/ways`);
    ways = data && typeof data === 'object' ? data : null;
  } catch {
    ways = null;
  }
  renderCard();
}

async function save(form) {
  const emails = contactEmails();
  const threshold = Number($('social-threshold').value) || 0;
  if (emails.length < 2 || emails.length > 10) {
    status('social-status', 'Enter 2 to 10 email addresses.', 'error');
    $('social-contacts').focus();
    return;
  }
  if (threshold < 2 || threshold > emails.length) {
    status('social-status', 'Choose how many are needed: at least 2, at most the number of contacts.', 'error');
    return;
  }
  await busy($('social-save'), async () => {
    form.setAttribute('aria-busy', 'true');
    try {
      status('social-status', 'Sending each contact their piece…');
      // The directory's signed key records of the contacts; the vault
      // checks each signature before it seals a piece to that key.
      const { data: { resolved } } = await request('POST', '/api/v1/me/recovery/contacts', { contacts: emails });
      const data = await vault.vaultRequest('PUT', '/ways/social', { threshold, resolved });
      ways = data;
      status('social-status', `Saved: ${threshold} of ${emails.length} contacts can help you back in.`, 'ok');
      renderCard();
    } catch (err) {
      status('social-status', err.message, 'error');
    } finally {
      form.removeAttribute('aria-busy');
    }
  });
}

async function remove(el) {
  await busy(el, async () => {
    try {
      ways = await vault.vaultRequest('DELETE', '/ways/social');
      $('social-contacts').value = '';
      status('social-status', 'Trusted contacts removed; their pieces no longer open your vault.', 'ok');
      renderCard();
    } catch (err) {
      status('social-status', err.message, 'error');
    }
  });
}

// ---- a contact's inbox ----

async function loadInbox() {
  const card = $('social-inbox');
  if (!card) return;
  let list = [];
  try {
    const { data } = await request('GET', '/api/v1/me/recovery/inbox');
    list = (data && Array.isArray(data.requests)) ? data.requests : [];
  } catch {
    list = [];
  }
  card.hidden = list.length === 0;
  $('social-inbox-list').replaceChildren(...list.map((r) => {
    const inputId = `social-code-${r.id}`;
    return h('li', { class: 'social-request' },
      h('p', {}, `${r.ownerEmail || 'Someone'} asks you to help unlock their vault — only approve if they asked you in person.`),
      r.approved
        ? h('p', { class: 'small' }, '✓ You approved.')
        : h('div', { class: 'field social-approve' },
          h('label', { for: inputId }, 'The 6-digit code they read to you'),
          h('div', { class: 'input-row' },
            h('input', { id: inputId, type: 'text', inputmode: 'numeric', autocomplete: 'off', maxlength: '6', pattern: '[0-9]{6}' }),
            h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'social-approve', dataset: { id: r.id, input: inputId } }, 'Approve'))));
  }));
}

async function approve(el) {
  const input = $(el.dataset.input);
  const code = input ? input.value.replace(/\D/g, '') : '';
  if (code.length !== 6) {
    status('social-inbox-status', 'Type the 6-digit code they read to you. If they did not ask you in person, do not approve.', 'error');
    if (input) input.focus();
    return;
  }
  const send = () => request('POST', `/api/v1/me/recovery/inbox/${encodeURIComponent(el.dataset.id)}/approve`, { code });
  await busy(el, async () => {
    try {
      try {
        await send();
      } catch (err) {
        if (err.status !== 423 && err.code !== 'vault_locked') throw err;
        await vault.promptUnlock('Unlock your vault to release your piece.');
        await send();
      }
      status('social-inbox-status', 'Approved. Thank you.', 'ok');
    } catch (err) {
      status('social-inbox-status', err.message, 'error');
    }
  });
  loadInbox();
}

// ---- the owner's recovery ----

let flow = null; // {id, pub, priv, owner, threshold}
let pollTimer = 0;

function saveFlow() {
  try {
    if (flow) sessionStorage.setItem(storeKey, JSON.stringify(flow));
    else sessionStorage.removeItem(storeKey);
  } catch {
    // Private mode without storage: the request lives as long as the page.
  }
}

function loadFlow() {
  try {
    const f = JSON.parse(sessionStorage.getItem(storeKey) || 'null');
    if (f && typeof f.id === 'string' && typeof f.priv === 'string') return f;
  } catch {
    // ignore
  }
  return null;
}

function step(name) {
  for (const s of ['start', 'wait', 'password']) $(`social-step-${s}`).hidden = s !== name;
  $('social-wait-actions').hidden = name === 'start';
}

function openDialog() {
  const dlg = $('social-dialog');
  if (!dlg.open) {
    if (typeof dlg.showModal === 'function') dlg.showModal();
    else dlg.setAttribute('open', '');
  }
}

/** forgot opens the owner's flow ("Ask my trusted contacts"). */
export function forgot() {
  const u = $('unlock-dialog');
  if (u && u.open) u.close();
  flow = flow || loadFlow();
  status('social-recover-status', '');
  step(flow ? 'wait' : 'start');
  openDialog();
  if (flow) poll();
}

registerForgotPath('contacts', 'Ask my trusted contacts', forgot, {
  hint: 'Enough of them approve, then you set a new password.',
  available: (w) => Array.isArray(w && w.wraps) && w.wraps.some((x) => x && x.kind === 'social'),
});

async function startRequest(el) {
  await busy(el, async () => {
    try {
      const me = (await request('GET', '/api/v1/me')).data || {};
      const kp = await socialOp('KeyPair', []);
      if (kp.error) throw new Error(kp.error);
      const { data } = await request('POST', '/api/v1/me/recovery/requests', { publicKey: kp.publicKey });
      flow = { id: data.id, pub: kp.publicKey, priv: kp.privateKey, owner: me.id, threshold: data.threshold };
      saveFlow();
      step('wait');
      poll();
    } catch (err) {
      status('social-recover-status', err.message, 'error');
    }
  });
}

async function poll() {
  clearTimeout(pollTimer);
  if (!flow || !$('social-dialog').open) return;
  try {
    const { data } = await request('GET', `/api/v1/me/recovery/requests/${encodeURIComponent(flow.id)}`);
    $('social-code').textContent = data.code || '';
    $('social-expires').textContent = data.expiresAt ? `on ${new Date(data.expiresAt).toLocaleString()}` : 'after 72 hours';
    const by = Array.isArray(data.approvedBy) ? data.approvedBy : [];
    $('social-contacts-list').textContent = by.length ? `Approved by: ${by.join(', ')}` : 'No approvals yet.';
    if (data.status !== 'open') {
      $('social-progress').textContent = data.status === 'expired' ? 'This request has expired. Start a new one.' : `This request is ${data.status}.`;
      flow = null;
      saveFlow();
      return;
    }
    $('social-progress').textContent = `${data.approvals} of ${data.threshold} approvals.`;
    if (data.approvals >= data.threshold && $('social-step-password').hidden) {
      const r = await socialOp('Recover', [flow.pub, flow.priv, flow.owner, flow.id, data.sealedShares || []]);
      if (r.derivedKey) {
        flow.kek = r.derivedKey; // kept in memory only (saveFlow is not called again before use)
        step('password');
        status('social-recover-status', 'Enough of your contacts approved. Choose a new password.', 'ok');
        $('social-new-password').focus();
        return;
      }
    }
  } catch (err) {
    status('social-recover-status', err.message, 'error');
  }
  pollTimer = setTimeout(poll, pollMs);
}

async function reset(form) {
  const pw = $('social-new-password');
  const confirm = $('social-new-confirm');
  if (!flow || !flow.kek) return;
  if (pw.value.length < 10) {
    status('social-recover-status', 'Use at least 10 characters for the new password.', 'error');
    pw.focus();
    return;
  }
  if (pw.value !== confirm.value) {
    status('social-recover-status', 'The new passwords do not match.', 'error');
    confirm.focus();
    return;
  }
  await busy($('social-reset'), async () => {
    form.setAttribute('aria-busy', 'true');
    try {
      status('social-recover-status', 'Deriving the new password\'s key… (a few seconds)');
      const p = await vault.params();
      const newSalt = b64encode(randomBytes(16));
      const newKey = await deriveKey(pw.value, { salt: newSalt, kdf: p.kdf });
      status('social-recover-status', 'Setting your new password…');
      const data = await vault.withChallenge('/recovery/reset', flow.kek, { kind: 'social', id: '', requestId: flow.id, newDerivedKey: newKey, newSalt, newKdf: p.kdf, signOutAll: false });
      flow = null;
      saveFlow();
      pw.value = '';
      confirm.value = '';
      $('social-dialog').close();
      status('vault-bar-status', 'New password set. Your vault is unlocked. To give your contacts fresh pieces, save your trusted contacts again in Vault & keys.', 'ok');
      vault.unlockedBy(data && data.expiresIn); // opened another way than the password form
    } catch (err) {
      status('social-recover-status', err.code === 'wrong_key' ? 'Your contacts\' pieces did not open the vault. Start a new request.' : err.message, 'error');
    } finally {
      form.removeAttribute('aria-busy');
    }
  });
}

async function cancelRequest() {
  if (flow) {
    try {
      await request('DELETE', `/api/v1/me/recovery/requests/${encodeURIComponent(flow.id)}`);
    } catch {
      // Gone already: nothing to cancel.
    }
  }
  flow = null;
  saveFlow();
  $('social-dialog').close();
}

// ---- start ----

let started = false;

/** start loads the card and the inbox (call once the workspace shows). */
export function start() {
  if (!started) {
    started = true;
    const dlg = $('social-dialog');
    if (dlg) {
      dlg.addEventListener('close', () => {
        clearTimeout(pollTimer);
        if (flow) delete flow.kek;
      });
    }
    const ta = $('social-contacts');
    if (ta) ta.addEventListener('input', () => fillThreshold(contactEmails().length, Number($('social-threshold').value)));
    vault.onChange((st, why) => {
      if (why === 'unlocked' || why === 'locked' || why === 'status') loadWays();
    });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) loadInbox(); });
    document.addEventListener(vault.waysChangedEvent, () => { loadWays(); });
  }
  loadWays();
  loadInbox();
}

export const actions = {
  'social-save': (form) => save(form),
  'social-remove': (el) => remove(el),
  'social-approve': (el) => approve(el),
  'social-start': (el) => startRequest(el),
  'social-close': () => $('social-dialog').close(),
  'social-cancel-request': () => cancelRequest(),
  'social-reset': (form) => reset(form),
};
