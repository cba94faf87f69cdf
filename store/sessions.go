package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// TokenHash is the SHA-256 of a bearer token (session or magic link), hex.
// Only hashes are stored, so a copy of the database signs nobody in.
func TokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Session is a signed-in browser.
type Session struct {
	TokenHash string
	UserID    UserID
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CreateSession stores a session for the (secret) token, valid for ttl.
func (s *Store) CreateSession(ctx context.Context, token string, user UserID, ttl time.Duration) (Session, error) {
	now := s.now().Truncate(time.Millisecond)
	ss := Session{TokenHash: TokenHash(token), UserID: user, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	_, err := s.w.ExecContext(ctx, `INSERT INTO sessions(token_hash, user_id, created_at, expires_at) VALUES(?,?,?,?)`,
		ss.TokenHash, ss.UserID, ms(ss.CreatedAt), ms(ss.ExpiresAt))
	if err != nil {
		return Session{}, fmt.Errorf("create session: %w", err)
	}
	return ss, nil
}

// SessionUser returns the user of a live session token; ErrNotFound for an
// unknown token, ErrExpired for one past its expiry (which is then deleted).
func (s *Store) SessionUser(ctx context.Context, token string) (User, Session, error) {
	h := TokenHash(token)
	var ss Session
	var created, expires int64
	err := s.r.QueryRowContext(ctx, `SELECT user_id, created_at, expires_at FROM sessions WHERE token_hash = ?`, h).
		Scan(&ss.UserID, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, Session{}, ErrNotFound
	}
	if err != nil {
		return User{}, Session{}, fmt.Errorf("get session: %w", err)
	}
	ss.TokenHash, ss.CreatedAt, ss.ExpiresAt = h, fromMS(created), fromMS(expires)
	if !s.now().Before(ss.ExpiresAt) {
		_ = s.DeleteSession(ctx, token)
		return User{}, Session{}, ErrExpired
	}
	u, err := s.UserByID(ctx, ss.UserID)
	if err != nil {
		return User{}, Session{}, err
	}
	return u, ss, nil
}

// DeleteSession removes a session (logout). Deleting an unknown one is not an error.
func (s *Store) DeleteSession(ctx context.Context, token string) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, TokenHash(token))
	return err
}

// DeleteExpired removes expired sessions and magic links older than a day.
func (s *Store) DeleteExpired(ctx context.Context) error {
	now := ms(s.now())
	_, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, now)
	if err == nil {
		_, err = s.w.ExecContext(ctx, `DELETE FROM magic_links WHERE expires_at <= ?`, now-int64(24*time.Hour/time.Millisecond))
	}
	return err
}

// MagicLink purposes.
const (
	PurposeSignIn    = "signin"    // an existing user signs in
	PurposeInvite    = "invite"    // an admin invited this email; consuming creates the user
	PurposeBootstrap = "bootstrap" // the first start's link; consuming creates the first (admin) user
)

// MagicLink is a single-use sign-in link. Only the token's hash is stored.
type MagicLink struct {
	Email     string // "" for PurposeBootstrap
	Purpose   string
	ExpiresAt time.Time
}

// CreateMagicLink stores a link for the (secret) token.
func (s *Store) CreateMagicLink(ctx context.Context, token, email, purpose string, ttl time.Duration) error {
	now := s.now()
	_, err := s.w.ExecContext(ctx, `INSERT INTO magic_links(token_hash, email, purpose, created_at, expires_at) VALUES(?,?,?,?,?)`,
		TokenHash(token), NormalizeEmail(email), purpose, ms(now), ms(now.Add(ttl)))
	if err != nil {
		return fmt.Errorf("create magic link: %w", err)
	}
	return nil
}

// PeekMagicLink returns a link without consuming it: ErrNotFound, ErrUsed or
// ErrExpired when it cannot be used.
func (s *Store) PeekMagicLink(ctx context.Context, token string) (MagicLink, error) {
	return s.magicLink(ctx, s.r, token)
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func (s *Store) magicLink(ctx context.Context, q querier, token string) (MagicLink, error) {
	var l MagicLink
	var expires int64
	var used sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT email, purpose, expires_at, used_at FROM magic_links WHERE token_hash = ?`, TokenHash(token)).
		Scan(&l.Email, &l.Purpose, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return MagicLink{}, ErrNotFound
	}
	if err != nil {
		return MagicLink{}, fmt.Errorf("get magic link: %w", err)
	}
	l.ExpiresAt = fromMS(expires)
	if used.Valid {
		return l, ErrUsed
	}
	if !s.now().Before(l.ExpiresAt) {
		return l, ErrExpired
	}
	return l, nil
}

// ConsumeMagicLink marks the link used and returns the user it signs in,
// creating that user for invite and bootstrap links (email must be given for
// bootstrap). Exactly one concurrent caller succeeds; the others get ErrUsed.
// A bootstrap link fails with ErrConflict once any user exists.
func (s *Store) ConsumeMagicLink(ctx context.Context, token, bootstrapEmail string) (User, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("consume magic link: %w", err)
	}
	defer tx.Rollback()
	l, err := s.magicLink(ctx, tx, token)
	if err != nil {
		return User{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE magic_links SET used_at = ? WHERE token_hash = ?`, ms(s.now()), TokenHash(token)); err != nil {
		return User{}, fmt.Errorf("consume magic link: %w", err)
	}
	email := l.Email
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		return User{}, fmt.Errorf("consume magic link: %w", err)
	}
	if l.Purpose == PurposeBootstrap {
		if n > 0 {
			return User{}, ErrConflict
		}
		email = NormalizeEmail(bootstrapEmail)
	}
	var u User
	var created int64
	err = tx.QueryRowContext(ctx, `SELECT id, email, admin, created_at FROM users WHERE email = ?`, email).
		Scan(&u.ID, &u.Email, &u.Admin, &created)
	switch {
	case err == nil:
		u.CreatedAt = fromMS(created)
	case errors.Is(err, sql.ErrNoRows) && l.Purpose != PurposeSignIn:
		u = User{ID: UserID(NewID("usr")), Email: email, Admin: n == 0, CreatedAt: s.now().Truncate(time.Millisecond)}
		if _, err := tx.ExecContext(ctx, `INSERT INTO users(id, email, admin, created_at) VALUES(?,?,?,?)`,
			u.ID, u.Email, u.Admin, ms(u.CreatedAt)); err != nil {
			return User{}, fmt.Errorf("consume magic link: %w", err)
		}
	case errors.Is(err, sql.ErrNoRows):
		return User{}, ErrNotFound
	default:
		return User{}, fmt.Errorf("consume magic link: %w", err)
	}
	return u, tx.Commit()
}
