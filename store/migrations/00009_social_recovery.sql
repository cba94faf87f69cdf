-- +goose Up
-- Social recovery (issue 10, item 2), as the management role knows it:
-- metadata only. social_contacts lists, for each owner, the trusted
-- contacts of the owner's current split (epoch) and its threshold, so
-- that contacts can be shown the owner's recovery requests.
-- recovery_requests are the owner's requests (a one-time X25519 public key
-- made by the owner's browser; 72 h); recovery_approvals hold each
-- approving contact's share, sealed by the contact's vault to that
-- one-time key, which the management role never has. The sealed shares
-- are deleted when the request completes, is cancelled or has expired.
CREATE TABLE social_setups (
    owner_id    TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    threshold   INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    set_at      INTEGER NOT NULL
);
CREATE TABLE social_contacts (
    owner_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contact_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (owner_id, contact_id)
);
CREATE INDEX social_contacts_contact ON social_contacts(contact_id);
CREATE TABLE recovery_requests (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    public_key    TEXT NOT NULL,
    threshold     INTEGER NOT NULL,
    epoch         INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    status        TEXT NOT NULL,
    closed_at     INTEGER
);
CREATE INDEX recovery_requests_owner ON recovery_requests(owner_id);
CREATE TABLE recovery_approvals (
    request_id    TEXT NOT NULL REFERENCES recovery_requests(id) ON DELETE CASCADE,
    contact_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sealed_share  BLOB,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (request_id, contact_id)
);

-- +goose Down
DROP TABLE recovery_approvals;
DROP TABLE recovery_requests;
DROP TABLE social_contacts;
DROP TABLE social_setups;
