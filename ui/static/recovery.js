// recovery.js — the ways back into a vault besides the password (issue 10):
//  - the recovery phrase: 12 words shown once (at vault creation, or later
//    from "Ways back in"), checked by asking 3 of them back, then only the
//    KEK derived from them goes to the container (PUT /vault/ways/phrase);
//  - the backup key: 8 printable groups, same (PUT /vault/ways/backup-key);
//  - the "Ways back in" card in Vault & keys (GET /vault/ways), with a nudge
//    while the password is the only way in;
//  - "Forgot password?" in the unlock dialog: pick a way, enter the phrase
//    or key, choose a new password (Argon2id in the worker, fresh salt),
//    then POST /vault/unlock/challenge and POST /vault/recovery/reset with
//    a proof made with the recovery KEK.
// Other ways (trusted contacts, passkeys) add themselves to the "Forgot
// password?" choices with registerForgotPath.
import { request } from './api.js';
import { $, busy, confirmDialog, h, status } from './dom.js';
import { deriveKey } from './kdf.js';
import { update as updateMeter } from './meter.js';
import { backupKeyKey, newBackupKey, newPhrase, phraseKey } from './recoverykeys.js';
import * as vault from './vault.js';
import { b64encode, randomBytes } from './vaultcrypto.js';

// ---- the registry of "Forgot password?" paths ----

const paths = [];

/**
 * registerForgotPath adds a choice to the "Forgot password?" dialog.
 * name: a short id ("contacts"); label: the button text ("Ask my trusted
 * contacts"); start(): called when chosen, after the dialog closed (it
 * runs its own flow); opts.hint: one line under the button;
 * opts.available(ways): whether to offer it, given GET /vault/ways
 * ({wraps: [{kind, id}], ...}); offered always when absent. Registering a
 * name again replaces it.
 */
export function registerForgotPath(name, label, start, opts = {}) {
  const i = paths.findIndex((p) => p.name === name);
  const p = { name, label, start, hint: opts.hint || '', available: opts.available };
  if (i >= 0) paths[i] = p;
  else paths.push(p);
}

const hasWrap = (kind) => (ways) => Array.isArray(ways && ways.wraps) && ways.wraps.some((w) => w && w.kind === kind);

registerForgotPath('phrase', 'Use my recovery phrase', () => openRecoverForm('phrase'), {
  hint: 'The 12 words you wrote down.',
  available: hasWrap('phrase'),
});
registerForgotPath('backup-key', 'Use my backup key', () => openRecoverForm('backup-key'), {
  hint: 'The printed key of 8 groups, like 7K2Q-…',
  available: hasWrap('backup-key'),
});

// ---- GET /vault/ways ----

let ways = null; // the last GET /vault/ways answer

async function loadWays() {
  const { data } = await request('GET', `${vault.base}/ways`);
  ways = data && typeof data === 'object' ? data : { wraps: [] };
  return ways;
}

function wrapCount(kind) {
  return Array.isArray(ways && ways.wraps) ? ways.wraps.filter((w) => w && w.kind === kind).length : 0;
}

function openDialog(dlg) {
  if (dlg.open) return;
  if (typeof dlg.showModal === 'function') dlg.showModal();
  else dlg.setAttribute('open', '');
}

function closeDialog(dlg) {
  if (dlg && dlg.open) dlg.close();
}

function randomIndexes(n, max) {
  const out = [];
  const r = randomBytes(32);
  for (let i = 0; out.length < n && i < r.length; i++) {
    const x = r[i] % max;
    if (!out.includes(x)) out.push(x);
  }
  for (let x = 0; out.length < n; x++) if (!out.includes(x)) out.push(x); // 32 bytes nearly never run out
  return out.sort((a, b) => a - b);
}

// ---- the recovery phrase ----

const phraseFlow = { words: [], quiz: [], resolve: null, gen: 0 };

/**
 * offerPhrase shows a new recovery phrase (once), asks for 3 of its words
 * and saves its KEK in the vault. It resolves to true when saved, false
 * when the user chose "Skip for now" or closed the dialog.
 */
