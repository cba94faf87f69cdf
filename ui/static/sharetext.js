// sharetext.js — the plain words of the Sharing tab (sharing.js), kept free
// of the DOM so node tests can check them: what a share allows ("can see and
// change"), for how long, how many calls, its status and its end date.

/** scopes are the operations a share may allow, in display order, with their plain verbs. */
export const scopes = [
  { op: 'read', verb: 'see', label: 'See (read)' },
  { op: 'list', verb: 'list', label: 'List' },
  { op: 'write', verb: 'change', label: 'Change (write)' },
  { op: 'delete', verb: 'delete', label: 'Delete' },
];

/** durations are the offered share lengths in seconds. */
export const durations = [
  { seconds: 86400, label: '1 day' },
  { seconds: 7 * 86400, label: '7 days' },
  { seconds: 30 * 86400, label: '30 days' },
  { seconds: 90 * 86400, label: '90 days' },
];

/** namePattern is the rule for integration names (the server's). */
export const namePattern = /^[a-z][a-z0-9_-]{0,63}$/;

/** validName reports whether name is an acceptable integration name. */
export function validName(name) {
  return typeof name === 'string' && namePattern.test(name);
}

/** listWords joins words as "a", "a and b", "a, b and c". */
export function listWords(words) {
  const w = words.filter(Boolean);
  if (w.length <= 1) return w.join('');
  return `${w.slice(0, -1).join(', ')} and ${w[w.length - 1]}`;
}

/** normScope returns the known operations of scope in display order, without duplicates. */
export function normScope(scope) {
  const set = new Set(Array.isArray(scope) ? scope : []);
  return scopes.filter((s) => set.has(s.op)).map((s) => s.op);
}

/** scopeWords turns ["write","read"] into "see and change". */
export function scopeWords(scope) {
  const ops = normScope(scope);
  return listWords(scopes.filter((s) => ops.includes(s.op)).map((s) => s.verb));
}

/** durationText turns seconds into "1 day", "7 days", "12 hours" or "30 minutes". */
export function durationText(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const plural = (n, unit) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (s >= 86400 && s % 86400 === 0) return plural(s / 86400, 'day');
  if (s >= 3600 && s % 3600 === 0) return plural(s / 3600, 'hour');
  if (s >= 86400) return plural(Math.round(s / 86400), 'day');
  if (s >= 3600) return plural(Math.round(s / 3600), 'hour');
  return plural(Math.max(1, Math.round(s / 60)), 'minute');
}

