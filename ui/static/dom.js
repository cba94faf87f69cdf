// dom.js — tiny DOM helpers. Elements are built with createElement and
// textContent only (never HTML strings; the CSP requires Trusted Types).

/**
 * h creates an element. attrs: "class" sets className, "dataset" an object of
 * data-* values, "hidden"/"disabled" booleans, anything else setAttribute
 * (on* handlers and style are refused). children: strings become text nodes,
 * null/undefined/false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (/^on/i.test(k) || k === 'style') throw new Error(`h: attribute ${k} not allowed`);
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'hidden' || k === 'disabled') el[k] = Boolean(v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** $ returns the element with id, or null. */
export const $ = (id) => document.getElementById(id);

/** setText sets the text of the element with id (if present). */
export function setText(id, text) {
  const el = $(id);
  if (el) el.textContent = text == null ? '' : String(text);
}

/** show toggles the hidden property of el (an element or id). */
export function show(el, visible) {
  const node = typeof el === 'string' ? $(el) : el;
  if (node) node.hidden = !visible;
}

/** status writes a message into a role=status element; kind: "ok" | "error" | "". */
export function status(id, message, kind = '') {
  const el = $(id);
  if (!el) return;
  el.textContent = message || '';
  el.dataset.kind = kind;
}

/** toDate parses an RFC 3339 string or a Unix time (seconds or ms); null if absent/invalid. */
export function toDate(v) {
  if (v === undefined || v === null || v === '' || v === 0) return null;
  let d;
  if (typeof v === 'number') d = new Date(v < 1e12 ? v * 1000 : v);
  else d = new Date(v);
  return Number.isNaN(d.getTime()) || d.getFullYear() < 1971 ? null : d;
}

const rtf = typeof Intl !== 'undefined' && Intl.RelativeTimeFormat
  ? new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }) : null;

/** ago formats v as "3 minutes ago" (or "—" when absent). */
export function ago(v, now = Date.now()) {
  const d = toDate(v);
  if (!d) return '—';
  const s = Math.round((d.getTime() - now) / 1000);
  const abs = Math.abs(s);
  const units = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60]];
  if (abs < 45) return rtf ? rtf.format(0, 'second') : 'just now';
  for (const [unit, secs] of units) {
    if (abs >= secs) {
      const n = Math.round(s / secs);
      return rtf ? rtf.format(n, unit) : `${Math.abs(n)} ${unit}${Math.abs(n) === 1 ? '' : 's'} ${n < 0 ? 'ago' : 'from now'}`;
    }
  }
  const n = Math.round(s / 60) || (s < 0 ? -1 : 1);
  return rtf ? rtf.format(n, 'minute') : `${Math.abs(n)} minutes ${n < 0 ? 'ago' : 'from now'}`;
}

/** fullTime formats v as a local date and time (or "" when absent). */
export function fullTime(v) {
  const d = toDate(v);
  return d ? d.toLocaleString() : '';
}

/** timeEl returns a <time> showing ago(v) with the full time as tooltip. */
export function timeEl(v) {
  const d = toDate(v);
  if (!d) return document.createTextNode('—');
  return h('time', { datetime: d.toISOString(), title: d.toLocaleString() }, ago(v));
}

/** setTime fills the element with id with timeEl(v). */
export function setTime(id, v) {
  const el = $(id);
  if (el) el.replaceChildren(timeEl(v));
}

/** stateLabels are the human texts of container states. */
export const stateLabels = {
  none: 'Not created',
  provisioning: 'Provisioning',
  running: 'Running',
  paused: 'Paused',
  stopped: 'Stopped',
  error: 'Error',
  loading: 'Loading…',
};

/** knownState returns s if it is a known container state, else "unknown". */
export function knownState(s) {
  return Object.prototype.hasOwnProperty.call(stateLabels, s) && s !== 'loading' ? s : 'unknown';
}

/** badge returns a state badge element for state s. */
export function badge(s) {
  const k = knownState(s);
  return h('span', { class: 'badge', dataset: { state: k } }, stateLabels[k] || String(s || 'Unknown'));
}

/** busy disables el while promise runs and returns the promise's result. */
export async function busy(el, fn) {
  if (el && el.disabled) return undefined;
  if (el) { el.disabled = true; el.setAttribute('aria-busy', 'true'); }
  try {
    return await fn();
  } finally {
    if (el) { el.disabled = false; el.removeAttribute('aria-busy'); }
  }
}

/**
 * confirmDialog asks a yes/no question in the page's styled
 * <dialog id="confirm-dialog"> (never the browser's own dialog). It resolves
 * true when the user presses the confirm button (labelled okText), false on
 * Cancel or Escape. A dialog already open is answered "no" first.
 */
export function confirmDialog(message, okText = 'OK') {
  const dlg = document.getElementById('confirm-dialog');
  if (!dlg || typeof dlg.showModal !== 'function') return Promise.resolve(false);
  if (dlg.open) dlg.close('cancel');
  document.getElementById('confirm-message').textContent = message;
  const ok = document.getElementById('confirm-ok');
  ok.textContent = okText;
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
    document.getElementById('confirm-cancel').focus();
  });
}
