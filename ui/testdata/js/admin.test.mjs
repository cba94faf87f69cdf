import assert from 'node:assert/strict';
import { test } from 'node:test';

import { mailSummary } from '../../static/admin.js';

test('the admin mail line counts queued and failed mail', () => {
  assert.equal(mailSummary({ queued: 0, failed: 0, sent: 5 }), 'Mail: nothing waiting, nothing failed.');
  assert.equal(mailSummary(undefined), 'Mail: nothing waiting, nothing failed.');
  assert.equal(mailSummary({ queued: 2, failed: 1 }), 'Mail: 2 queued (will be retried), 1 failed for good (not sent).');
  assert.equal(mailSummary({ queued: 0, failed: 3 }), 'Mail: 3 failed for good (not sent).');
  assert.equal(mailSummary({ queued: 1 }), 'Mail: 1 queued (will be retried).');
});
