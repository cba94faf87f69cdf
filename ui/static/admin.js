// admin.js — the admin page: users, containers (with pause/stop/wake/repair),
// invitations and the mail outbox (mail not sent yet or given up). Metadata
// only: never a mail's body.
import { get, post } from './api.js';
import { $, badge, busy, h, knownState, status, timeEl } from './dom.js';

const refreshMs = 5000;
const containerActions = [
  { op: 'pause', label: 'Pause', enabled: (s) => s === 'running' },
  { op: 'stop', label: 'Stop', enabled: (s) => s !== 'stopped' && s !== 'none' },
  { op: 'wake', label: 'Wake', enabled: (s) => s !== 'running' && s !== 'provisioning' },
  { op: 'repair', label: 'Repair', enabled: (s) => s !== 'provisioning' && s !== 'none' },
];

let timer = 0;
let loadFailed = false; // the last containers load failed (its error is showing)

function handleError(id, err) {
  if (err.status === 401) {
    window.location.assign('/signin');
    return;
  }
  status(id, err.message, 'error');
}

function cell(label, ...children) {
  return h('td', { 'data-label': label }, ...children);
}

function emptyRow(cols, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: String(cols) }, text));
}

async function loadUsers() {
  try {
    const { data } = await get('/api/v1/admin/users');
    const users = data && Array.isArray(data.users) ? data.users : [];
    const rows = users.map((u) => h('tr', {},
      cell('Email', h('span', { class: 'strong' }, u.email || '—')),
      cell('Role', u.admin ? h('span', { class: 'tag tag-admin' }, 'Admin') : h('span', { class: 'tag' }, 'User')),
      cell('Created', timeEl(u.createdAt)),
      cell('ID', h('code', { class: 'mono small' }, u.id || '—')),
    ));
    $('users-body').replaceChildren(...(rows.length ? rows : [emptyRow(4, 'No users yet.')]));
    status('users-status', '');
  } catch (err) {
    handleError('users-status', err);
  }
}

async function loadContainers() {
  try {
    const { data } = await get('/api/v1/admin/containers');
    const list = data && Array.isArray(data.containers) ? data.containers : [];
    const rows = list.map((c) => {
      const st = knownState(c.state);
      const buttons = containerActions.map((a) => h('button', {
        type: 'button',
        class: a.op === 'repair' ? 'btn btn-sm btn-secondary' : 'btn btn-sm btn-ghost',
        dataset: { action: 'container', op: a.op, userId: c.userId || '' },
        disabled: !a.enabled(st),
        'aria-label': `${a.label} agent of ${c.email || c.userId}`,
      }, a.label));
      return h('tr', { dataset: { userId: c.userId || '' } },
        cell('User', h('span', { class: 'strong' }, c.email || c.userId || '—')),
        cell('State', badge(c.state)),
        cell('Runtime', c.runtime === 'process' ? h('span', { class: 'tag tag-warn', title: 'Weaker isolation' }, 'process') : (c.runtime || '—')),
        cell('Last activity', timeEl(c.lastActivityAt)),
        cell('In state since', timeEl(c.stateSince)),
        h('td', { class: 'row-actions', 'data-label': 'Actions' }, h('div', { class: 'btn-group' }, buttons)),
      );
    });
    $('containers-body').replaceChildren(...(rows.length ? rows : [emptyRow(6, 'No containers yet.')]));
    if (loadFailed) status('containers-status', '');
    loadFailed = false;
  } catch (err) {
    loadFailed = true;
    handleError('containers-status', err);
  }
}

// mailSummary is the line above the mail table: "Mail: 2 queued, 1 failed
// (not sent; see the last error)." or "Mail: all sent.".
export function mailSummary(counts) {
  const queued = (counts && counts.queued) || 0;
  const failed = (counts && counts.failed) || 0;
  if (!queued && !failed) return 'Mail: nothing waiting, nothing failed.';
  const parts = [];
  if (queued) parts.push(`${queued} queued (will be retried)`);
  if (failed) parts.push(`${failed} failed for good (not sent)`);
  return `Mail: ${parts.join(', ')}.`;
}

async function loadMail() {
  try {
    const { data } = await get('/api/v1/admin/mail');
    const list = data && Array.isArray(data.mail) ? data.mail.filter((m) => m.state !== 'sent') : [];
    $('mail-summary').textContent = mailSummary(data && data.counts);
    const rows = list.map((m) => h('tr', {},
      cell('To', h('span', { class: 'strong' }, m.to || '—')),
      cell('Subject', m.subject || '—'),
      cell('State', h('span', { class: m.state === 'failed' ? 'tag tag-warn' : 'tag' }, m.state || '—')),
      cell('Attempts', String(m.attempts || 0)),
      cell('Last error', h('span', { class: 'small' }, m.lastError || '—')),
      cell('Queued', timeEl(m.createdAt)),
    ));
    $('mail-body').replaceChildren(...(rows.length ? rows : [emptyRow(6, 'No mail waiting or failed.')]));
    status('mail-status', '');
  } catch (err) {
    handleError('mail-status', err);
  }
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    if (!document.hidden) await loadContainers();
    schedule();
  }, refreshMs);
}

async function containerAction(button) {
  const { op, userId } = button.dataset;
  if (!userId || !containerActions.some((a) => a.op === op)) return;
  await busy(button, async () => {
    status('containers-status', `${op[0].toUpperCase()}${op.slice(1)}: working…`);
    try {
      await post(`/api/v1/admin/containers/${encodeURIComponent(userId)}/${op}`);
      status('containers-status', `${op[0].toUpperCase()}${op.slice(1)} requested.`, 'ok');
    } catch (err) {
      handleError('containers-status', err);
    }
  });
  await loadContainers();
}

async function invite(form) {
  const input = form.elements.namedItem('email');
  const email = input ? input.value.trim() : '';
  if (!email) {
    status('invite-status', 'Enter an email address.', 'error');
    return;
  }
  await busy(form.querySelector('button[type=submit]'), async () => {
    status('invite-status', 'Sending…');
    try {
      const res = await post('/api/v1/admin/users', { email });
      const existing = res && res.data && res.data.status === 'signin_link_sent';
      status('invite-status', existing
        ? `${email} already has an account; a sign-in link was sent instead.`
        : `Invitation sent to ${email}.`, 'ok');
      form.reset();
      loadUsers();
    } catch (err) {
      handleError('invite-status', err);
    }
  });
}

export const actions = {
  container: (el) => containerAction(el),
  invite: (form) => invite(form),
  refresh: (el) => busy(el, () => Promise.all([loadContainers(), loadUsers(), loadMail()])),
};

export function init() {
  loadUsers();
  loadContainers();
  loadMail();
  schedule();
}
