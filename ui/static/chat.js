// chat.js — the chat panel (SPEC §3 step 6, §5.5): sessions, history, a
// composer, and assistant replies that stream in as cumulative deltas
// (each delta replaces the text so far). Assistant text is Markdown,
// rendered by markdown.js into DOM nodes; user text stays plain text.
//
// The socket goes to /api/v1/me/agent/chat through gateway.js, which
// handles the handshake and reconnects with backoff. A locked vault
// (vault_locked) opens the unlock prompt; a missing provider (no_provider),
// or a shared key chosen for chat that can no longer be used
// (shared_provider_unavailable), sends the user to the "Vault & keys" tab.
// On a shared key the reply comes as one delta (see settings.js).
import { $, ago, confirmDialog, fullTime, h, status } from './dom.js';
import { GatewayClient } from './gateway.js';
import { render as renderMarkdown } from './markdown.js';
import { chatEvent, chatURL, historyMessages, newSessionKey, sessionList, uuid } from './protocol.js';
import * as vault from './vault.js';

const historyLimit = 200;
const storeKey = 'ocmt.chat.session';

let client = null;
let sessionKey = '';
let sessions = []; // from sessions.list, plus a local entry for a new chat
let run = null; // {sessionKey, runId, el, text, seq, abort, userText, idem}
const doneRuns = new Set();
let lastFailed = null; // {sessionKey, text, idem, userEl} for Retry
let conn = { state: 'idle' };
let connTimer = 0;
let historyToken = 0;
let resyncing = null; // the resync after an unlock, while it runs

// ---- helpers ----

function saveSession(key) {
  try {
    localStorage.setItem(storeKey, key);
  } catch {
    // storage disabled
  }
}

function savedSession() {
  try {
    return localStorage.getItem(storeKey) || '';
  } catch {
    return '';
  }
}

const scroller = () => $('chat-scroll');

function nearBottom() {
  const s = scroller();
  return s.scrollHeight - s.scrollTop - s.clientHeight < 96;
}

function stick(fn) {
  const atEnd = nearBottom();
  fn();
  if (atEnd) scroller().scrollTop = scroller().scrollHeight;
}

function toBottom() {
  scroller().scrollTop = scroller().scrollHeight;
}

function setEmpty() {
  const list = $('chat-messages');
  const empty = !list.querySelector('[data-role]');
  $('chat-empty').hidden = !empty || vault.current().locked;
  $('chat-locked').hidden = !vault.current().locked;
}

// ---- messages ----

function decorateCode(root) {
  for (const pre of root.querySelectorAll('pre')) {
    const lang = pre.dataset.lang || '';
    const wrap = h('div', { class: 'code-block' },
      h('div', { class: 'code-head' },
        h('span', { class: 'code-lang' }, lang || 'code'),
        h('button', { type: 'button', class: 'btn-copy', dataset: { action: 'copy-code' }, 'aria-label': `Copy ${lang || 'code'}` }, 'Copy')));
    pre.replaceWith(wrap);
    wrap.append(pre);
  }
}

function fillAssistant(body, text) {
  const frag = renderMarkdown(text);
  const box = h('div');
  box.append(frag);
  decorateCode(box);
  body.replaceChildren(...box.childNodes);
}

function messageEl(role, text, timestamp) {
  const body = h('div', { class: 'msg-body' });
  if (role === 'user') body.textContent = text;
  else fillAssistant(body, text);
  const el = h('article', { class: `msg msg-${role}`, dataset: { role } },
    h('span', { class: 'sr-only' }, role === 'user' ? 'You said:' : 'Your agent said:'),
    body);
  if (timestamp) el.setAttribute('title', fullTime(timestamp));
  return el;
}

function appendMessage(role, text, timestamp) {
  const el = messageEl(role, text, timestamp);
  stick(() => {
    $('chat-messages').append(el);
    setEmpty();
  });
  return el;
}

