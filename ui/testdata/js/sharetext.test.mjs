import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  approvalDurations, approvalExceeds, approvalText, callsLeftText, callsLimit, callsText, clip, durationText,
  expiryText, knownStatus, listWords, newBadgeText, newCount, normScope, resourceName, scopeWords, shareError,
  sharedKeyText, shortDate, statusLabels, summary, validName,
} from '../../static/sharetext.js';

test('integration names follow the server rule', () => {
  for (const n of ['calendar', 'a', 'notes_2', 'my-api']) assert.ok(validName(n), n);
  for (const n of ['', 'Calendar', '2cal', '-x', 'a b', 'a'.repeat(65), null]) assert.ok(!validName(n), String(n));
  assert.ok(validName('a'.repeat(64)));
});

test('scopes read as plain verbs in a fixed order', () => {
  assert.deepEqual(normScope(['delete', 'read', 'bogus', 'read']), ['read', 'delete']);
  assert.equal(scopeWords(['read']), 'see');
  assert.equal(scopeWords(['write', 'read']), 'see and change');
  assert.equal(scopeWords(['delete', 'list', 'write', 'read']), 'see, list, change and delete');
  assert.equal(scopeWords([]), '');
  assert.equal(scopeWords(undefined), '');
  assert.equal(listWords(['a', '', 'b']), 'a and b');
});

test('durations', () => {
  assert.equal(durationText(86400), '1 day');
  assert.equal(durationText(7 * 86400), '7 days');
  assert.equal(durationText(90 * 86400), '90 days');
  assert.equal(durationText(3600), '1 hour');
  assert.equal(durationText(5400), '2 hours');
  assert.equal(durationText(90), '2 minutes');
  assert.equal(durationText(0), '1 minute');
});

test('call limits', () => {
  assert.equal(callsLimit(''), 0);
  assert.equal(callsLimit('50'), 50);
  assert.equal(callsLimit(-3), 0);
  assert.equal(callsLimit(2.5), 0);
  assert.equal(callsText(3, 50), '3 of 50 calls used');
  assert.equal(callsText(0, 1), '0 of 1 call used');
  assert.equal(callsText(0), 'No calls yet');
  assert.equal(callsText(1), '1 call made');
  assert.equal(callsText(4, 0), '4 calls made');
});

test('the share summary sentence', () => {
  assert.equal(summary({ who: 'Bob', resource: 'calendar', scope: ['read'], expiresIn: 7 * 86400, maxCalls: 50 }),
    'Bob can see your calendar for 7 days, up to 50 calls.');
  assert.equal(summary({ who: 'bob@example.com', resource: 'notes', scope: ['write', 'read'], expiresIn: 86400 }),
    'bob@example.com can see and change your notes for 1 day.');
  assert.equal(summary({ who: 'ann@example.com', resource: 'x', scope: ['list'], expiresIn: 86400, maxCalls: '1' }),
    'ann@example.com can list your x for 1 day, up to 1 call.');
  assert.equal(summary({ scope: ['read'], expiresIn: 30 * 86400 }), 'Someone can see your HTTP API for 30 days.');
  assert.match(summary({ who: 'Bob', scope: [] }), /^Choose at least one thing Bob may do\.$/);
  assert.match(summary(), /^Choose at least one thing they may do\.$/);
});

test('expiry reads "until 7 Dec" or "ended …"', () => {
  const now = new Date(2026, 10, 30, 12, 0, 0).getTime();
  const dec7 = new Date(2026, 11, 7, 9, 30, 0).getTime() / 1000;
  assert.equal(expiryText(dec7, now), 'until 7 Dec');
  assert.equal(expiryText(new Date(2027, 0, 15).getTime() / 1000, now), 'until 15 Jan 2027');
  assert.equal(expiryText(new Date(2026, 10, 2).getTime() / 1000, now), 'ended 2 Nov');
  assert.equal(expiryText(0, now), '');
  assert.equal(expiryText(undefined, now), '');
  assert.equal(shortDate(new Date(2026, 4, 1), new Date(2026, 0, 1)), '1 May');
});

test('status words and errors', () => {
  assert.equal(statusLabels[knownStatus('exhausted')], 'Used up');
  assert.equal(statusLabels[knownStatus('active')], 'Active');
  assert.equal(knownStatus('weird'), 'unknown');
  assert.equal(knownStatus('toString'), 'unknown');
  assert.match(shareError('subject_unknown', 'x'), /ask them to sign in and create their vault first/i);
  assert.equal(shareError('other', 'Server says no'), 'Server says no');
  assert.equal(shareError('other'), 'Sharing failed.');
});

test('clip keeps the first 500 characters', () => {
  assert.equal(clip('abc'), 'abc');
  assert.equal(clip('x'.repeat(600)).length, 501);
  assert.ok(clip('x'.repeat(600)).endsWith('…'));
  assert.equal(clip(null), '');
});

