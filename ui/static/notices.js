// notices.js — what the management role tells the user about shares
// received: the "2 new" badge on the Sharing tab (received grants not yet
// seen; opening the tab marks them seen) and the "Email me when someone
// shares with me" setting (GET/PUT /api/v1/me/settings).
import { get, post, put } from './api.js';
import { $, status } from './dom.js';
import { newBadgeText, newCount } from './sharetext.js';

let queue = Promise.resolve(); // badge requests run one after another, in order

function renderBadge(count) {
  const b = $('sharing-new');
  if (!b) return;
  const text = newBadgeText(count);
  b.textContent = text;
  b.hidden = !text;
}

async function loadBadge() {
  try {
    const { data } = await get('/api/v1/me/grants');
    renderBadge(newCount(data));
  } catch {
    // The badge is a hint; the Sharing tab lists everything anyway.
  }
}

/** refresh reloads the badge. */
export function refresh() {
  queue = queue.then(loadBadge);
  return queue;
}

/** markSeen records that the user has seen what was shared with them, then reloads the badge. */
export function markSeen() {
  queue = queue.then(async () => {
    try {
      await post('/api/v1/me/grants/seen');
    } catch {
      // Still new next time; nothing else depends on it.
    }
  }).then(loadBadge);
  return queue;
}

async function loadSetting() {
  const box = $('share-mail');
  if (!box) return;
  try {
    const { data } = await get('/api/v1/me/settings');
    box.checked = Boolean(data && data.shareMail);
    box.disabled = false;
  } catch (err) {
    status('share-mail-status', err.message, 'error');
  }
}

async function saveSetting() {
  const box = $('share-mail');
  const on = box.checked;
  box.disabled = true;
  try {
    const { data } = await put('/api/v1/me/settings', { shareMail: on });
    box.checked = Boolean(data && data.shareMail);
    status('share-mail-status', box.checked ? 'You will get a mail when someone shares with you.' : 'No more mails about shares.', 'ok');
  } catch (err) {
    box.checked = !on;
    if (err.status === 401) window.location.assign('/signin');
    status('share-mail-status', err.message, 'error');
  } finally {
    box.disabled = false;
  }
}

let started = false;

/** start loads the badge and the mail setting (once). */
export function start() {
  if (started) return;
  started = true;
  const box = $('share-mail');
  if (box) box.addEventListener('change', saveSetting);
  refresh();
  loadSetting();
}