export function offerPhrase() {
  const dlg = $('phrase-dialog');
  if (!dlg) return Promise.resolve(false);
  if (phraseFlow.resolve) return new Promise((resolve) => { const prev = phraseFlow.resolve; phraseFlow.resolve = (v) => { prev(v); resolve(v); }; });
  return new Promise((resolve) => {
    phraseFlow.resolve = resolve;
    phraseShowStep();
    $('phrase-words').replaceChildren(h('li', { class: 'muted' }, 'Making your phrase…'));
    status('phrase-show-status', '');
    $('phrase-written').disabled = true;
    openDialog(dlg);
    const gen = ++phraseFlow.gen;
    newPhrase().then((p) => {
      if (gen !== phraseFlow.gen || !phraseFlow.resolve) return; // skipped or closed meanwhile
      phraseFlow.words = p.split(' ');
      $('phrase-words').replaceChildren(...phraseFlow.words.map((w) => h('li', {}, h('span', { class: 'phrase-word' }, w))));
      $('phrase-written').disabled = false;
      $('phrase-written').focus();
    }).catch((err) => status('phrase-show-status', err.message, 'error'));
  });
}

function phraseShowStep() {
  $('phrase-show').hidden = false;
  $('phrase-check').hidden = true;
}

function phraseDone(saved) {
  const resolve = phraseFlow.resolve;
  phraseFlow.gen++;
  phraseFlow.resolve = null;
  phraseFlow.words = [];
  phraseFlow.quiz = [];
  $('phrase-words').replaceChildren();
  $('phrase-quiz').replaceChildren();
  closeDialog($('phrase-dialog'));
  if (!saved) nudge(true);
  refresh();
  if (resolve) resolve(saved);
}