test('resourceName words provider keys', () => {
  assert.equal(resourceName('provider:anthropic'), 'Anthropic key');
  assert.equal(resourceName('provider:openai'), 'OpenAI key');
  assert.equal(resourceName('calendar'), 'calendar');
  assert.equal(summary({ who: 'bob@example.org', resource: 'provider:anthropic', scope: ['write'], expiresIn: 7 * 86400, maxCalls: 20 }).includes('your Anthropic key'), true);
});

test('a shared model key reads "Anthropic key shared by alice@… (37 calls left, until 7 Dec)"', () => {
  const now = new Date(2026, 10, 30, 12, 0, 0).getTime();
  const exp = Math.floor(new Date(2026, 11, 7, 9, 0, 0).getTime() / 1000);
  assert.equal(sharedKeyText({ provider: 'anthropic', issuerEmail: 'alice@example.org', remainingCalls: 37, expiresAt: exp }, now),
    'Anthropic key shared by alice@example.org (37 calls left, until 7 Dec)');
  assert.equal(sharedKeyText({ provider: 'openai', issuerUserId: 'usr_1', expiresAt: exp }, now),
    'OpenAI key shared by user usr_1 (until 7 Dec)');
  assert.equal(sharedKeyText({ provider: 'anthropic', issuerEmail: 'a@b.c', remainingCalls: 1 }, now),
    'Anthropic key shared by a@b.c (1 call left)');
  assert.equal(sharedKeyText(null, now), 'Model provider key shared by someone');
  assert.equal(callsLeftText(0), 'no calls left');
  assert.equal(callsLeftText(-2), 'no calls left');
  assert.equal(callsLeftText(2), '2 calls left');
});

test('a pending approval in plain words', () => {
  assert.equal(approvalText({ resource: 'calendar', subjectEmail: 'bob@example.org', scope: ['list', 'read'], expiresIn: 7 * 86400, maxCalls: 50 }),
    'Your assistant asks to share your calendar with bob@example.org — see and list, 7 days, up to 50 calls');
  assert.equal(approvalText({ resource: 'provider:anthropic', subjectEmail: 'ann@example.org', scope: ['write'], expiresIn: 86400 }),
    'Your assistant asks to share your Anthropic key with ann@example.org — change, 1 day');
  assert.equal(approvalText(undefined), 'Your assistant asks to share your HTTP API with someone — use, 1 minute');
});

test('an approval offers only durations up to the one asked', () => {
  assert.deepEqual(approvalDurations(86400), [{ seconds: 86400, label: '1 day' }]);
  assert.deepEqual(approvalDurations(3 * 86400).map((d) => d.label), ['1 day', '3 days']);
  assert.deepEqual(approvalDurations(7 * 86400).map((d) => d.seconds), [86400, 7 * 86400]);
  assert.deepEqual(approvalDurations(365 * 86400).map((d) => d.label), ['1 day', '7 days', '30 days', '90 days', '365 days']);
});

test('an approval may narrow but not widen the request', () => {
  const asked = { scope: ['read', 'list'], expiresIn: 7 * 86400, maxCalls: 50 };
  assert.equal(approvalExceeds(asked, { scope: ['read', 'list'], expiresIn: 7 * 86400, maxCalls: 50 }), '');
  assert.equal(approvalExceeds(asked, { scope: ['read'], expiresIn: 86400, maxCalls: 1 }), '');
  assert.match(approvalExceeds(asked, { scope: ['read', 'write'], expiresIn: 86400, maxCalls: 1 }), /did not ask for “change”/);
  assert.match(approvalExceeds(asked, { scope: ['read'], expiresIn: 30 * 86400, maxCalls: 1 }), /7 days or less/);
  assert.match(approvalExceeds(asked, { scope: ['read'], expiresIn: 86400, maxCalls: 0 }), /at most 50 calls/);
  assert.match(approvalExceeds(asked, { scope: ['read'], expiresIn: 86400, maxCalls: 51 }), /at most 50 calls/);
  assert.equal(approvalExceeds({ scope: ['read'], expiresIn: 86400 }, { scope: ['read'], expiresIn: 86400, maxCalls: 5 }), '');
  assert.equal(shareError('approval_exceeded'), 'An approval can only give what your assistant asked for, or less.');
});

test('the Sharing tab badge counts received grants not yet seen', () => {
  assert.equal(newCount({ issued: [{ new: true }], received: [{ new: true }, {}, { new: 'yes' }, null, { new: true }] }), 2);
  assert.equal(newCount({ received: [] }), 0);
  assert.equal(newCount(null), 0);
  assert.equal(newCount({ received: 'x' }), 0);
  assert.equal(newBadgeText(0), '');
  assert.equal(newBadgeText(1), '1 new');
  assert.equal(newBadgeText(2), '2 new');
  assert.equal(newBadgeText(150), '99+ new');
  assert.equal(newBadgeText(-3), '');
  assert.equal(newBadgeText(undefined), '');
});
