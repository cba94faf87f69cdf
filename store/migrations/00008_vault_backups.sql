-- +goose Up
-- Encrypted vault backups (issue 10): copies of a user's sealed vault file
-- (ciphertext: it opens only with a key that never reaches the platform)
-- and its signed public-key record, taken on the user's request. The
-- management role keeps the newest few per user.
CREATE TABLE vault_backups (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    vault       BLOB NOT NULL,     -- the sealed vault file, as written by the container
    record      TEXT NOT NULL,     -- signed key record: base64url record JSON
    sig         TEXT NOT NULL,     -- and its Ed25519 signature, base64url
    ed25519     TEXT NOT NULL,     -- the record's signing key, for display
    size_bytes  INTEGER NOT NULL,  -- length of vault
    sha256      TEXT NOT NULL,     -- hex SHA-256 of vault
    created_at  INTEGER NOT NULL   -- unix ms
);
CREATE INDEX vault_backups_user ON vault_backups(user_id, created_at);

-- +goose Down
DROP TABLE vault_backups;
