// sharing.js — the "Sharing" panel (SPEC §7.1, §7.3, §11): the shares the
// assistant asked for ("Waiting for your approval", with Approve… and
// Deny), the HTTP APIs kept in the vault (integrations; listed without
// their secrets, added, removed), the Share dialog that grants someone
// limited use of one of them (also used, prefilled and limited to the
// request, to approve), and the lists of shares issued ("What I share",
// with Revoke) and received ("Shared with me", with Try it). The capability
// tokens and keys behind a share stay out of sight; the words come from
// sharetext.js.
import { $, busy, confirmDialog, h, status, timeEl } from './dom.js';
import {
  approvalDurations, approvalExceeds, approvalText, callsLimit, callsText, clip, durations, expiryText, knownStatus,
  normScope, scopeWords, shareError, statusLabels, summary, validName, resourceName,
} from './sharetext.js';
import * as vault from './vault.js';

let integrations = null; // [{name,type,baseUrl,authHeader,addedAt}] or null before loading
let providers = []; // model provider keys that can be shared: [{provider, ...}]
const shares = { issued: null, received: null };
let approvals = []; // pending requests of the assistant: [{id, kind, createdAt, expiresAt, request, reason?}]
let approving = null; // the approval the share dialog is open for, or null
let defaultExpiry = null; // the dialog's own duration options, kept while approving

function failed(err, statusId) {
  if (err.status === 401) window.location.assign('/signin');
  else if (err.code === 'unlock_cancelled') status(statusId, 'Unlock your vault to continue.', 'error');
  else status(statusId, err.message, 'error');
}

function lockedRow(cls, text) {
  return h('li', { class: cls },
    h('span', { class: 'muted' }, text), ' ',
    h('button', { type: 'button', class: 'btn btn-secondary btn-sm', dataset: { action: 'vault-unlock' } }, 'Unlock'));
}

// ---- integrations (HTTP APIs) ----