function pendingAssistant() {
  const body = h('div', { class: 'msg-body' },
    h('span', { class: 'typing', role: 'img', 'aria-label': 'Your agent is thinking' }, h('span'), h('span'), h('span')));
  const el = h('article', { class: 'msg msg-assistant', dataset: { role: 'assistant', streaming: 'true' }, 'aria-busy': 'true' },
    h('span', { class: 'sr-only' }, 'Your agent said:'), body);
  stick(() => {
    $('chat-messages').append(el);
    setEmpty();
  });
  return el;
}

function noteEl(kind, text, ...extra) {
  return h('div', { class: 'msg-note', dataset: { kind } }, h('span', {}, text), ...extra);
}

let frame = 0;

// addCursor puts the blinking caret after the last text of a streaming reply.
function addCursor(body) {
  let el = body;
  while (el.lastChild && el.lastChild.nodeType === 1 && !['BR', 'HR', 'TABLE'].includes(el.lastChild.tagName)) {
    el = el.lastChild.classList.contains('code-block') ? el.lastChild.querySelector('code') || el.lastChild : el.lastChild;
  }
  el.append(h('span', { class: 'cursor', 'aria-hidden': 'true' }));
}

function scheduleRender() {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    if (!run || !run.el || !run.text) return;
    const body = run.el.querySelector('.msg-body');
    stick(() => {
      fillAssistant(body, run.text);
      addCursor(body);
    });
  });
}

function setRunning(on) {
  $('chat-stop').hidden = !on;
  $('chat-send').hidden = on;
  $('chat-form').dataset.running = String(on);
}

function finishRun(r, state, message) {
  if (!r) return;
  if (r.runId) doneRuns.add(r.runId);
  const body = r.el.querySelector('.msg-body');
  if (r.text) fillAssistant(body, r.text);
  else if (state !== 'final') body.replaceChildren();
  else fillAssistant(body, '');
  delete r.el.dataset.streaming;
  r.el.removeAttribute('aria-busy');
  if (state === 'aborted') {
    r.el.dataset.state = 'aborted';
    r.el.append(noteEl('muted', 'Stopped.'));
  } else if (state === 'error') {
    r.el.dataset.state = 'error';
    r.el.append(noteEl('error', message || 'Your agent ran into an error.'));
  } else if (!r.text) {
    r.el.append(noteEl('muted', 'No answer.'));
  }
  if (run === r) {
    run = null;
    setRunning(false);
  }
  loadSessions();
}

// ---- sending ----

function ensureListed(key, firstText) {
  if (sessions.some((s) => s.key === key)) return;
  sessions.unshift({ key, title: firstText ? firstText.slice(0, 60) : '', updatedAt: Date.now(), messageCount: 0, local: true });
  renderSessions();
}

async function send() {
  const input = $('chat-input');
  const text = input.value.trim();
  if (!text || run) return;
  if (!sessionKey) selectSession(newSessionKey(), { fresh: true });
  if (vault.current().locked) {
    try {
      await vault.promptUnlock('Unlock your vault to chat.');
      if (resyncing) await resyncing; // show the conversation before adding to it
    } catch {
      return;
    }
  }
  input.value = '';
  autosize();
  hideBanner(true);
  const userEl = appendMessage('user', text, Date.now());
  ensureListed(sessionKey, text);
  const entry = sessions.find((x) => x.key === sessionKey);
  if (entry && !entry.title) {
    entry.title = text.slice(0, 60);
    entry.updatedAt = Date.now();
    renderSessions();
  }
  if ($('chat-title').textContent === 'New chat') $('chat-title').textContent = text.slice(0, 60);
  await sendRun({ sessionKey, text, idem: uuid(), userEl });
}

