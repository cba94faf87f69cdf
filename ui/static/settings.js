// settings.js — the "Vault & keys" panel: model providers (SPEC §3 step 5;
// listed without their keys, added, replaced, removed), model provider keys
// other people share with the user (usable for chat without seeing the
// key; the replies then arrive whole, not word by word), the choice of the
// provider the chat uses, and the password change (the DEK is re-wrapped
// under a key derived with a fresh salt). saveProvider is shared with the
// onboarding wizard.
import { $, busy, confirmDialog, h, status, timeEl } from './dom.js';
import { deriveKey } from './kdf.js';
import { update as updateMeter } from './meter.js';
import { minScore } from './password.js';
import { knownStatus, sharedKeyText, statusLabels } from './sharetext.js';
import * as vault from './vault.js';
import { b64encode, randomBytes } from './vaultcrypto.js';

const kinds = {
  anthropic: { provider: 'anthropic', name: 'Anthropic', keyHint: 'Starts with sk-ant-. Create one in the Anthropic Console.', modelHint: 'Leave empty for the default Claude model.' },
  openai: { provider: 'openai', name: 'OpenAI', keyHint: 'Starts with sk-. Create one on platform.openai.com.', modelHint: 'Leave empty for the default model.' },
  compatible: { provider: 'openai', name: 'OpenAI-compatible server', keyHint: 'Local servers such as Ollama accept any value.', modelHint: 'Required: the model name your server knows, e.g. llama3.1. A server on this machine must listen on the address containers reach (the Docker network gateway), not 127.0.0.1.' },
};

/** providerName returns a display name for a configured provider entry. */
export function providerName(p) {
  if (p.provider === 'anthropic') return 'Anthropic';
  if (p.provider === 'openai') return p.baseUrl ? 'OpenAI-compatible server' : 'OpenAI';
  return String(p.provider || 'Unknown');
}

function kindOf(form) {
  const sel = form.elements.namedItem('kind');
  return kinds[sel && sel.value] ? sel.value : 'anthropic';
}

/** syncForm shows the base URL field only for compatible servers and adapts hints. */
export function syncForm(form) {
  const k = kindOf(form);
  const info = kinds[k];
  const baseField = form.querySelector('.field-baseurl');
  const baseInput = form.elements.namedItem('baseUrl');
  if (baseField) baseField.hidden = k !== 'compatible';
  if (baseInput) baseInput.required = k === 'compatible';
  const modelInput = form.elements.namedItem('model');
  if (modelInput) modelInput.required = k === 'compatible';
  const optional = modelInput && modelInput.labels && modelInput.labels[0] ? modelInput.labels[0].querySelector('.optional') : null;
  if (optional) optional.hidden = k === 'compatible';
  const keyHint = form.querySelector('.hint-key');
  if (keyHint) keyHint.textContent = info.keyHint;
  const modelHint = form.querySelector('.hint-model');
  if (modelHint) modelHint.textContent = info.modelHint;
}