/** callsLimit returns maxCalls as a positive integer, or 0 for "no limit". */
export function callsLimit(v) {
  if (v === '' || v === null || v === undefined) return 0;
  const n = Number(v);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/**
 * summary builds the share dialog's sentence, e.g. "bob@example.com can see
 * your calendar for 7 days, up to 50 calls." Missing parts read as
 * placeholders ("Someone", "HTTP API").
 */
/**
 * resourceName turns a resource id into words: "provider:anthropic" →
 * "Anthropic key", "provider:openai" → "OpenAI key"; others stay as they are.
 */
export function resourceName(resource) {
  const r = String(resource || '').trim();
  if (r.startsWith('provider:')) {
    const p = r.slice('provider:'.length);
    const names = { anthropic: 'Anthropic', openai: 'OpenAI' };
    return `${names[p] || p} key`;
  }
  return r;
}

export function summary({ who, resource, scope, expiresIn, maxCalls } = {}) {
  const person = String(who || '').trim() || 'Someone';
  const words = scopeWords(scope);
  const what = resourceName(resource) || 'HTTP API';
  if (!words) return `Choose at least one thing ${person === 'Someone' ? 'they' : person} may do.`;
  const limit = callsLimit(maxCalls);
  const calls = limit ? `, up to ${limit} call${limit === 1 ? '' : 's'}` : '';
  return `${person} can ${words} your ${what} for ${durationText(expiresIn)}${calls}.`;
}

const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** shortDate formats a Date as "7 Dec", adding the year when it differs from now's. */
export function shortDate(d, now = new Date()) {
  const base = `${d.getDate()} ${months[d.getMonth()]}`;
  return d.getFullYear() === now.getFullYear() ? base : `${base} ${d.getFullYear()}`;
}

/**
 * expiryText describes when a share ends: "until 7 Dec" while it runs,
 * "ended 7 Dec" once past. exp is Unix seconds; "" when absent.
 */
export function expiryText(exp, now = Date.now()) {
  const n = Number(exp);
  if (!Number.isFinite(n) || n <= 0) return '';
  const d = new Date(n * 1000);
  const ref = new Date(now);
  return `${d.getTime() > now ? 'until' : 'ended'} ${shortDate(d, ref)}`;
}

/** statusLabels are the plain words for a share's status. */
export const statusLabels = {
  active: 'Active',
  expired: 'Expired',
  revoked: 'Revoked',
  exhausted: 'Used up',
};

/** knownStatus returns s if it is a known share status, else "unknown". */
export function knownStatus(s) {
  return Object.prototype.hasOwnProperty.call(statusLabels, s) ? s : 'unknown';
}

/** callsText describes the calls made: "3 of 50 calls used", "No calls yet", "1 call made". */
export function callsText(calls, maxCalls) {
  const c = Math.max(0, Math.floor(Number(calls) || 0));
  const m = callsLimit(maxCalls);
  if (m) return `${c} of ${m} call${m === 1 ? '' : 's'} used`;
  if (!c) return 'No calls yet';
  return `${c} call${c === 1 ? '' : 's'} made`;
}

/** shareErrors maps the share API's error codes to plain sentences. */
export const shareErrors = {
  subject_unknown: 'Nobody with a vault has that address. Ask them to sign in and create their vault first.',
  subject_self: 'That is your own address. Share with someone else.',
  unknown_resource: 'That integration no longer exists. Reload the page and pick another one.',
  invalid_email: 'Enter a valid email address.',
  relay_unavailable: 'Sharing is not available right now: the relay cannot be reached.',
  approval_not_found: 'This request is no longer waiting: it was already approved, denied or has lapsed.',
  approval_expired: 'This request has lapsed. Ask your assistant again, or share it yourself with Share….',
  approval_exceeded: 'An approval can only give what your assistant asked for, or less.',
  no_provider_key: 'There is no such model key in your vault. Add it under Vault & keys first.',
  scope_unusable: 'A model key can only be shared with “change”: every request to the model changes something. Tick it.',
};

/** shareError returns the plain message for an API error (code, message). */
export function shareError(code, message) {
  return shareErrors[code] || String(message || 'Sharing failed.');
}

/** clip returns at most n characters of text, with "…" when cut. */
export function clip(text, n = 500) {
  const s = String(text == null ? '' : text);
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

/** callsLeftText describes a remaining budget: "37 calls left", "1 call left", "no calls left". */
export function callsLeftText(left) {
  const n = Math.max(0, Math.floor(Number(left) || 0));
  if (!n) return 'no calls left';
  return `${n} call${n === 1 ? '' : 's'} left`;
}

/**
 * sharedKeyText names a model provider key someone shares with the user,
 * from an entry of GET /vault/apikeys "shared": "Anthropic key shared by
 * alice@example.org (37 calls left, until 7 Dec)". Without a budget the
 * calls are left out; without an email the issuer's user id stands in.
 */
export function sharedKeyText(s, now = Date.now()) {
  const e = s || {};
  const who = e.issuerEmail || (e.issuerUserId ? `user ${e.issuerUserId}` : 'someone');
  const parts = [];
  if (e.remainingCalls !== undefined && e.remainingCalls !== null) parts.push(callsLeftText(e.remainingCalls));
  const exp = expiryText(e.expiresAt, now);
  if (exp) parts.push(exp);
  const what = e.provider ? resourceName(`provider:${e.provider}`) : 'Model provider key';
  return `${what} shared by ${who}${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

// ---- approvals: shares the assistant asked for (GET /vault/approvals) ----

/**
 * approvalText describes a pending request in plain words, e.g. "Your
 * assistant asks to share your calendar with bob@example.org — see and list,
 * 7 days, up to 50 calls". request is {resource, subjectEmail, scope,
 * expiresIn (seconds), maxCalls?}.
 */
export function approvalText(request) {
  const r = request || {};
  const who = String(r.subjectEmail || '').trim() || 'someone';
  const parts = [scopeWords(r.scope) || 'use', durationText(r.expiresIn)];
  const limit = callsLimit(r.maxCalls);
  if (limit) parts.push(`up to ${limit} call${limit === 1 ? '' : 's'}`);
  return `Your assistant asks to share your ${resourceName(r.resource) || 'HTTP API'} with ${who} — ${parts.join(', ')}`;
}

/**
 * approvalDurations returns the share lengths an approval may choose: the
 * offered durations shorter than the one asked, then the asked one itself,
 * as [{seconds, label}].
 */
export function approvalDurations(askedSeconds) {
  const asked = Math.max(1, Math.round(Number(askedSeconds) || 0));
  return durations.filter((d) => d.seconds < asked).concat([{ seconds: asked, label: durationText(asked) }]);
}

/**
 * approvalExceeds returns why the share values v ({scope, expiresIn,
 * maxCalls}) give more than request asked, or "" when they are the same or
 * less (the server's rule: scope a subset, no longer, no more calls; a call
 * limit may be added where none was asked).
 */
export function approvalExceeds(request, v) {
  const r = request || {};
  const asked = normScope(r.scope);
  const extra = normScope(v.scope).filter((op) => !asked.includes(op));
  if (extra.length) return `Your assistant did not ask for “${scopeWords(extra)}”. Untick it.`;
  if (Number(v.expiresIn) > Number(r.expiresIn)) return `Choose ${durationText(r.expiresIn)} or less.`;
  const limit = callsLimit(r.maxCalls);
  const got = callsLimit(v.maxCalls);
  if (limit && (!got || got > limit)) return `Allow at most ${limit} call${limit === 1 ? '' : 's'}.`;
  return '';
}

// ---- what is new (GET /api/v1/me/grants) ----

/** newCount counts the received grants not yet seen ("new": true) in a GET /api/v1/me/grants answer. */
export function newCount(grants) {
  const received = grants && Array.isArray(grants.received) ? grants.received : [];
  return received.filter((g) => g && g.new === true).length;
}

/** newBadgeText is the Sharing tab's badge: "" for none, else "1 new", "2 new"… ("99+ new" above 99). */
export function newBadgeText(count) {
  const n = Math.max(0, Math.floor(Number(count) || 0));
  if (!n) return '';
  return `${n > 99 ? '99+' : n} new`;
}
