// workspace.js — what "My agent" shows once the container runs: the vault
// bar, the onboarding wizard while the vault is new, and the Chat /
// "Vault & keys" / "Sharing" tabs (Sharing loads when first shown; showing
// it marks received shares seen, which clears its "new" badge).
// agent.js calls containerState on every poll.
import { $ } from './dom.js';
import * as chat from './chat.js';
import { bind as bindMeters } from './meter.js';
import * as notices from './notices.js';
import * as onboarding from './onboarding.js';
import * as recovery from './recovery.js';
import * as passkey from './passkey.js';
import * as settings from './settings.js';
import * as sharing from './sharing.js';
import * as social from './social.js';
import * as vault from './vault.js';
import * as vaultbackup from './vaultbackup.js';

const tabs = ['chat', 'vault', 'sharing'];
let sharingOn = false;
let started = false;
let prompted = false; // the unlock prompt was shown for the initial locked state
let workspaceOn = false;

/** containerState tells the workspace the container's state; it starts once the container runs. */
export function containerState(state) {
  if (state === 'running' && !started) {
    started = true;
    start();
  }
  const card = $('agent-card');
  if (card) card.dataset.compact = String(started && state === 'running');
}

function start() {
  $('vault-app').hidden = false;
  bindMeters();
  settings.bindForms();
  onboarding.setFinish(() => {
    showWorkspace(true);
    selectTab('chat');
    chat.focusInput();
  });
  notices.start(); // the Sharing tab's "new" badge
  vault.onChange(update);
  passkey.start();
  settings.onProvidersChanged(() => chat.providerHint(!settings.chatReady()));
  const tablist = document.querySelector('[role="tablist"]');
  if (tablist) tablist.addEventListener('keydown', onTabKey);
  window.addEventListener('hashchange', () => {
    const t = location.hash.slice(1);
    if (tabs.includes(t)) selectTab(t);
  });
  vaultbackup.start(); // the backup card, and the restore offer while the vault is new
  vault.start();
}

function update(st, why) {
  $('vault-loading').hidden = st.known || Boolean(st.error);
  const err = $('vault-error');
  err.hidden = !st.error || st.known;
  if (st.error && !st.known) $('vault-error-text').textContent = `Cannot reach your vault: ${st.error}`;
  if (!st.known) return;

  const step = onboarding.wanted(st);
  if (step) {
    onboarding.show(step);
    showWorkspace(false);
    return;
  }
  onboarding.show(0);
  showWorkspace(true);
  if (why === 'status' && st.locked && !prompted) {
    prompted = true;
    vault.promptUnlock().catch(() => {});
  }
}

function showWorkspace(on) {
  $('workspace').hidden = !on;
  if (!on || workspaceOn) return;
  workspaceOn = true;
  const t = location.hash.slice(1);
  selectTab(tabs.includes(t) ? t : 'chat');
  chat.start();
  settings.start();
  recovery.start();
  social.start();
}

/** selectTab shows tab name ("chat", "vault" or "sharing"). */
export function selectTab(name, focusTab = false) {
  for (const t of tabs) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
    if (on && focusTab) tab.focus();
  }
  if (name === 'sharing') {
    notices.markSeen(); // the tab shows what was shared: nothing is new any more
    if (!sharingOn) {
      sharingOn = true;
      sharing.start();
    } else {
      sharing.load(); // shares change elsewhere (revoked, used up): show them fresh
    }
  }
  if (location.hash !== `#${name}` && history.replaceState) history.replaceState(null, '', `#${name}`);
}

function onTabKey(e) {
  const i = tabs.findIndex((t) => $(`tab-${t}`) === document.activeElement);
  if (i < 0) return;
  let j = -1;
  if (e.key === 'ArrowRight') j = (i + 1) % tabs.length;
  else if (e.key === 'ArrowLeft') j = (i + tabs.length - 1) % tabs.length;
  else if (e.key === 'Home') j = 0;
  else if (e.key === 'End') j = tabs.length - 1;
  if (j < 0) return;
  e.preventDefault();
  selectTab(tabs[j], true);
}

export const actions = {
  ...vault.actions,
  ...onboarding.actions,
  ...settings.actions,
  ...recovery.actions,
  ...passkey.actions,
  ...social.actions,
  ...sharing.actions,
  ...chat.actions,
  ...vaultbackup.actions,
  tab: (el) => {
    const name = el.dataset.tab;
    if (!tabs.includes(name)) return;
    if ($('workspace').hidden) showWorkspace(true);
    selectTab(name);
    const target = el.dataset.focus && $(el.dataset.focus);
    if (target) {
      target.scrollIntoView({ block: 'center', behavior: 'smooth' });
      target.focus({ preventScroll: true });
    }
  },
};
