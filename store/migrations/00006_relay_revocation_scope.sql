-- +goose Up
-- Revocations are scoped to the user who signed them (ocmt issue 8): a
-- capability id (jti) is chosen by its issuer and anyone can pick the same
-- 16 bytes, so a revocation names (jti, issuer) and stops only envelopes
-- that the revoking user sends or receives. Rows from before this
-- migration have issuer_user '' and are matched by their issuer key.
CREATE TABLE relay_revocations_scoped (
    jti          TEXT NOT NULL,
    issuer_user  TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    revocation   TEXT NOT NULL,
    sig          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (jti, issuer_user, issuer)
);
INSERT INTO relay_revocations_scoped(jti, issuer_user, issuer, ts, reason, revocation, sig, created_at)
    SELECT jti, '', issuer, ts, reason, revocation, sig, created_at FROM relay_revocations;
DROP TABLE relay_revocations;
ALTER TABLE relay_revocations_scoped RENAME TO relay_revocations;

-- Snapshots are keyed by (jti, issuer) for the same reason: someone who
-- learns a jti cannot squat its snapshot slot before the real issuer.
CREATE TABLE relay_snapshots_scoped (
    jti         TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    blob        BLOB NOT NULL,
    sig         TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (jti, issuer)
);
INSERT INTO relay_snapshots_scoped SELECT jti, issuer, subject, blob, sig, updated_at, expires_at FROM relay_snapshots;
DROP TABLE relay_snapshots;
ALTER TABLE relay_snapshots_scoped RENAME TO relay_snapshots;
CREATE INDEX relay_snapshots_expires ON relay_snapshots(expires_at);

-- relay_capability_issuers records, for each jti seen in capability
-- traffic, the users seen on its issuer side: the sender of a
-- capability.grant, the recipient of a capability.call. A user may revoke
-- a jti only if no other user is recorded for it or they are recorded
-- themselves (a set, not a first-sight claim: being first gains nothing).
-- expires_at (unix ms) is pushed forward at every sighting.
CREATE TABLE relay_capability_issuers (
    jti         TEXT NOT NULL,
    issuer_user TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (jti, issuer_user)
);
CREATE INDEX relay_capability_issuers_expires ON relay_capability_issuers(expires_at);

-- +goose Down
DROP TABLE relay_capability_issuers;
CREATE TABLE relay_snapshots_old (
    jti         TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    blob        BLOB NOT NULL,
    sig         TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
INSERT OR IGNORE INTO relay_snapshots_old SELECT jti, issuer, subject, blob, sig, updated_at, expires_at FROM relay_snapshots;
DROP TABLE relay_snapshots;
ALTER TABLE relay_snapshots_old RENAME TO relay_snapshots;
CREATE INDEX relay_snapshots_expires ON relay_snapshots(expires_at);
CREATE TABLE relay_revocations_old (
    jti         TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    revocation  TEXT NOT NULL,
    sig         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT OR IGNORE INTO relay_revocations_old SELECT jti, issuer, ts, reason, revocation, sig, created_at FROM relay_revocations;
DROP TABLE relay_revocations;
ALTER TABLE relay_revocations_old RENAME TO relay_revocations;
