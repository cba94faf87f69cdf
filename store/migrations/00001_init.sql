-- +goose Up
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    admin       INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE magic_links (
    token_hash  TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

CREATE TABLE containers (
    user_id          TEXT PRIMARY KEY,
    runtime          TEXT NOT NULL,
    engine_id        TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL,
    endpoint         TEXT NOT NULL DEFAULT '',
    image            TEXT NOT NULL DEFAULT '',
    last_error       TEXT NOT NULL DEFAULT '',
    last_activity_at INTEGER NOT NULL,
    state_since      INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    ts         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_actor ON audit_log(actor);
CREATE INDEX audit_target ON audit_log(target);

CREATE TABLE kv (
    k  TEXT PRIMARY KEY,
    v  BLOB NOT NULL
);

-- +goose Down
DROP TABLE kv;
DROP TABLE audit_log;
DROP TABLE containers;
DROP TABLE magic_links;
DROP TABLE sessions;
DROP TABLE users;
