// Package store is ocmt's persistent state: users, sessions, magic links,
// the mail outbox, container records and the hash-chained audit log, in
// SQLite.
//
// The database runs in WAL mode with foreign keys on, a busy timeout and
// immediate transactions, through one writer connection and a pool of
// readers. The schema is applied at [Open] from the numbered goose
// migrations embedded from migrations/ (append-only; never edit one that
// shipped). Times are stored as INTEGER unix milliseconds.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Sentinel errors. Callers test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrExpired  = errors.New("expired")
	ErrUsed     = errors.New("already used")
)

// FileName is the database file inside the data directory.
const FileName = "ocmt.db"

// Store is an open database. It is safe for concurrent use.
type Store struct {
	w        *sql.DB // one connection: all writes; nil when read-only
	r        *sql.DB // readers
	now      func() time.Time
	auditKey []byte // HMAC key of the audit chain (audit.key beside the database)
}

// AuditKeyFile is the audit chain's key file, beside the database.
const AuditKeyFile = "audit.key"

// loadAuditKey reads dir/audit.key, creating it (0600, 32 random bytes)
// when create is set and it does not exist.
func loadAuditKey(dir string, create bool) ([]byte, error) {
	path := filepath.Join(dir, AuditKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		b = make([]byte, 32)
		rand.Read(b)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create audit key: %w", err)
		}
		_, werr := f.Write(b)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return nil, fmt.Errorf("create audit key: %w", err)
		}
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("audit key %s is not 32 bytes", path)
	}
	return b, nil
}

// Open opens (creating if needed) the database at path and applies all
// pending migrations. now may be nil (time.Now).
func Open(ctx context.Context, path string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// Create the file 0600 before SQLite does: SQLite gives its -wal and
	// -shm files the database file's mode, so they are never readable by
	// others either (they hold recent rows, including per-deployment keys).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	dsn := "file:" + path + "?_journal_mode=WAL&_busy_timeout=5000&_foreign_keys=on&_synchronous=NORMAL"
	w, err := sql.Open("sqlite3", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite3", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	r.SetMaxOpenConns(4)
	s := &Store{w: w, r: r, now: now}
	if s.auditKey, err = loadAuditKey(filepath.Dir(path), true); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.w, sub)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// OpenReadOnly opens an existing database for inspection (ocmt audit
// verify): no migrations run and nothing is written.
func OpenReadOnly(ctx context.Context, path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	r, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{r: r, now: time.Now}
	if s.auditKey, err = loadAuditKey(filepath.Dir(path), false); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if s.w == nil {
		return s.r.Close()
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.r.PingContext(ctx) }

// SchemaVersion returns the newest applied migration number.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version_id),0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	return v, err
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a random identifier "<prefix>_<26 base32 chars>" (128 bits).
func NewID(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	return prefix + "_" + strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// GetKV returns the value stored under key, or ErrNotFound.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return v, err
}

// PutKV stores value under key, replacing any value there.
func (s *Store) PutKV(ctx context.Context, key string, value []byte) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO kv(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v`, key, value); err != nil {
		return fmt.Errorf("store kv: %w", err)
	}
	return nil
}

// DeleteKV removes the value under key; a missing key is no error.
func (s *Store) DeleteKV(ctx context.Context, key string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM kv WHERE k = ?`, key); err != nil {
		return fmt.Errorf("store kv: %w", err)
	}
	return nil
}

// GetOrCreateKV returns the value under key, storing make() first if absent.
// It is how per-deployment keys (CSRF, container secrets) are made once.
func (s *Store) GetOrCreateKV(ctx context.Context, key string, make func() []byte) ([]byte, error) {
	if v, err := s.GetKV(ctx, key); err == nil {
		return v, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO kv(k, v) VALUES(?, ?) ON CONFLICT(k) DO NOTHING`, key, make()); err != nil {
		return nil, fmt.Errorf("store kv: %w", err)
	}
	return s.GetKV(ctx, key)
}
