-- +goose Up
-- Share notices: a per-user setting for the mails sent when someone shares
-- with the user or stops sharing (default on), and when the recipient has
-- seen a received grant in the app (NULL = not yet: shown as new).
ALTER TABLE users ADD COLUMN share_mail INTEGER NOT NULL DEFAULT 1;
ALTER TABLE peer_grants ADD COLUMN seen_at INTEGER;

-- +goose Down
ALTER TABLE peer_grants DROP COLUMN seen_at;
ALTER TABLE users DROP COLUMN share_mail;
