// vaultbackup.js — encrypted vault backup (issue 10; SPEC §6): the
// "Encrypted backup" card in "Vault & keys" (back up now, when the last
// backup was taken) and, while the vault is not created yet, the offer in
// the first onboarding step to restore a backup instead (a new container
// after the old one's data was lost).
//
// The management role copies the sealed vault file out of the user's
// container and keeps the newest few (ciphertext: it cannot open them);
// restoring puts one back into an empty vault, which then opens with the
// password or any other way back in the backup had.
//
//   POST /api/v1/me/vault/backups → {id, sizeBytes, sha256, ed25519, createdAt}
//   GET  /api/v1/me/vault/backups → {backups: [...newest first], keep}
//   POST /api/v1/me/vault/restore {id} → 204
import { get, post } from './api.js';
import { $, ago, busy, fullTime, h, status, timeEl } from './dom.js';
import * as vault from './vault.js';

const listPath = '/api/v1/me/vault/backups';
const restorePath = '/api/v1/me/vault/restore';

let backups = [];
let keep = 0;
let loaded = false;

/** sizeText formats n bytes as "620 bytes", "12 KiB" or "1.5 MiB". */
export function sizeText(n) {
  const b = Number(n) || 0;
  if (b < 1024) return `${b} bytes`;
  if (b < 1024 * 1024) return `${Math.round(b / 1024)} KiB`;
  return `${(b / (1024 * 1024)).toFixed(1)} MiB`;
}

/** errorText turns an API error of these routes into plain words. */
export function errorText(err) {
  switch (err && err.code) {
    case 'vault_not_initialized': return 'There is no vault to back up yet.';
    case 'already_initialized': return 'Your agent already has a vault. A backup can only be restored into a new, empty one.';
    case 'backup_too_large': return err.message;
    case 'backup_wrong_user': return 'This backup belongs to someone else.';
    case 'invalid_backup': return 'The backup could not be read.';
    case 'not_found': return 'That backup no longer exists. Refresh and pick another.';
    case 'rate_limited': return 'Too many backups in a short time. Wait a minute and try again.';
    default: return (err && err.message) || 'Something went wrong.';
  }
}

function render() {
  const st = vault.current();
  const last = backups[0];
  const lastEl = $('backup-last');
  if (lastEl) lastEl.replaceChildren(last ? timeEl(last.createdAt) : document.createTextNode(loaded ? 'never' : '—'));
  const kept = $('backup-kept');
  if (kept) kept.textContent = keep ? String(keep) : 'a few';

  const offer = $('restore-offer');
  if (!offer) return;
  offer.hidden = !(st.known && !st.initialized && backups.length > 0);
  const sel = $('restore-choice');
  if (!sel || offer.hidden) return;
  const chosen = sel.value;
  sel.replaceChildren(...backups.map((b) => h('option', { value: String(b.id) },
    `${fullTime(b.createdAt)} (${ago(b.createdAt)}), ${sizeText(b.sizeBytes)}`)));
  if (chosen && backups.some((b) => b.id === chosen)) sel.value = chosen;
}

/** latest returns the newest backup ({id, sizeBytes, sha256, ed25519, createdAt}) or null (none, or not loaded yet). */
export function latest() {
  return backups[0] || null;
}

/** load fetches the list of backups and renders the card and the offer. */
export async function load() {
  try {
    const { data } = await get(listPath);
    backups = data && Array.isArray(data.backups) ? data.backups : [];
    keep = data && Number(data.keep) > 0 ? Number(data.keep) : 0;
    loaded = true;
  } catch (err) {
    if (err.status === 401) window.location.assign('/signin');
    else status('backup-status', errorText(err), 'error');
  }
  render();
}

async function backupNow(el) {
  await busy(el, async () => {
    status('backup-status', 'Backing up…');
    try {
      const { data } = await post(listPath);
      status('backup-status', `Backed up (${sizeText(data && data.sizeBytes)}, encrypted).`, 'ok');
      await load();
    } catch (err) {
      if (err.status === 401) window.location.assign('/signin');
      else status('backup-status', errorText(err), 'error');
    }
  });
}

async function restore(form) {
  const sel = form.elements.namedItem('backup');
  const id = sel ? sel.value : '';
  if (!id) {
    status('restore-status', 'Pick a backup.', 'error');
    return;
  }
  await busy($('restore-submit'), async () => {
    form.setAttribute('aria-busy', 'true');
    status('restore-status', 'Restoring…');
    try {
      await post(restorePath, { id });
      status('restore-status', 'Restored. Unlock it with your password or another way back in.', 'ok');
      await vault.refresh(); // initialized and locked now: the workspace takes over and asks to unlock
    } catch (err) {
      if (err.status === 401) window.location.assign('/signin');
      else {
        status('restore-status', errorText(err), 'error');
        if (err.code === 'already_initialized') vault.refresh();
      }
    } finally {
      form.removeAttribute('aria-busy');
    }
  });
}

let started = false;

/** start loads the backups once and re-renders when the vault's state changes. */
export function start() {
  if (started) return;
  started = true;
  vault.onChange(() => render());
  load();
}

export const actions = {
  'vault-backup': (el) => backupNow(el),
  'vault-restore': (form) => restore(form),
};
