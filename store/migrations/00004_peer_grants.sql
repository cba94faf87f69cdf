-- +goose Up
-- Peer-grant metadata (SPEC §7.1, issue 4): who shared what with whom, scope,
-- expiry and status, as seen by the management role. Never the token.
CREATE TABLE peer_grants (
    jti         TEXT PRIMARY KEY,
    issuer_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    subject_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    resource    TEXT NOT NULL,
    scope       TEXT NOT NULL,
    max_calls   INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX peer_grants_issuer ON peer_grants(issuer_id);
CREATE INDEX peer_grants_subject ON peer_grants(subject_id);

-- +goose Down
DROP TABLE peer_grants;
