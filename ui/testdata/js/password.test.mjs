import assert from 'node:assert/strict';
import { test } from 'node:test';

import { isCommon, labels, minLength, minScore, strength } from '../../static/password.js';

test('empty password', () => {
  assert.deepEqual(strength(''), { score: 0, label: '', ok: false, bits: 0, hints: [] });
});

test('the vault requires 10 characters and "Fair"', () => {
  assert.equal(minLength, 10);
  assert.equal(labels[minScore], 'Fair');
  const short = strength('Kx9!mQ2#');
  assert.equal(short.ok, false);
  assert.ok(short.score <= 1);
  assert.match(short.hints.join(' '), /at least 10 characters \(2 more\)/);
  assert.equal(strength('Kx9!mQ2#vL').ok, true);
});

test('common passwords are very weak, even dressed up', () => {
  for (const pw of ['password', 'password123', 'P@ssw0rd!!', 'Summer2024!', 'qwertyuiop', '1234567890', 'iloveyou99']) {
    const r = strength(pw);
    assert.equal(r.score, 0, pw);
    assert.equal(r.ok, false, pw);
  }
  assert.ok(isCommon('Dragon2024'));
  assert.ok(!isCommon('Lisbon tram 28 at dawn'));
});

test('repeats and sequences count little', () => {
  for (const pw of ['aaaaaaaaaaaa', 'abcdefghijkl', 'hellohellohello', '0123456789']) {
    const r = strength(pw);
    assert.ok(r.score <= 1, `${pw}: ${r.score}`);
    assert.equal(r.ok, false, pw);
  }
});

test('longer and more varied is stronger', () => {
  const a = strength('xkqpmvbzrt'); // 10 random lowercase
  const b = strength('xkqpmvbzrtWq7');
  const c = strength('Lisbon tram 28 at dawn');
  assert.equal(a.label, 'Fair');
  assert.ok(a.ok);
  assert.ok(b.score >= a.score && b.bits > a.bits);
  assert.equal(c.label, 'Strong');
  assert.deepEqual(c.hints, []);
});

test('personal words are penalized', () => {
  const r = strength('alice-rocks-2024!', ['alice@example.com', 'alice']);
  assert.ok(r.score <= 1);
  assert.match(r.hints.join(' '), /email/);
});
