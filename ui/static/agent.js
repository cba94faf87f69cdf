// agent.js — the "My agent" page: shows the caller's container and its
// provisioning progress, polling GET /api/v1/me/agent (700 ms while
// provisioning, else 5 s). Provisioning starts by itself on first load when
// there is no container yet (SPEC §3 step 3). Once the container runs,
// workspace.js takes over below the card: vault, onboarding and chat.
import { get, post, reachabilityEvent } from './api.js';
import { $, busy, fullTime, knownState, setText, setTime, show, stateLabels, status } from './dom.js';
import { actions as workspaceActions, containerState } from './workspace.js';

const fastPollMs = 700;
const slowPollMs = 5000;
const offlinePollMs = 3000;
const phases = ['image', 'create', 'start', 'ready'];

const headlines = {
  none: ['You do not have an agent yet.', 'Create it to get your own isolated agent with an encrypted vault.'],
  provisioning: ['Setting up your agent…', 'The first start can take a minute while the image is prepared.'],
  running: ['Your agent is running', ''],
  paused: ['Your agent is paused', 'It was paused to save resources and wakes up when you use it.'],
  stopped: ['Your agent is stopped', 'Wake it to continue where you left off.'],
  error: ['Your agent ran into a problem', ''],
  unknown: ['Your agent is in an unexpected state', ''],
  offline: ["Can't reach the server", 'Your agent may still be running. This page updates when the server answers again.'],
};

let timer = 0;
let autoProvisioned = false;
let inflight = false;

function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(refresh, ms);
}

async function refresh() {
  if (inflight) return;
  inflight = true;
  let next = slowPollMs;
  try {
    const { data } = await get('/api/v1/me/agent');
    const info = data && typeof data === 'object' ? data : {};
    render(info);
    if (info.state === 'provisioning') next = fastPollMs;
    if (info.state === 'none' && !autoProvisioned) {
      autoProvisioned = true;
      inflight = false;
      await provision($('agent-provision'), 'Creating your agent…');
      return;
    }
    status('agent-status', '');
  } catch (err) {
    if (err.status === 401) {
      window.location.assign('/signin');
      return;
    }
    if (err.status === 0) {
      renderOffline();
      status('agent-status', '');
      next = offlinePollMs;
    } else {
      status('agent-status', err.message, 'error');
    }
  } finally {
    inflight = false;
  }
  schedule(next);
}

// renderOffline shows that the server cannot be reached: no state is
// claimed (not "Running"), and nothing is offered that needs the server.
function renderOffline() {
  const el = $('agent-state');
  el.dataset.state = 'offline';
  el.textContent = 'Offline';
  const [headline, subline] = headlines.offline;
  setText('agent-headline', headline);
  setText('agent-subline', subline);
  show('agent-subline', true);
  show('agent-provision', false);
  show('agent-wake', false);
  renderProgress(null);
}

function render(info) {
  const state = knownState(info.state);
  const el = $('agent-state');
  el.dataset.state = state;
  el.textContent = stateLabels[state] || String(info.state || 'Unknown');

  const [headline, subline] = headlines[state] || headlines.unknown;
  setText('agent-headline', headline);
  setText('agent-subline', subline);
  show('agent-subline', Boolean(subline));

  show('runtime-warning', info.runtime === 'process');
  show('agent-details', state !== 'none');
  setText('agent-runtime', info.runtime === 'docker' ? 'Docker container' : info.runtime === 'process' ? 'Process (weaker isolation)' : (info.runtime || '—'));
  show('agent-image-row', Boolean(info.image));
  setText('agent-image', info.image || '');
  setTime('agent-activity', info.lastActivityAt);
  setTime('agent-since', info.stateSince);
  show('agent-created-row', Boolean(info.createdAt));
  setText('agent-created', fullTime(info.createdAt));

  renderProgress(state === 'provisioning' ? (info.progress || {}) : null);

  const err = $('agent-error');
  if (state === 'error') {
    err.textContent = info.error || 'The container failed. An administrator can repair it.';
    err.hidden = false;
  } else {
    err.hidden = true;
    err.textContent = '';
  }

  show('agent-provision', state === 'none');
  show('agent-wake', state === 'paused' || state === 'stopped');
  containerState(state);
}

function renderProgress(progress) {
  show('agent-provisioning', progress !== null);
  if (progress === null) return;
  const current = phases.indexOf(progress.phase);
  for (const li of $('agent-steps').children) {
    const i = phases.indexOf(li.dataset.phase);
    let st = 'todo';
    if (current >= 0 && i < current) st = 'done';
    else if (i === current) st = 'current';
    li.dataset.status = st;
    if (st === 'current') li.setAttribute('aria-current', 'step');
    else li.removeAttribute('aria-current');
  }
  const pct = Math.max(0, Math.min(100, Number(progress.percent) || 0));
  const bar = $('agent-progress');
  bar.value = pct;
  bar.textContent = `${Math.round(pct)}%`;
  setText('agent-phase-message', progress.message || (current >= 0 ? '' : 'Waiting to start…'));
}

async function provision(button, message) {
  await busy(button, async () => {
    status('agent-status', message);
    try {
      await post('/api/v1/me/agent');
      status('agent-status', '');
    } catch (err) {
      if (err.status === 401) {
        window.location.assign('/signin');
        return;
      }
      status('agent-status', err.message, 'error');
    }
  });
  schedule(0);
}

export const actions = {
  ...workspaceActions,
  provision: (el) => provision(el, 'Creating your agent…'),
  wake: (el) => provision(el, 'Waking your agent…'),
};

export function init() {
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) schedule(0);
  });
  // Another request found the server gone or back: show it now.
  document.addEventListener(reachabilityEvent, (e) => {
    if (!e.detail.reachable) renderOffline();
    schedule(0);
  });
  refresh();
}