async function sendRun(job) {
  const r = { sessionKey: job.sessionKey, runId: '', el: pendingAssistant(), text: '', seq: -1, abort: false };
  run = r;
  setRunning(true);
  toBottom();
  try {
    const res = await client.request('chat.send', { sessionKey: job.sessionKey, message: job.text, idempotencyKey: job.idem });
    if (!r.runId && res && typeof res.runId === 'string') r.runId = res.runId;
    if (r.abort && r.runId && run === r) stop();
    lastFailed = null;
  } catch (err) {
    if (run !== r) return; // the user moved on
    run = null;
    setRunning(false);
    r.el.remove();
    setEmpty();
    if (err.code === 'vault_locked') {
      try {
        await vault.promptUnlock('Your vault locked. Unlock it to send your message.');
        return sendRun(job);
      } catch {
        failSend(job, 'Your vault is locked, so the message was not sent.');
        return undefined;
      }
    }
    if (err.code === 'no_provider') {
      failSend(job, 'No model provider is set up yet.', 'provider');
      return undefined;
    }
    if (err.code === 'shared_provider_unavailable') {
      failSend(job, err.message || 'The shared key chosen for chat cannot be used.', 'choose');
      return undefined;
    }
    failSend(job, err.message || 'The message could not be sent.');
  }
  return undefined;
}

function failSend(job, message, kind = 'retry') {
  lastFailed = job;
  const actions = {
    provider: [h('button', { type: 'button', class: 'btn btn-primary btn-sm', dataset: { action: 'tab', tab: 'vault', focus: 'provider-kind' } }, 'Add an API key')],
    choose: [h('button', { type: 'button', class: 'btn btn-primary btn-sm', dataset: { action: 'tab', tab: 'vault' } }, 'Choose a provider')],
  }[kind] || [h('button', { type: 'button', class: 'btn btn-secondary btn-sm', dataset: { action: 'chat-retry' } }, 'Retry')];
  stick(() => job.userEl.after(noteEl('error', message, ...actions)));
  job.userEl.dataset.failed = 'true';
}

async function retry(button) {
  const job = lastFailed;
  if (!job || run || job.sessionKey !== sessionKey) return;
  lastFailed = null;
  const note = button.closest('.msg-note');
  if (note) note.remove();
  delete job.userEl.dataset.failed;
  await sendRun(job);
}

async function stop() {
  const r = run;
  if (!r) return;
  if (!r.runId) {
    r.abort = true; // abort as soon as chat.send answers
    return;
  }
  $('chat-stop').disabled = true;
  try {
    const res = await client.request('chat.abort', { sessionKey: r.sessionKey, runId: r.runId });
    if (res && res.aborted === false && run === r) finishRun(r, 'final');
  } catch (err) {
    status('chat-status', err.message, 'error');
  } finally {
    $('chat-stop').disabled = false;
  }
}

// ---- events ----

function onEvent(name, payload) {
  if (name !== 'chat') return;
  const ev = chatEvent(payload);
  if (!ev) return;
  if (ev.sessionKey && ev.sessionKey !== sessionKey) {
    if (ev.state !== 'delta') loadSessions();
    return;
  }
  if (ev.runId && doneRuns.has(ev.runId)) return;
  let r = run;
  if (!r || (r.runId && ev.runId && r.runId !== ev.runId)) {
    if (r) finishRun(r, 'final');
    // A run started elsewhere (another tab or device): show it too.
    r = { sessionKey, runId: ev.runId, el: pendingAssistant(), text: '', seq: -1, abort: false };
    run = r;
    setRunning(true);
  }
  if (!r.runId) r.runId = ev.runId;
  if (ev.state === 'delta') {
    if (ev.seq && ev.seq <= r.seq) return;
    r.seq = ev.seq;
    r.text = ev.text;
    scheduleRender();
    return;
  }
  if (ev.text) r.text = ev.text;
  finishRun(r, ev.state, ev.errorMessage);
}

// ---- sessions ----

function sessionTitle(s) {
  return s.title || (s.local ? 'New chat' : 'Untitled chat');
}

function renderSessions() {
  const list = $('session-list');
  if (!sessions.length) {
    list.replaceChildren(h('li', { class: 'session-empty muted small' }, 'No chats yet.'));
    return;
  }
  list.replaceChildren(...sessions.map((s) => {
    const current = s.key === sessionKey;
    const meta = [s.updatedAt ? ago(s.updatedAt) : 'now', s.messageCount ? `${s.messageCount} messages` : ''].filter(Boolean).join(' · ');
    return h('li', {},
      h('button', {
        type: 'button', class: 'session', dataset: { action: 'select-session', key: s.key },
        'aria-current': current ? 'true' : null,
      },
      h('span', { class: 'session-title' }, sessionTitle(s)),
      h('span', { class: 'session-meta' }, meta)));
  }));
}