function validURL(u) {
  try {
    const url = new URL(u);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/**
 * saveProvider PUTs the form's provider key into the vault and resolves to
 * true on success; statusId names the form's status line.
 */
export async function saveProvider(form, statusId) {
  const k = kindOf(form);
  const info = kinds[k];
  const keyInput = form.elements.namedItem('key');
  const key = keyInput.value.trim();
  const baseUrl = k === 'compatible' ? form.elements.namedItem('baseUrl').value.trim() : '';
  const model = form.elements.namedItem('model').value.trim();
  if (!key) {
    status(statusId, 'Enter the API key.', 'error');
    keyInput.focus();
    return false;
  }
  if (k === 'compatible' && !validURL(baseUrl)) {
    status(statusId, 'Enter the server’s base URL, starting with http:// or https://.', 'error');
    form.elements.namedItem('baseUrl').focus();
    return false;
  }
  if (k === 'compatible' && !model) {
    status(statusId, 'Enter the model name your server serves (for example llama3.1).', 'error');
    form.elements.namedItem('model').focus();
    return false;
  }
  const body = { key };
  if (baseUrl) body.baseUrl = baseUrl;
  if (model) body.model = model;
  let ok = false;
  await busy(form.querySelector('button[type=submit]'), async () => {
    status(statusId, 'Saving…');
    try {
      await vault.vaultRequest('PUT', `/apikeys/${info.provider}`, body);
      keyInput.value = '';
      status(statusId, `${info.name} is set up. The key is sealed in your vault.`, 'ok');
      ok = true;
    } catch (err) {
      if (err.status === 401) window.location.assign('/signin');
      else if (err.code !== 'unlock_cancelled') status(statusId, err.message, 'error');
      else status(statusId, 'Unlock your vault to save the key.', 'error');
    }
  });
  if (ok) {
    providersChanged();
    load();
  }
  return ok;
}

const changeListeners = new Set();

/** onProvidersChanged registers fn(list) called after the provider list was (re)loaded or changed. */
export function onProvidersChanged(fn) {
  changeListeners.add(fn);
}

let providers = null;
let shared = []; // provider keys shared with the user: GET /apikeys "shared"
let chatProvider = ''; // what chat uses: a provider name, "shared:<jti>" or ""

function providersChanged() {
  for (const fn of changeListeners) {
    try {
      fn(providers);
    } catch (err) {
      console.error(err);
    }
  }
}

/** configured returns the last loaded provider list (null if not loaded). */
export function configured() {
  return providers;
}

/**
 * chatReady reports whether the chat has a provider: a key of the user's
 * own, or an active shared key chosen for chat. It is true until the list
 * has loaded.
 */
export function chatReady() {
  if (providers === null) return true;
  if (providers.length) return true;
  return shared.some((s) => `shared:${s.jti}` === chatProvider && s.status === 'active');
}

function useButton(id, label) {
  if (id === chatProvider) return h('span', { class: 'badge share-badge', dataset: { status: 'active' } }, 'Used for chat');
  return h('button', { type: 'button', class: 'btn btn-secondary btn-sm', dataset: { action: 'use-provider', provider: id }, 'aria-label': `Use ${label} for chat` }, 'Use for chat');
}

function providerRow(p) {
  const name = providerName(p);
  const detail = [p.model ? `Model ${p.model}` : 'Default model', p.baseUrl || ''].filter(Boolean);
  return h('li', { class: 'provider', dataset: { provider: p.provider } },
    h('div', { class: 'provider-main' },
      h('span', { class: 'provider-name' }, name),
      h('span', { class: 'provider-detail muted small' }, detail.join(' · ')),
      h('span', { class: 'provider-added muted small' }, 'Added ', timeEl(p.addedAt))),
    h('div', { class: 'btn-group' },
      providers.length + shared.length > 1 ? useButton(p.provider, name) : null,
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm', dataset: { action: 'edit-provider', provider: p.provider, baseUrl: p.baseUrl || '', model: p.model || '' }, 'aria-label': `Replace the ${name} key` }, 'Replace key'),
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm btn-danger', dataset: { action: 'remove-provider', provider: p.provider }, 'aria-label': `Remove ${name}` }, 'Remove')));
}

function sharedRow(sh) {
  const line = sharedKeyText(sh);
  const st = knownStatus(sh.status);
  const detail = [sh.model ? `Model ${sh.model}` : 'Default model', 'replies arrive in one piece'];
  return h('li', { class: 'provider shared-provider', dataset: { jti: sh.jti, status: st } },
    h('div', { class: 'provider-main' },
      h('span', { class: 'share-line' },
        st !== 'active' ? h('span', { class: 'badge share-badge', dataset: { status: st } }, statusLabels[st] || 'Unknown') : null,
        h('span', { class: 'provider-name' }, line)),
      h('span', { class: 'provider-detail muted small' }, detail.join(' · '))),
    h('div', { class: 'btn-group' }, st === 'active' || `shared:${sh.jti}` === chatProvider ? useButton(`shared:${sh.jti}`, line) : null));
}

function renderList() {
  const list = $('provider-list');
  if (!list) return;
  const st = vault.current();
  if (st.locked) {
    list.replaceChildren(h('li', { class: 'provider-empty' },
      h('span', { class: 'muted' }, 'Unlock your vault to see your providers.'), ' ',
      h('button', { type: 'button', class: 'btn btn-secondary btn-sm', dataset: { action: 'vault-unlock' } }, 'Unlock')));
    return;
  }
  if (providers === null) {
    list.replaceChildren(h('li', { class: 'provider-empty muted' }, 'Loading…'));
    return;
  }
  if (!providers.length && !shared.length) {
    list.replaceChildren(h('li', { class: 'provider-empty muted' }, 'No provider yet. Add one below so your agent can think.'));
    return;
  }
  list.replaceChildren(...providers.map(providerRow), ...shared.map(sharedRow));
}

let loading = null;

/** load fetches the provider list (never the keys). */
export function load() {
  if (loading) return loading;
  loading = (async () => {
    if (vault.current().locked) {
      renderList();
      return;
    }
    try {
      const data = await vault.vaultRequest('GET', '/apikeys');
      providers = data && Array.isArray(data.providers) ? data.providers.filter((p) => p && typeof p.provider === 'string') : [];
      shared = data && Array.isArray(data.shared) ? data.shared.filter((x) => x && typeof x.jti === 'string' && typeof x.provider === 'string') : [];
      chatProvider = data && typeof data.defaultProvider === 'string' ? data.defaultProvider : '';
      status('providers-status', '');
      providersChanged();
    } catch (err) {
      if (err.status === 401) window.location.assign('/signin');
      else if (err.code !== 'unlock_cancelled') status('providers-status', err.message, 'error');
    } finally {
      loading = null;
    }
    renderList();
  })();
  return loading;
}

function editProvider(el) {
  const form = $('provider-form');
  const { provider, baseUrl, model } = el.dataset;
  form.elements.namedItem('kind').value = provider === 'openai' && baseUrl ? 'compatible' : provider;
  form.elements.namedItem('baseUrl').value = baseUrl || '';
  form.elements.namedItem('model').value = model || '';
  syncForm(form);
  $('provider-form-title').textContent = `Replace the ${providerName({ provider, baseUrl })} key`;
  status('provider-status', '');
  form.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  form.elements.namedItem('key').focus();
}

async function removeProvider(el) {
  const { provider } = el.dataset;
  const p = (providers || []).find((x) => x.provider === provider) || { provider };
  const name = providerName(p);
  if (!(await confirmDialog(`Remove ${name} from your vault? Your agent cannot use it afterwards.`, 'Remove'))) return;
  await busy(el, async () => {
    try {
      await vault.vaultRequest('DELETE', `/apikeys/${encodeURIComponent(provider)}`);
      status('providers-status', `${name} removed.`, 'ok');
      providers = (providers || []).filter((x) => x.provider !== provider);
      providersChanged();
    } catch (err) {
      if (err.status === 401) window.location.assign('/signin');
      else if (err.code !== 'unlock_cancelled') status('providers-status', err.message, 'error');
    }
  });
  load();
}

async function useProvider(el) {
  const { provider } = el.dataset;
  const sh = shared.find((x) => `shared:${x.jti}` === provider);
  const own = (providers || []).find((x) => x.provider === provider);
  const name = sh ? sharedKeyText(sh) : providerName(own || { provider });
  let done = '';
  await busy(el, async () => {
    try {
      await vault.vaultRequest('PUT', '/default-provider', { provider });
      chatProvider = provider;
      done = sh ? `Chat now uses the ${name}. Its replies arrive in one piece.` : `Chat now uses ${name}.`;
    } catch (err) {
      if (err.status === 401) window.location.assign('/signin');
      else if (err.code !== 'unlock_cancelled') status('providers-status', err.message, 'error');
    }
  });
  if (!done) return;
  await load(); // clears the status line
  status('providers-status', done, 'ok');
}

// ---- password change ----

async function changePassword(form) {
  const cur = $('pw-current');
  const next = $('pw-new');
  const confirm = $('pw-new-confirm');
  confirm.removeAttribute('aria-invalid');
  next.removeAttribute('aria-invalid');
  if (!cur.value) {
    status('password-status', 'Enter your current password.', 'error');
    cur.focus();
    return;
  }
  const r = updateMeter(next);
  if (!r.ok) {
    next.setAttribute('aria-invalid', 'true');
    status('password-status', r.score < minScore ? 'Choose a stronger new password.' : r.hints[0] || 'Choose a stronger new password.', 'error');
    next.focus();
    return;
  }
  if (next.value !== confirm.value) {
    confirm.setAttribute('aria-invalid', 'true');
    status('password-status', 'The new passwords do not match.', 'error');
    confirm.focus();
    return;
  }
  if (next.value === cur.value) {
    status('password-status', 'The new password is the same as the current one.', 'error');
    next.focus();
    return;
  }
  await busy($('password-submit'), async () => {
    form.setAttribute('aria-busy', 'true');
    try {
      status('password-status', 'Deriving keys… (a few seconds)');
      const p = await vault.params();
      const oldKey = await deriveKey(cur.value, p);
      const newSalt = b64encode(randomBytes(16));
      const newKey = await deriveKey(next.value, { salt: newSalt, kdf: p.kdf });
      status('password-status', 'Re-wrapping your vault key…');
      const signOutAll = $('pw-signout-all').checked;
      await vault.withChallenge('/password', oldKey, { newDerivedKey: newKey, newSalt, newKdf: p.kdf, signOutAll });
      form.reset();
      updateMeter(next);
      status('password-status', signOutAll
        ? 'Password changed, and every other way back in was removed. Use the new password from now on.'
        : 'Password changed. Use the new one from now on; your passkeys and recovery ways still work.', 'ok');
      if (signOutAll) document.dispatchEvent(new CustomEvent(vault.waysChangedEvent));
    } catch (err) {
      if (err.code === 'wrong_key') {
        status('password-status', 'Your current password is wrong.', 'error');
        cur.focus();
        cur.select();
      } else if (err.status === 429 || err.code === 'unlock_backoff') {
        const s = Math.ceil((Number(err.retryAfterMs) || 1000) / 1000);
        status('password-status', `Too many attempts, try again in ${s} s.`, 'error');
      } else if (err.status === 423 || err.code === 'vault_locked') {
        status('password-status', 'Unlock your vault first, then try again.', 'error');
        vault.promptUnlock().catch(() => {});
      } else if (err.status === 401) {
        window.location.assign('/signin');
      } else {
        status('password-status', err.message, 'error');
      }
    } finally {
      form.removeAttribute('aria-busy');
    }
  });
}

function renderKeys() {
  const st = vault.current();
  const pk = st.publicKeys;
  const row = $('vault-identity');
  if (!row) return;
  row.hidden = !pk;
  if (pk) {
    $('vault-ed25519').textContent = typeof pk.ed25519 === 'string' ? pk.ed25519 : '—';
    $('vault-x25519').textContent = typeof pk.x25519 === 'string' ? pk.x25519 : '—';
  }
}

let bound = false;

/** bindForms keeps every provider form (panel and wizard) in step with its provider select. */
export function bindForms() {
  if (bound) return;
  bound = true;
  document.addEventListener('change', (e) => {
    const t = e.target;
    if (t instanceof HTMLSelectElement && t.name === 'kind' && t.form) syncForm(t.form);
  });
  for (const f of document.querySelectorAll('form[data-provider-form]')) syncForm(f);
}

let started = false;

/** start wires the panel and loads the providers. */
export function start() {
  bindForms();
  if (!started) {
    started = true;
    vault.onChange((st, why) => {
      renderKeys();
      if (why === 'unlocked') load();
      else if (why === 'locked' || why === 'expired' || why === 'locked-answer') renderList();
    });
  }
  renderKeys();
  return load();
}

export const actions = {
  'save-provider': async (form) => {
    if (await saveProvider(form, 'provider-status')) {
      form.reset();
      syncForm(form);
      $('provider-form-title').textContent = 'Add a provider';
    }
  },
  'edit-provider': (el) => editProvider(el),
  'remove-provider': (el) => removeProvider(el),
  'use-provider': (el) => useProvider(el),
  'change-password': (form) => changePassword(form),
};
