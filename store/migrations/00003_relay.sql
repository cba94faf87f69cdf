-- +goose Up
-- The relay's store-and-forward queue and revocation blocklist (SPEC §7.2).
-- No foreign keys to users: a split relay has its own database.

-- relay_envelopes holds envelopes accepted for a recipient until it
-- acknowledges them or they expire. payload is the sender's NaCl box
-- ciphertext exactly as received (the relay never sees plaintext). seq
-- orders a recipient's queue (oldest first). Times are unix milliseconds.
CREATE TABLE relay_envelopes (
    id          TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    type        TEXT NOT NULL,
    jti         TEXT NOT NULL DEFAULT '',
    payload     BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX relay_envelopes_recipient ON relay_envelopes(recipient, seq);
CREATE INDEX relay_envelopes_seq ON relay_envelopes(seq);
CREATE INDEX relay_envelopes_expires ON relay_envelopes(expires_at);

-- relay_revocations is the authoritative revocation blocklist. revocation
-- and sig are the signed revocation as received (base64url), so it can be
-- re-verified; ts is the revocation's own time (unix milliseconds).
CREATE TABLE relay_revocations (
    jti         TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    revocation  TEXT NOT NULL,
    sig         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- relay_snapshots is the cached tier: one issuer-signed encrypted snapshot
-- per `cached` capability, readable by its subject while the issuer
-- sleeps. issuer and subject are Ed25519 text forms from the token.
CREATE TABLE relay_snapshots (
    jti         TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    blob        BLOB NOT NULL,
    sig         TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX relay_snapshots_expires ON relay_snapshots(expires_at);

-- +goose Down
DROP TABLE relay_snapshots;
DROP TABLE relay_revocations;
DROP TABLE relay_envelopes;
