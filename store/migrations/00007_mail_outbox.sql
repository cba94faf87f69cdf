-- +goose Up
-- The mail outbox (ocmt issue 9): sign-in, invitation and share mail is
-- queued here and sent by a background worker with retries, so a request
-- never waits for the mail server and a restart loses nothing.
--
-- body and link hold the mail's text; a sign-in or invitation mail's text
-- holds a live magic link. They are emptied as soon as the row is sent or
-- has failed for good, and a queued sign-in mail is given up (never sent)
-- once its link expires (expires_at). Rows that are no longer queued keep
-- metadata only (recipient, subject, state, attempts, last error) and are
-- deleted a week after their last change.
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    link            TEXT NOT NULL DEFAULT '',
    kind            TEXT NOT NULL,               -- signin, invite, share
    state           TEXT NOT NULL DEFAULT 'queued', -- queued, sent, failed
    created_at      INTEGER NOT NULL,            -- unix ms
    updated_at      INTEGER NOT NULL,            -- unix ms
    expires_at      INTEGER NOT NULL DEFAULT 0,  -- unix ms; 0 = never (share mail)
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,            -- unix ms
    sending_since   INTEGER,                     -- unix ms while a send is under way, else NULL
    last_error      TEXT NOT NULL DEFAULT ''     -- no secrets: SMTP reply or network error
);
CREATE INDEX mail_outbox_due ON mail_outbox(state, next_attempt_at);

-- +goose Down
DROP TABLE mail_outbox;
