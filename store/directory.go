package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// DirectoryEntry is a user's published public keys with the signed record
// they came in (base64url record JSON and Ed25519 signature, as sent).
type DirectoryEntry struct {
	UserID      UserID
	Ed25519     string // "ed25519:<base64url>"
	X25519      string // "x25519:<base64url>"
	Record      string
	Sig         string
	PublishedAt time.Time
}

// PutDirectoryEntry stores or replaces a user's keys. The caller has
// verified the signature and that the record's subject is the user.
func (s *Store) PutDirectoryEntry(ctx context.Context, e DirectoryEntry) error {
	if e.PublishedAt.IsZero() {
		e.PublishedAt = s.now()
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO directory_keys(user_id, ed25519, x25519, record, sig, published_at) VALUES(?,?,?,?,?,?)
		ON CONFLICT(user_id) DO UPDATE SET ed25519=excluded.ed25519, x25519=excluded.x25519, record=excluded.record,
		sig=excluded.sig, published_at=excluded.published_at`,
		e.UserID, e.Ed25519, e.X25519, e.Record, e.Sig, ms(e.PublishedAt))
	if err != nil {
		return fmt.Errorf("put directory entry: %w", err)
	}
	return nil
}

// DirectoryEntry returns a user's keys or ErrNotFound.
func (s *Store) DirectoryEntry(ctx context.Context, user UserID) (DirectoryEntry, error) {
	var e DirectoryEntry
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT user_id, ed25519, x25519, record, sig, published_at FROM directory_keys WHERE user_id = ?`, user).
		Scan(&e.UserID, &e.Ed25519, &e.X25519, &e.Record, &e.Sig, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return DirectoryEntry{}, ErrNotFound
	}
	if err != nil {
		return DirectoryEntry{}, fmt.Errorf("get directory entry: %w", err)
	}
	e.PublishedAt = fromMS(at)
	return e, nil
}
