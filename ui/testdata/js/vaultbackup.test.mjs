import assert from 'node:assert/strict';
import { test } from 'node:test';

import { errorText, sizeText } from '../../static/vaultbackup.js';

test('backup sizes read in bytes, KiB and MiB', () => {
  assert.equal(sizeText(620), '620 bytes');
  assert.equal(sizeText(undefined), '0 bytes');
  assert.equal(sizeText(12 * 1024 + 100), '12 KiB');
  assert.equal(sizeText(1.5 * 1024 * 1024), '1.5 MiB');
});

test('backup errors are plain words', () => {
  assert.match(errorText({ code: 'already_initialized' }), /only be restored into a new, empty one/);
  assert.match(errorText({ code: 'vault_not_initialized' }), /no vault to back up/);
  assert.equal(errorText({ code: 'backup_too_large', message: 'the vault is larger than the 8 MiB a backup may hold' }), 'the vault is larger than the 8 MiB a backup may hold');
  assert.equal(errorText({ code: 'something_else', message: 'Server said no.' }), 'Server said no.');
  assert.equal(errorText(undefined), 'Something went wrong.');
});