function phraseQuiz() {
  if (phraseFlow.words.length !== 12) return;
  phraseFlow.quiz = randomIndexes(3, 12);
  $('phrase-quiz').replaceChildren(...phraseFlow.quiz.map((i) => h('div', { class: 'field' },
    h('label', { for: `phrase-quiz-${i}` }, `Word ${i + 1}`),
    h('input', { id: `phrase-quiz-${i}`, type: 'text', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', required: 'required', dataset: { index: String(i) } }))));
  $('phrase-show').hidden = true;
  $('phrase-check').hidden = false;
  status('phrase-check-status', '');
  const first = $('phrase-quiz').querySelector('input');
  if (first) first.focus();
}

async function phraseConfirm(form) {
  const inputs = [...$('phrase-quiz').querySelectorAll('input')];
  for (const el of inputs) {
    const want = phraseFlow.words[Number(el.dataset.index)];
    if (el.value.trim().toLowerCase() !== want) {
      el.setAttribute('aria-invalid', 'true');
      status('phrase-check-status', `Word ${Number(el.dataset.index) + 1} does not match your phrase. Check your paper, or show the words again.`, 'error');
      el.focus();
      return;
    }
    el.removeAttribute('aria-invalid');
  }
  await busy($('phrase-confirm'), async () => {
    form.setAttribute('aria-busy', 'true');
    try {
      status('phrase-check-status', 'Saving…');
      const key = await phraseKey(phraseFlow.words.join(' '));
      ways = await vault.vaultRequest('PUT', '/ways/phrase', { derivedKey: key });
      status('phrase-check-status', '');
      status('ways-status', 'Recovery phrase saved. Keep the paper safe.', 'ok');
      phraseDone(true);
    } catch (err) {
      if (err.status === 401 && err.code !== 'wrong_key') window.location.assign('/signin');
      else status('phrase-check-status', err.code === 'unlock_cancelled' ? 'Unlock your vault to save the phrase.' : err.message, 'error');
    } finally {
      form.removeAttribute('aria-busy');
    }
  });
}

// ---- the backup key ----

let backupText = '';

/** offerBackupKey shows a new backup key and saves its KEK when the user confirms they kept it. */
export async function offerBackupKey() {
  const dlg = $('backupkey-dialog');
  if (!dlg) return;
  backupText = '';
  $('backupkey-text').textContent = 'Making your key…';
  $('backupkey-saved').checked = false;
  status('backupkey-status', '');
  openDialog(dlg);
  try {
    backupText = await newBackupKey();
    // Two lines of four groups; the text (and a copy of it) keeps every dash.
    const g = backupText.split('-');
    $('backupkey-text').replaceChildren(h('span', { class: 'bk-line' }, `${g.slice(0, 4).join('-')}-`), h('span', { class: 'bk-line' }, g.slice(4).join('-')));
  } catch (err) {
    status('backupkey-status', err.message, 'error');
  }
}

async function backupKeySave(button) {
  if (!backupText) return;
  if (!$('backupkey-saved').checked) {
    status('backupkey-status', 'Print the key or write it down first, then tick the box.', 'error');
    $('backupkey-saved').focus();
    return;
  }
  await busy(button, async () => {
    try {
      status('backupkey-status', 'Saving…');
      const key = await backupKeyKey(backupText);
      ways = await vault.vaultRequest('PUT', '/ways/backup-key', { derivedKey: key });
      backupText = '';
      $('backupkey-text').textContent = '';
      status('backupkey-status', '');
      closeDialog($('backupkey-dialog'));
      status('ways-status', 'Backup key turned on. Keep the printout safe.', 'ok');
      refresh();
    } catch (err) {
      if (err.status === 401 && err.code !== 'wrong_key') window.location.assign('/signin');
      else status('backupkey-status', err.code === 'unlock_cancelled' ? 'Unlock your vault to save the key.' : err.message, 'error');
    }
  });
}

function backupKeyPrint() {
  document.body.classList.add('print-backupkey');
  const done = () => {
    document.body.classList.remove('print-backupkey');
    window.removeEventListener('afterprint', done);
  };
  window.addEventListener('afterprint', done);
  window.print();
  setTimeout(done, 1000);
}

// ---- the "Ways back in" card ----

/** nudge marks the Vault & keys tab while the password is the only way in. */
function nudge(on) {
  const tab = $('tab-vault');
  if (tab) tab.dataset.nudge = String(on);
}

function row(name, ok, detail, action) {
  return h('li', { class: 'way', dataset: { way: name, set: String(ok) } },
    h('span', { class: 'way-mark', 'aria-hidden': 'true' }, ok ? '✓' : '✗'),
    h('span', { class: 'way-text' }, h('strong', {}, name), h('span', { class: 'muted small' }, ` — ${detail}`)),
    action || null);
}

function date(sec) {
  const n = Number(sec);
  return n > 0 ? new Date(n * 1000).toLocaleDateString() : '';
}

function render() {
  const list = $('ways-list');
  if (!list) return;
  if (!ways) {
    list.replaceChildren(h('li', { class: 'muted' }, 'Loading…'));
    return;
  }
  const st = vault.current();
  const unlocked = !st.locked;
  const phrase = wrapCount('phrase') > 0;
  const backup = wrapCount('backup-key') > 0;
  const social = ways.social && typeof ways.social === 'object' ? ways.social : null;
  const socialOn = Boolean(social) || wrapCount('social') > 0;
  const passkeys = Array.isArray(ways.passkeys) ? ways.passkeys.length : wrapCount('passkey');
  const btn = (label, action, id, extra = {}) => (unlocked ? h('button', { type: 'button', class: 'btn btn-secondary btn-sm', id, 'data-action': action, ...extra }, label) : null);
  const actions = (...b) => (unlocked ? h('span', { class: 'btn-group way-actions' }, ...b) : null);
  let socialText = 'not set up';
  if (socialOn) {
    const k = social && (social.threshold ?? social.k);
    const m = social && (Array.isArray(social.contacts) ? social.contacts.length : (social.total ?? social.m));
    socialText = k && m ? `${k} of ${m} contacts` : 'set up';
  }
  list.replaceChildren(
    row('Password', true, 'what you type to unlock'),
    row('Recovery phrase', phrase, phrase ? `set${ways.phrase && ways.phrase.setAt ? ` on ${date(ways.phrase.setAt)}` : ''}` : 'not set up',
      actions(btn(phrase ? 'Replace' : 'Set up', 'phrase-setup', 'ways-phrase-setup'),
        phrase ? btn('Remove', 'way-remove', 'ways-phrase-remove', { 'data-way': 'phrase' }) : null)),
    row('Backup key', backup, backup ? `set${ways.backupKey && ways.backupKey.setAt ? ` on ${date(ways.backupKey.setAt)}` : ''}` : 'not set up',
      actions(btn(backup ? 'Replace' : 'Create', 'backupkey-setup', 'ways-backupkey-setup'),
        backup ? btn('Remove', 'way-remove', 'ways-backupkey-remove', { 'data-way': 'backup-key' }) : null)),
    row('Trusted contacts', socialOn, socialText),
    row('Passkeys', passkeys > 0, passkeys === 1 ? '1 passkey' : passkeys ? `${passkeys} passkeys` : 'none on any device'),
  );
  const onlyPassword = !phrase && !backup && !socialOn && passkeys === 0;
  $('ways-nudge').hidden = !onlyPassword;
  nudge(onlyPassword);
}

/** refresh reloads GET /vault/ways and re-renders the card. */
export async function refresh() {
  if (!$('ways-list')) return;
  try {
    await loadWays();
    if ($('ways-status').dataset.kind === 'error') status('ways-status', '');
  } catch (err) {
    if (err.status === 401) {
      window.location.assign('/signin');
      return;
    }
    if (err.status !== 423) status('ways-status', err.message, 'error');
  }
  render();
}

async function removeWay(el) {
  const kind = el.dataset.way;
  if (kind !== 'phrase' && kind !== 'backup-key') return;
  const name = kind === 'phrase' ? 'recovery phrase' : 'backup key';
  if (!(await confirmDialog(`Remove your ${name}? It will no longer open your vault; throw away the paper it is on.`, 'Remove'))) return;
  await busy(el, async () => {
    try {
      ways = await vault.vaultRequest('DELETE', `/ways/${kind}`);
      status('ways-status', `Your ${name} was removed.`, 'ok');
    } catch (err) {
      if (err.status === 401 && err.code !== 'wrong_key') window.location.assign('/signin');
      else if (err.code !== 'unlock_cancelled') status('ways-status', err.message, 'error');
    }
  });
  refresh();
}

// ---- "Forgot password?" ----

let recoverKind = '';

async function forgotPassword() {
  const dlg = $('recover-dialog');
  if (!dlg) return;
  $('recover-choose').hidden = false;
  $('recover-form').hidden = true;
  const list = $('recover-paths');
  list.replaceChildren(h('li', { class: 'muted' }, 'Looking up your ways back in…'));
  $('recover-none').hidden = true;
  openDialog(dlg);
  let known = null;
  try {
    known = await loadWays();
  } catch {
    known = null; // offer every path; the vault answers for the ones that do not exist
  }
  const offered = paths.filter((p) => !known || typeof p.available !== 'function' || p.available(known));
  list.replaceChildren(...offered.map((p) => h('li', {},
    h('button', { type: 'button', class: 'btn btn-secondary recover-path', 'data-action': 'recover-path', dataset: { path: p.name } }, p.label),
    p.hint ? h('span', { class: 'hint' }, p.hint) : null)));
  $('recover-none').hidden = offered.length > 0;
  const first = list.querySelector('button');
  if (first) first.focus();
}

function choosePath(el) {
  const p = paths.find((x) => x.name === el.dataset.path);
  if (!p) return;
  if (p.name === 'phrase' || p.name === 'backup-key') {
    p.start();
    return;
  }
  closeDialog($('recover-dialog'));
  p.start();
}

function openRecoverForm(kind) {
  recoverKind = kind;
  const phrase = kind === 'phrase';
  $('recover-choose').hidden = true;
  $('recover-form').hidden = false;
  $('recover-form-title').textContent = phrase ? 'Use your recovery phrase' : 'Use your backup key';
  $('recover-secret-label').textContent = phrase ? 'Recovery phrase (12 words)' : 'Backup key';
  $('recover-secret-hint').textContent = phrase ? 'Separate the words with spaces; capitals do not matter.' : 'Dashes, spaces and capitals do not matter.';
  $('recover-secret').value = '';
  status('recover-status', '');
  $('recover-secret').focus();
}

async function recoverSubmit(form) {
  const secret = $('recover-secret');
  const pw = $('recover-password');
  const confirm = $('recover-password-confirm');
  for (const el of [secret, pw, confirm]) el.removeAttribute('aria-invalid');
  if (!secret.value.trim()) {
    secret.setAttribute('aria-invalid', 'true');
    status('recover-status', recoverKind === 'phrase' ? 'Enter your recovery phrase.' : 'Enter your backup key.', 'error');
    secret.focus();
    return;
  }
  const r = updateMeter(pw);
  if (!r.ok) {
    pw.setAttribute('aria-invalid', 'true');
    status('recover-status', pw.value.length < 10 ? 'Use at least 10 characters for the new password.' : `This password is too easy to guess. ${r.hints[0] || 'Make it longer.'}`, 'error');
    pw.focus();
    return;
  }
  if (pw.value !== confirm.value) {
    confirm.setAttribute('aria-invalid', 'true');
    status('recover-status', 'The new passwords do not match.', 'error');
    confirm.focus();
    return;
  }
  await busy($('recover-submit'), async () => {
    form.setAttribute('aria-busy', 'true');
    const signOutAll = $('recover-signout-all').checked;
    let stage = 'secret';
    try {
      status('recover-status', recoverKind === 'phrase' ? 'Checking your phrase…' : 'Checking your key…');
      const kek = recoverKind === 'phrase' ? await phraseKey(secret.value) : await backupKeyKey(secret.value);
      stage = 'password';
      status('recover-status', 'Deriving the new password\'s key… (a few seconds)');
      const p = await vault.params();
      const newSalt = b64encode(randomBytes(16));
      const newKey = await deriveKey(pw.value, { salt: newSalt, kdf: p.kdf });
      stage = 'reset';
      status('recover-status', 'Setting your new password…');
      const data = await vault.withChallenge('/recovery/reset', kek, { kind: recoverKind, id: '', newDerivedKey: newKey, newSalt, newKdf: p.kdf, signOutAll });
      form.reset();
      updateMeter(pw);
      status('recover-status', '');
      closeDialog($('recover-dialog'));
      vault.unlockedBy(data && data.expiresIn);
      status('vault-bar-status', 'New password set. Your vault is unlocked.', 'ok');
      if (signOutAll) status('ways-status', 'Every other way back in was removed. Set up a new recovery phrase or backup key.', 'ok');
      if (signOutAll) document.dispatchEvent(new CustomEvent(vault.waysChangedEvent));
      refresh();
    } catch (err) {
      if (stage === 'secret') {
        secret.setAttribute('aria-invalid', 'true');
        status('recover-status', err.message, 'error');
        secret.focus();
      } else if (err.code === 'wrong_key') {
        secret.setAttribute('aria-invalid', 'true');
        status('recover-status', recoverKind === 'phrase' ? 'This is not the recovery phrase of this vault.' : 'This is not the backup key of this vault.', 'error');
        secret.focus();
      } else if (err.code === 'no_such_way') {
        status('recover-status', recoverKind === 'phrase' ? 'This vault has no recovery phrase.' : 'This vault has no backup key.', 'error');
      } else if (err.status === 429 || err.code === 'unlock_backoff') {
        const s = Math.ceil((Number(err.retryAfterMs) || 1000) / 1000);
        status('recover-status', `Too many attempts, try again in ${s} s.`, 'error');
      } else if (err.status === 401) {
        window.location.assign('/signin');
      } else {
        status('recover-status', err.message, 'error');
      }
    } finally {
      form.removeAttribute('aria-busy');
    }
  });
}

// ---- start ----

let started = false;

/** start wires the card to the vault's state and loads it (call once the workspace shows). */
export function start() {
  if (started) return refresh();
  started = true;
  document.addEventListener(vault.waysChangedEvent, () => { refresh(); });
  const pd = $('phrase-dialog');
  if (pd) pd.addEventListener('close', () => { if (phraseFlow.resolve) phraseDone(false); });
  const rd = $('recover-dialog');
  if (rd) rd.addEventListener('close', () => { $('recover-secret').value = ''; $('recover-password').value = ''; $('recover-password-confirm').value = ''; $('recover-signout-all').checked = false; });
  const bd = $('backupkey-dialog');
  if (bd) bd.addEventListener('close', () => { backupText = ''; $('backupkey-text').textContent = ''; });
  vault.onChange((st, why) => {
    if (why === 'unlocked' || why === 'locked' || why === 'expired') refresh();
    else render();
  });
  return refresh();
}

export const actions = {
  'phrase-setup': () => offerPhrase(),
  'phrase-written': () => phraseQuiz(),
  'phrase-back': () => phraseShowStep(),
  'phrase-skip': () => phraseDone(false),
  'phrase-confirm': (form) => phraseConfirm(form),
  'backupkey-setup': () => offerBackupKey(),
  'way-remove': (el) => removeWay(el),
  'backupkey-print': () => backupKeyPrint(),
  'backupkey-save': (el) => backupKeySave(el),
  'backupkey-cancel': () => closeDialog($('backupkey-dialog')),
  'forgot-password': () => forgotPassword(),
  'recover-path': (el) => choosePath(el),
  'recover-back': () => forgotPassword(),
  'recover-cancel': () => closeDialog($('recover-dialog')),
  'recover-submit': (form) => recoverSubmit(form),
};
