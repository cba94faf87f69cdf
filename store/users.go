package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// UserID identifies a user: "usr_" and 26 characters of lower-case base32
// ([a-z2-7]), as NewID("usr") makes them. It is the only shape of user id:
// ids from outside (URL paths, frames) go through ParseUserID first.
type UserID string

// userIDPrefix and userIDLen give the shape of a UserID: the prefix and the
// total length in bytes.
const (
	userIDPrefix = "usr_"
	userIDLen    = len(userIDPrefix) + 26
)

// ErrInvalidUserID is returned by ParseUserID for a string that is not a
// user id.
var ErrInvalidUserID = errors.New("invalid user id")

// ParseUserID returns s as a UserID if it has the shape of one (see UserID),
// else ErrInvalidUserID. It does not look the user up. Ids that pass are
// safe in container names, file paths and URL paths.
func ParseUserID(s string) (UserID, error) {
	if len(s) != userIDLen || !strings.HasPrefix(s, userIDPrefix) {
		return "", ErrInvalidUserID
	}
	for i := len(userIDPrefix); i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return "", ErrInvalidUserID
		}
	}
	return UserID(s), nil
}

// User is an account. Email is stored lower-cased.
type User struct {
	ID        UserID
	Email     string
	Admin     bool
	CreatedAt time.Time
}

// NormalizeEmail lower-cases and trims an address for storage and lookup.
func NormalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// CreateUser adds a user. The first user ever created is made admin whatever
// admin says. It returns ErrConflict if the email is taken.
func (s *Store) CreateUser(ctx context.Context, email string, admin bool) (User, error) {
	u := User{ID: UserID(NewID("usr")), Email: NormalizeEmail(email), CreatedAt: s.now().Truncate(time.Millisecond)}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	u.Admin = admin || n == 0
	_, err = tx.ExecContext(ctx, `INSERT INTO users(id, email, admin, created_at) VALUES(?,?,?,?)`,
		u.ID, u.Email, u.Admin, ms(u.CreatedAt))
	if err != nil {
		if isUnique(err) {
			return User{}, ErrConflict
		}
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, tx.Commit()
}

// UserCount returns how many users exist.
func (s *Store) UserCount(ctx context.Context) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n, err
}

// UserByID returns a user or ErrNotFound.
func (s *Store) UserByID(ctx context.Context, id UserID) (User, error) {
	return s.userWhere(ctx, `id = ?`, string(id))
}

// UserByEmail returns a user or ErrNotFound.
func (s *Store) UserByEmail(ctx context.Context, email string) (User, error) {
	return s.userWhere(ctx, `email = ?`, NormalizeEmail(email))
}

func (s *Store) userWhere(ctx context.Context, where string, arg any) (User, error) {
	var u User
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT id, email, admin, created_at FROM users WHERE `+where, arg).
		Scan(&u.ID, &u.Email, &u.Admin, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	u.CreatedAt = fromMS(created)
	return u, nil
}

// Users lists all users, oldest first.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, email, admin, created_at FROM users ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var created int64
		if err := rows.Scan(&u.ID, &u.Email, &u.Admin, &created); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		u.CreatedAt = fromMS(created)
		out = append(out, u)
	}
	return out, rows.Err()
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// ShareMail reports whether the user wants mail when someone shares with
// them or stops sharing (default true). Unknown users are ErrNotFound.
func (s *Store) ShareMail(ctx context.Context, id UserID) (bool, error) {
	var on bool
	err := s.r.QueryRowContext(ctx, `SELECT share_mail FROM users WHERE id = ?`, id).Scan(&on)
	if errors.Is(err, sql.ErrNoRows) {
		return false, ErrNotFound
	}
	if err != nil {
		return false, fmt.Errorf("get share mail setting: %w", err)
	}
	return on, nil
}

// SetShareMail turns the user's share mails on or off; changed reports
// whether the setting was different before. Unknown users are ErrNotFound.
func (s *Store) SetShareMail(ctx context.Context, id UserID, on bool) (changed bool, err error) {
	res, err := s.w.ExecContext(ctx, `UPDATE users SET share_mail = ? WHERE id = ? AND share_mail <> ?`, on, id, on)
	if err != nil {
		return false, fmt.Errorf("set share mail setting: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return true, nil
	}
	if _, err := s.ShareMail(ctx, id); err != nil {
		return false, err // ErrNotFound for an unknown user
	}
	return false, nil
}
