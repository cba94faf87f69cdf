-- +goose Up
-- The public-key directory (SPEC §5.1): each vault's signed key record, as
-- published by its container and verified by the management role.
CREATE TABLE directory_keys (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    ed25519       TEXT NOT NULL,
    x25519        TEXT NOT NULL,
    record        TEXT NOT NULL,
    sig           TEXT NOT NULL,
    published_at  INTEGER NOT NULL
);

-- +goose Down
DROP TABLE directory_keys;