async function loadSessions() {
  if (!client || vault.current().locked) return;
  try {
    const data = await client.request('sessions.list', {});
    const fresh = sessionList(data);
    const local = sessions.filter((s) => s.local && !fresh.some((f) => f.key === s.key) && s.key === sessionKey);
    sessions = [...local, ...fresh];
    renderSessions();
    const cur = sessions.find((s) => s.key === sessionKey);
    if (cur && cur.title) $('chat-title').textContent = cur.title;
  } catch (err) {
    handleError(err);
  }
}

function selectSession(key, { fresh = false } = {}) {
  if (run && run.sessionKey !== key) {
    // The reply keeps going on the server; it shows up in the history.
    run = null;
    setRunning(false);
  }
  sessionKey = key;
  saveSession(key);
  lastFailed = null;
  hideBanner(true);
  const s = sessions.find((x) => x.key === key);
  $('chat-title').textContent = s ? sessionTitle(s) : 'New chat';
  $('chat-messages').replaceChildren();
  setEmpty();
  if (fresh) ensureListed(key, '');
  renderSessions();
  closeSessionsOnPhone();
  if (!fresh) loadHistory();
}

async function loadHistory() {
  if (!client || !sessionKey || vault.current().locked) {
    setEmpty();
    return;
  }
  const token = ++historyToken;
  const key = sessionKey;
  $('chat-scroll').setAttribute('aria-busy', 'true');
  try {
    const data = await client.request('chat.history', { sessionKey: key, limit: historyLimit });
    if (token !== historyToken || key !== sessionKey) return;
    const msgs = historyMessages(data);
    const els = msgs.map((m) => messageEl(m.role, m.text, m.timestamp));
    if (run && run.sessionKey === key) els.push(run.el);
    $('chat-messages').replaceChildren(...els);
    setEmpty();
    toBottom();
  } catch (err) {
    if (token === historyToken) handleError(err);
  } finally {
    if (token === historyToken) $('chat-scroll').removeAttribute('aria-busy');
  }
}

async function sessionOp(method, button, confirmText, okText, done) {
  const menu = $('chat-menu');
  if (menu) menu.open = false;
  if (!sessionKey || !(await confirmDialog(confirmText, okText))) return;
  button.disabled = true;
  try {
    await client.request(method, { key: sessionKey });
    done();
  } catch (err) {
    handleError(err);
  } finally {
    button.disabled = false;
  }
}

function clearChat(button) {
  sessionOp('sessions.reset', button, 'Clear all messages of this chat? This cannot be undone.', 'Clear', () => {
    $('chat-messages').replaceChildren();
    setEmpty();
    loadSessions();
  });
}

function deleteChat(button) {
  const key = sessionKey;
  sessionOp('sessions.delete', button, 'Delete this chat? This cannot be undone.', 'Delete', () => {
    sessions = sessions.filter((s) => s.key !== key);
    const next = sessions[0];
    if (next) selectSession(next.key);
    else selectSession(newSessionKey(), { fresh: true });
    loadSessions();
  });
}

// On phones the session list is a drawer opened by #sessions-toggle.
function toggleSessions(open = $('sessions-toggle').getAttribute('aria-expanded') !== 'true') {
  const t = $('sessions-toggle');
  const was = t.getAttribute('aria-expanded') === 'true';
  t.setAttribute('aria-expanded', String(open));
  $('chat-sessions').dataset.open = String(open);
  if (open && !was) {
    const cur = document.querySelector('#session-list .session[aria-current="true"]') || $('new-session');
    cur.focus();
  } else if (!open && was && $('chat-sessions').contains(document.activeElement)) {
    t.focus();
  }
}

function closeSessionsOnPhone() {
  if ($('sessions-toggle').getAttribute('aria-expanded') === 'true') toggleSessions(false);
}