function integrationRow(it) {
  return h('li', { class: 'provider', dataset: { integration: it.name } },
    h('div', { class: 'provider-main' },
      h('span', { class: 'provider-name mono' }, it.name),
      h('span', { class: 'provider-detail muted small' }, [it.baseUrl, it.authHeader ? `secret sent as ${it.authHeader}` : ''].filter(Boolean).join(' · ')),
      h('span', { class: 'provider-added muted small' }, 'Added ', timeEl(it.addedAt))),
    h('div', { class: 'btn-group' },
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm btn-danger', dataset: { action: 'remove-integration', name: it.name }, 'aria-label': `Remove ${it.name}` }, 'Remove')));
}

function renderIntegrations() {
  const list = $('integration-list');
  if (!list) return;
  if (vault.current().locked) {
    list.replaceChildren(lockedRow('provider-empty', 'Unlock your vault to see your HTTP APIs.'));
  } else if (integrations === null) {
    list.replaceChildren(h('li', { class: 'provider-empty muted' }, 'Loading…'));
  } else if (!integrations.length) {
    list.replaceChildren(h('li', { class: 'provider-empty muted' }, 'No HTTP API yet. Add one below to share it.'));
  } else {
    list.replaceChildren(...integrations.map(integrationRow));
  }
  const shareable = (integrations || []).length + providers.length;
  const open = $('share-open');
  if (open) open.disabled = !shareable || vault.current().locked;
  const hint = $('share-open-hint');
  if (hint) hint.hidden = Boolean(shareable);
}

async function loadIntegrations() {
  try {
    const data = await vault.vaultRequest('GET', '/integrations');
    integrations = data && Array.isArray(data.integrations)
      ? data.integrations.filter((i) => i && typeof i.name === 'string') : [];
    status('integrations-status', '');
  } catch (err) {
    failed(err, 'integrations-status');
  }
  try { // a model provider key can be shared too, with a call budget
    const keys = await vault.vaultRequest('GET', '/apikeys');
    providers = keys && Array.isArray(keys.providers) ? keys.providers.filter((p) => p && typeof p.provider === 'string') : [];
  } catch {
    providers = [];
  }
  renderIntegrations();
}

function validURL(u) {
  try {
    const url = new URL(u);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

async function saveIntegration(form) {
  const field = (n) => form.elements.namedItem(n);
  const name = field('name').value.trim();
  const baseUrl = field('baseUrl').value.trim();
  const authHeader = field('authHeader').value.trim() || 'Authorization';
  const secret = field('authValue');
  for (const n of ['name', 'baseUrl', 'authValue']) field(n).removeAttribute('aria-invalid');
  const bad = (n, msg) => {
    field(n).setAttribute('aria-invalid', 'true');
    status('integration-status', msg, 'error');
    field(n).focus();
  };
  if (!validName(name)) return bad('name', 'Use a short name in lower case: letters, digits, - or _, starting with a letter (e.g. calendar).');
  if (!validURL(baseUrl)) return bad('baseUrl', 'Enter the base URL, starting with http:// or https://.');
  if (!secret.value) return bad('authValue', 'Enter the secret value, e.g. “Bearer …”.');
  if ((integrations || []).some((i) => i.name === name)
    && !(await confirmDialog(`Replace the HTTP API “${name}”? Shares of it keep working with the new settings.`, 'Replace'))) return undefined;
  await busy(form.querySelector('button[type=submit]'), async () => {
    status('integration-status', 'Saving…');
    try {
      const saved = await vault.vaultRequest('PUT', `/integrations/${encodeURIComponent(name)}`, { type: 'http', baseUrl, authHeader, authValue: secret.value });
      form.reset();
      // A private address is saved, but shares of it would be refused:
      // the vault says so now, in words, with what the administrator can change.
      if (saved && saved.warning && saved.warning.message) status('integration-status', saved.warning.message, 'warn');
      else status('integration-status', `“${name}” is saved. The secret is sealed in your vault.`, 'ok');
    } catch (err) {
      failed(err, 'integration-status');
    } finally {
      secret.value = '';
    }
  });
  return loadIntegrations();
}

async function removeIntegration(el) {
  const { name } = el.dataset;
  if (!(await confirmDialog(`Remove “${name}” from your vault? Shares of it stop working.`, 'Remove'))) return;
  await busy(el, async () => {
    try {
      await vault.vaultRequest('DELETE', `/integrations/${encodeURIComponent(name)}`);
      status('integrations-status', `“${name}” removed.`, 'ok');
    } catch (err) {
      failed(err, 'integrations-status');
    }
  });
  await loadIntegrations();
}

// ---- the share dialog ----

function shareValues(form) {
  const f = form.elements;
  return {
    who: f.namedItem('subjectEmail').value.trim(),
    resource: f.namedItem('resource').value,
    scope: normScope([...form.querySelectorAll('input[name=scope]:checked')].map((c) => c.value)),
    expiresIn: Number(f.namedItem('expiresIn').value) || durations[1].seconds,
    maxCalls: callsLimit(f.namedItem('maxCalls').value),
  };
}

// setApprovalMode turns the share dialog into the approval of a (resource,
// person and the ceiling of permissions, duration and calls fixed by the
// request), or back into a plain share when a is null.
function setApprovalMode(form, a) {
  const was = approving;
  approving = a;
  const f = form.elements;
  const expiry = f.namedItem('expiresIn');
  if (!defaultExpiry) defaultExpiry = [...expiry.options].map((o) => o.cloneNode(true));
  const email = f.namedItem('subjectEmail');
  const maxCalls = f.namedItem('maxCalls');
  const note = $('share-approval-note');
  $('share-title').textContent = a ? 'Approve a share' : 'Share an HTTP API';
  $('share-submit').textContent = a ? 'Approve' : 'Share';
  email.readOnly = Boolean(a);
  f.namedItem('resource').disabled = Boolean(a);
  if (!a) {
    if (!was) return;
    expiry.replaceChildren(...defaultExpiry.map((o) => o.cloneNode(true)));
    expiry.value = String(durations[1].seconds);
    maxCalls.removeAttribute('max');
    for (const c of form.querySelectorAll('input[name=scope]')) c.disabled = false;
    note.hidden = true;
    note.textContent = '';
    return;
  }
  const r = a.request;
  const asked = normScope(r.scope);
  for (const c of form.querySelectorAll('input[name=scope]')) {
    c.checked = asked.includes(c.value);
    c.disabled = !c.checked;
  }
  email.value = r.subjectEmail;
  expiry.replaceChildren(...approvalDurations(r.expiresIn).map((d) => h('option', { value: d.seconds }, d.label)));
  expiry.value = String(expiry.options[expiry.options.length - 1].value);
  const limit = callsLimit(r.maxCalls);
  maxCalls.value = limit ? String(limit) : '';
  if (limit) maxCalls.setAttribute('max', String(limit));
  else maxCalls.removeAttribute('max');
  note.hidden = false;
  note.replaceChildren('Your assistant asked for this. You can give less: untick permissions, choose a shorter time or fewer calls.',
    a.reason ? h('span', { class: 'approval-reason' }, ` It says: “${a.reason}”`) : null);
}

// scopeForResource ticks "change" (write) alone when a model provider key is
// chosen: model requests are POSTs, so that is the only permission it can
// use (the vault refuses others with scope_unusable).
function scopeForResource(form) {
  if (approving || !String(form.elements.namedItem('resource').value).startsWith('provider:')) return;
  for (const box of form.querySelectorAll('input[name=scope]')) box.checked = box.value === 'write';
}

function updateSummary() {
  const form = $('share-form');
  if (form) $('share-summary').textContent = summary(shareValues(form));
}

function openShare(el, a = null) {
  const dlg = $('share-dialog');
  const form = $('share-form');
  if (!dlg || !form) return;
  if (approving && !a) form.reset(); // leave the approval's values behind
  setApprovalMode(form, a);
  const sel = form.elements.namedItem('resource');
  const keep = a ? a.request.resource : ((el && el.dataset.resource) || sel.value);
  const options = a ? [h('option', { value: keep }, resourceName(keep))]
    : (integrations || []).map((i) => h('option', { value: i.name }, i.name))
      .concat(providers.map((p) => h('option', { value: `provider:${p.provider}` }, `My ${resourceName(`provider:${p.provider}`)}`)));
  sel.replaceChildren(...options);
  if (keep && [...sel.options].some((o) => o.value === keep)) sel.value = keep;
  scopeForResource(form);
  status('share-status', '');
  updateSummary();
  if (!dlg.open) {
    if (typeof dlg.showModal === 'function') dlg.showModal();
    else dlg.setAttribute('open', '');
  }
  form.elements.namedItem(a ? 'expiresIn' : 'subjectEmail').focus();
}

function closeShare() {
  const dlg = $('share-dialog');
  if (dlg && dlg.open) dlg.close();
}

async function submitShare(form) {
  const v = shareValues(form);
  const email = form.elements.namedItem('subjectEmail');
  email.removeAttribute('aria-invalid');
  if (!v.resource) {
    status('share-status', 'Add an HTTP API first, then share it.', 'error');
    return;
  }
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v.who)) {
    email.setAttribute('aria-invalid', 'true');
    status('share-status', shareError('invalid_email'), 'error');
    email.focus();
    return;
  }
  if (!v.scope.length) {
    status('share-status', 'Tick at least one thing they may do.', 'error');
    form.querySelector('input[name=scope]:not(:disabled)').focus();
    return;
  }
  const a = approving;
  const over = a ? approvalExceeds(a.request, v) : '';
  if (over) {
    status('share-status', over, 'error');
    return;
  }
  const body = { subjectEmail: v.who, resource: v.resource, scope: v.scope, expiresIn: v.expiresIn };
  if (v.maxCalls) body.maxCalls = v.maxCalls;
  if (a) body.approvalId = a.id;
  await busy($('share-submit'), async () => {
    status('share-status', a ? 'Approving…' : 'Sharing…');
    try {
      const data = await vault.vaultRequest('POST', '/capabilities', body);
      const sentence = summary(v);
      const later = data && data.delivered === false ? ' It reaches them the next time their vault is online.' : '';
      form.reset();
      closeShare();
      status('sharing-status', `${a ? 'Approved' : 'Shared'}. ${sentence}${later}`, 'ok');
      loadShares('issued');
      if (a) loadApprovals();
    } catch (err) {
      if (a && (err.code === 'approval_not_found' || err.code === 'approval_expired')) loadApprovals();
      if (err.code === 'subject_unknown' || err.code === 'subject_self' || err.code === 'invalid_email') {
        email.setAttribute('aria-invalid', 'true');
        email.focus();
      }
      if (err.status === 401) window.location.assign('/signin');
      else status('share-status', err.code === 'unlock_cancelled' ? 'Unlock your vault to share.' : shareError(err.code, err.message), 'error');
    }
  });
}

// ---- requests of the assistant waiting for approval ----

function approvalRow(a) {
  const line = approvalText(a.request);
  return h('li', { class: 'provider share approval', dataset: { approval: a.id } },
    h('div', { class: 'provider-main' },
      h('span', { class: 'provider-name' }, line),
      a.reason ? h('span', { class: 'provider-detail small approval-reason' }, `“${a.reason}”`) : null,
      h('span', { class: 'provider-detail muted small' }, 'Asked ', timeEl(a.createdAt))),
    h('div', { class: 'btn-group' },
      h('button', { type: 'button', class: 'btn btn-primary btn-sm', dataset: { action: 'approval-approve', id: a.id }, 'aria-haspopup': 'dialog', 'aria-label': `Approve: ${line}` }, 'Approve…'),
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm btn-danger', dataset: { action: 'approval-deny', id: a.id }, 'aria-label': `Deny: ${line}` }, 'Deny')));
}

function renderApprovals() {
  const card = $('approvals-card');
  const list = $('approvals-list');
  if (!card || !list) return;
  const show = !vault.current().locked && approvals.length > 0;
  card.hidden = !show;
  list.replaceChildren(...(show ? approvals.map(approvalRow) : []));
}

async function loadApprovals() {
  try {
    const data = await vault.vaultRequest('GET', '/approvals');
    approvals = data && Array.isArray(data.approvals)
      ? data.approvals.filter((a) => a && typeof a.id === 'string' && a.kind === 'issue_capability' && a.request
        && typeof a.request.resource === 'string' && typeof a.request.subjectEmail === 'string') : [];
    status('approvals-status', '');
  } catch (err) {
    approvals = [];
    failed(err, 'sharing-status');
  }
  renderApprovals();
}

function approve(el) {
  const a = approvals.find((x) => x.id === el.dataset.id);
  if (a) openShare(el, a);
}

async function deny(el) {
  const a = approvals.find((x) => x.id === el.dataset.id);
  let done = false;
  await busy(el, async () => {
    try {
      await vault.vaultRequest('POST', `/approvals/${encodeURIComponent(el.dataset.id)}/deny`);
      done = true;
    } catch (err) {
      if (err.code === 'approval_not_found') status('approvals-status', shareError(err.code), 'error');
      else failed(err, 'approvals-status');
    }
  });
  await loadApprovals();
  if (done) status('sharing-status', `Denied. Nothing was shared${a ? ` with ${a.request.subjectEmail}` : ''}.`, 'ok');
}

// ---- shares issued and received ----

function statusBadge(s) {
  const k = knownStatus(s);
  return h('span', { class: 'badge share-badge', dataset: { status: k } }, statusLabels[k] || 'Unknown');
}

function shareRow(c, dir) {
  const st = knownStatus(c.status);
  const words = scopeWords(c.scope) || 'use';
  const who = dir === 'issued'
    ? (c.subjectEmail || 'someone')
    : (c.issuerEmail || (c.issuerUserId ? `user ${c.issuerUserId}` : 'someone'));
  const line = dir === 'issued'
    ? `${who} can ${words} your ${resourceName(c.resource)}`
    : `You can ${words} ${who}’s ${resourceName(c.resource)}`;
  const meta = [expiryText(c.expiresAt), callsText(c.calls, c.maxCalls)];
  if (dir === 'issued' && c.delivered === false && st === 'active') meta.push('not delivered yet');
  const buttons = [];
  if (dir === 'issued' && st === 'active') {
    buttons.push(h('button', { type: 'button', class: 'btn btn-ghost btn-sm btn-danger', dataset: { action: 'share-revoke', jti: c.jti }, 'aria-label': `Revoke: ${line}` }, 'Revoke'));
  }
  if (dir === 'received' && st === 'active' && normScope(c.scope).includes('read')) {
    buttons.push(h('button', { type: 'button', class: 'btn btn-secondary btn-sm', dataset: { action: 'share-try', jti: c.jti }, 'aria-label': `Try it: read ${c.resource}` }, 'Try it'));
  }
  return h('li', { class: 'provider share', dataset: { jti: c.jti, status: st } },
    h('div', { class: 'provider-main' },
      h('span', { class: 'share-line' }, statusBadge(st), h('span', { class: 'provider-name' }, line)),
      h('span', { class: 'provider-detail muted small' }, meta.filter(Boolean).join(' · '))),
    buttons.length ? h('div', { class: 'btn-group' }, buttons) : null,
    h('div', { class: 'share-result', hidden: true }));
}

function renderShares(dir) {
  const list = $(`shares-${dir}`);
  if (!list) return;
  const items = shares[dir];
  if (vault.current().locked) {
    list.replaceChildren(lockedRow('provider-empty', 'Unlock your vault to see your shares.'));
  } else if (items === null) {
    list.replaceChildren(h('li', { class: 'provider-empty muted' }, 'Loading…'));
  } else if (!items.length) {
    list.replaceChildren(h('li', { class: 'provider-empty muted' },
      dir === 'issued' ? 'You share nothing yet.' : 'Nobody shares anything with you yet.'));
  } else {
    list.replaceChildren(...items.map((c) => shareRow(c, dir)));
  }
}

async function loadShares(dir) {
  try {
    const data = await vault.vaultRequest('GET', `/capabilities?direction=${dir}`);
    shares[dir] = data && Array.isArray(data.capabilities)
      ? data.capabilities.filter((c) => c && typeof c.jti === 'string' && typeof c.resource === 'string') : [];
    status(`shares-${dir}-status`, '');
  } catch (err) {
    failed(err, `shares-${dir}-status`);
  }
  renderShares(dir);
}

async function revoke(el) {
  const { jti } = el.dataset;
  const c = (shares.issued || []).find((x) => x.jti === jti);
  const what = c ? `${c.subjectEmail || 'them'} on ${c.resource}` : 'this share';
  if (!(await confirmDialog(`Revoke the share with ${what}? It stops working at once.`, 'Revoke'))) return;
  let done = false;
  await busy(el, async () => {
    try {
      await vault.vaultRequest('DELETE', `/capabilities/${encodeURIComponent(jti)}`);
      done = true;
    } catch (err) {
      failed(err, 'shares-issued-status');
    }
  });
  await loadShares('issued');
  if (done) {
    status('shares-issued-status', 'Share revoked.', 'ok'); // after the reload, which clears the line
    status('sharing-status', '');
  }
}

function resultBox(jti) {
  const row = [...document.querySelectorAll('#shares-received li[data-jti]')].find((li) => li.dataset.jti === jti);
  return row ? row.querySelector('.share-result') : null;
}

async function tryShare(el) {
  const { jti } = el.dataset;
  const box = resultBox(jti);
  if (!box) return;
  box.hidden = false;
  box.replaceChildren(h('p', { class: 'muted small', role: 'status' }, 'Calling…'));
  let result;
  await busy(el, async () => {
    try {
      const data = await vault.vaultRequest('POST', `/capabilities/${encodeURIComponent(jti)}/call`, { operation: 'read', path: '/' });
      const code = data && Number.isInteger(data.status) ? data.status : 0;
      const body = data && typeof data.body === 'string' ? data.body : '';
      result = [
        h('p', { class: 'small', role: 'status' }, code ? `Answer: HTTP ${code}` : 'Answer received'),
        h('pre', { class: 'share-body mono', tabindex: '0', 'aria-label': 'Answer body (first 500 characters)' }, clip(body, 500) || '(empty)')];
    } catch (err) {
      if (err.status === 401) window.location.assign('/signin');
      result = [h('p', { class: 'status', role: 'status', dataset: { kind: 'error' } }, err.message)];
    }
  });
  await loadShares('received'); // the call count changed; the list is rebuilt
  const out = resultBox(jti);
  if (out && result) {
    out.hidden = false;
    out.replaceChildren(...result);
  }
}

// ---- start ----

/** load fetches the integrations and both share lists. */
export function load() {
  if (vault.current().locked) {
    render();
    return Promise.resolve();
  }
  return Promise.all([loadApprovals(), loadIntegrations(), loadShares('issued'), loadShares('received')]);
}

function render() {
  renderApprovals();
  renderIntegrations();
  renderShares('issued');
  renderShares('received');
}

let started = false;

/** start wires the panel (once) and loads it. */
export function start() {
  if (!started) {
    started = true;
    const form = $('share-form');
    if (form) {
      form.addEventListener('input', updateSummary);
      form.addEventListener('change', (ev) => {
        if (ev.target && ev.target.name === 'resource') scopeForResource(form);
        updateSummary();
      });
    }
    vault.onChange((st, why) => {
      if (why === 'unlocked') load();
      else if (why === 'locked' || why === 'expired' || why === 'locked-answer') render();
    });
  }
  return load();
}

export const actions = {
  'save-integration': (form) => saveIntegration(form),
  'remove-integration': (el) => removeIntegration(el),
  'share-open': (el) => openShare(el),
  'share-cancel': () => closeShare(),
  share: (form) => submitShare(form),
  'share-revoke': (el) => revoke(el),
  'share-try': (el) => tryShare(el),
  'shares-refresh': (el) => busy(el, () => load()),
  'approval-approve': (el) => approve(el),
  'approval-deny': (el) => deny(el),
};