// closePopups closes the chat menu and the session drawer on Escape or a click elsewhere.
function closePopups(e) {
  const menu = $('chat-menu');
  if (e.type === 'keydown' && e.key !== 'Escape') return;
  if (menu && menu.open && (e.type === 'keydown' || !menu.contains(e.target))) menu.open = false;
  const drawer = $('chat-sessions');
  if (drawer.dataset.open === 'true' && (e.type === 'keydown' || (!drawer.contains(e.target) && !$('sessions-toggle').contains(e.target)))) closeSessionsOnPhone();
}

// ---- errors, banner and connection ----

// hideBanner hides the banner; keepProvider leaves the "add a provider" hint up.
function hideBanner(keepProvider = false) {
  const b = $('chat-banner');
  if (keepProvider && b.dataset.kind === 'provider') return;
  b.hidden = true;
  b.replaceChildren();
}

function banner(kind, text, ...extra) {
  const b = $('chat-banner');
  b.dataset.kind = kind;
  b.replaceChildren(h('span', {}, text), ...extra);
  b.hidden = false;
}

function handleError(err) {
  if (!err) return;
  if (err.code === 'vault_locked') {
    vault.promptUnlock().catch(() => {});
    return;
  }
  if (err.code === 'no_provider') {
    banner('provider', 'No model provider is set up yet.',
      h('button', { type: 'button', class: 'btn btn-primary btn-sm', dataset: { action: 'tab', tab: 'vault', focus: 'provider-kind' } }, 'Add an API key'));
    return;
  }
  if (err.code === 'disconnected' || err.code === 'closed' || err.code === 'signed_out') return; // the connection line says it
  status('chat-status', err.message, 'error');
}

function renderConn() {
  clearTimeout(connTimer);
  const el = $('chat-connection');
  const text = $('chat-connection-text');
  const again = $('chat-reconnect');
  let label = '';
  let showAgain = false;
  switch (conn.state) {
    case 'connecting':
      label = conn.attempt ? 'Reconnecting…' : 'Connecting…';
      break;
    case 'open':
      label = 'Connected';
      break;
    case 'closed': {
      const reason = conn.error ? conn.error.message : (conn.reason || 'The connection to your agent was lost.');
      if (conn.manual) {
        label = 'Disconnected.';
      } else if (conn.retryAt) {
        const s = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
        label = `${reason.replace(/\.?$/, '.')} Reconnecting in ${s} s…`;
        connTimer = setTimeout(renderConn, 1000);
      } else {
        label = reason;
      }
      showAgain = !conn.manual && !(conn.error && conn.error.code === 'signed_out'); // signed out: reconnecting cannot help
      break;
    }
    default:
      label = '';
  }
  el.dataset.state = conn.state;
  text.textContent = label;
  again.hidden = !showAgain;
}

function onStatus(s) {
  conn = { ...s, retryAt: s.retryInMs ? Date.now() + s.retryInMs : 0 };
  renderConn();
  if (s.state === 'open') {
    hideBannerIfConn();
    resync();
  } else if (s.state === 'closed') {
    if (run) {
      const r = run;
      run = null;
      setRunning(false);
      r.el.remove();
      setEmpty();
    }
    if (s.error && s.error.code === 'vault_locked') vault.promptUnlock().catch(() => {});
    if (s.error && s.error.code === 'unauthorized') window.location.assign('/signin');
  }
}

// resync reloads the session list and the current chat (after a connect
// or an unlock); the first time it picks the last used chat, else the
// newest, else a new one. While the vault is locked there is nothing to load.
async function resync() {
  if (vault.current().locked) {
    setEmpty();
    return;
  }
  await loadSessions();
  if (!sessionKey) {
    const saved = savedSession();
    const pick = sessions.find((x) => x.key === saved) || sessions[0];
    if (pick) selectSession(pick.key);
    else selectSession(newSessionKey(), { fresh: true });
  } else if (!run) {
    await loadHistory();
  }
}

function hideBannerIfConn() {
  const b = $('chat-banner');
  if (b.dataset.kind === 'conn') hideBanner();
}

// ---- composer ----

function autosize() {
  const input = $('chat-input');
  const lines = input.value.split('\n').length;
  input.rows = Math.max(1, Math.min(8, lines));
}

let swallowEnter = false; // the Enter we consumed must not still insert a line break

function onKey(e) {
  if (e.target.id !== 'chat-input' || e.key !== 'Enter' || e.isComposing || e.keyCode === 229) return;
  if (e.shiftKey || e.altKey) return;
  e.preventDefault();
  swallowEnter = true;
  if (run) return;
  send();
}

function onKeyUp(e) {
  if (e.key === 'Enter') swallowEnter = false;
}

function onBeforeInput(e) {
  if (swallowEnter && (e.inputType === 'insertLineBreak' || e.inputType === 'insertParagraph')) e.preventDefault();
}

async function copyCode(button) {
  const pre = button.closest('.code-block').querySelector('pre');
  const text = pre ? pre.textContent : '';
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    // No clipboard (insecure context): select the code so the user can copy it.
    const sel = window.getSelection();
    const range = document.createRange();
    range.selectNodeContents(pre);
    sel.removeAllRanges();
    sel.addRange(range);
    button.textContent = 'Selected';
  }
  setTimeout(() => { button.textContent = 'Copy'; }, 1500);
}

// ---- start ----

let started = false;

/** start connects the chat (once the vault exists); later calls only reconnect if needed. */
export function start() {
  if (started) {
    if (client && conn.state === 'closed') client.reconnectNow();
    return;
  }
  started = true;
  sessionKey = '';
  document.addEventListener('keydown', onKey);
  document.addEventListener('keyup', onKeyUp);
  document.addEventListener('keydown', closePopups);
  document.addEventListener('click', closePopups, true);
  $('chat-input').addEventListener('beforeinput', onBeforeInput);
  $('chat-input').addEventListener('input', autosize);
  client = new GatewayClient(chatURL(), { onEvent, onStatus });
  client.connect();
  vault.onChange((st, why) => {
    if (why === 'locked' || why === 'expired' || why === 'locked-answer') {
      // Locked: take decrypted content off the screen.
      if (run) finishRun(run, 'aborted');
      $('chat-messages').replaceChildren();
      sessions = sessions.filter((x) => x.local);
      $('session-list').replaceChildren(h('li', { class: 'session-empty muted small' }, 'Unlock your vault to see your chats.'));
      $('chat-title').textContent = 'Vault locked';
      setEmpty();
    } else if (why === 'unlocked') {
      setEmpty();
      if (conn.state === 'closed') client.reconnectNow();
      else if (conn.state === 'open') {
        resyncing = resync().finally(() => { resyncing = null; });
      }
    }
  });
  window.addEventListener('online', () => client.reconnectNow());
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && conn.state === 'closed' && !conn.manual) client.reconnectNow();
  });
  setEmpty();
}

/** providerHint shows (or hides) the "add a provider" banner when none is configured. */
export function providerHint(missing) {
  const b = $('chat-banner');
  if (missing) {
    banner('provider', 'Add a model provider so your agent can answer.',
      h('button', { type: 'button', class: 'btn btn-primary btn-sm', dataset: { action: 'tab', tab: 'vault', focus: 'provider-kind' } }, 'Add an API key'));
  } else if (b.dataset.kind === 'provider') {
    hideBanner();
  }
}

/** focusInput puts the cursor into the composer. */
export function focusInput() {
  const input = $('chat-input');
  if (input) input.focus();
}

export const actions = {
  'chat-send': () => send(),
  'chat-stop': () => stop(),
  'chat-retry': (el) => retry(el),
  'chat-reconnect': () => client && client.reconnectNow(),
  'new-session': () => {
    selectSession(newSessionKey(), { fresh: true });
    focusInput();
  },
  'select-session': (el) => {
    if (el.dataset.key && el.dataset.key !== sessionKey) selectSession(el.dataset.key);
    else closeSessionsOnPhone();
  },
  'chat-clear': (el) => clearChat(el),
  'chat-delete': (el) => deleteChat(el),
  'toggle-sessions': () => toggleSessions(),
  'copy-code': (el) => copyCode(el),
};
