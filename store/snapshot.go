package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// Snapshot writes a consistent copy of the database at path to dst with
// SQLite's `VACUUM INTO` (https://sqlite.org/lang_vacuum.html#vacuuminto):
// one read transaction, so the copy is the database as of one instant even
// while ocmt writes to it, compacted and without a -wal file. The source
// is opened read-only; dst must not exist (SQLite refuses to overwrite a
// non-empty file) and its directory should be private: SQLite creates the
// file with the default mode. It returns the copy's schema version (see
// SchemaVersion).
func Snapshot(ctx context.Context, path, dst string) (int64, error) {
	src, err := OpenReadOnly(ctx, path)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	if _, err := src.r.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return 0, fmt.Errorf("snapshot database: %w", err)
	}
	if err := os.Chmod(dst, 0o600); err != nil {
		return 0, fmt.Errorf("snapshot database: %w", err)
	}
	cp, err := OpenCopy(ctx, dst)
	if err != nil {
		return 0, err
	}
	defer cp.Close()
	return cp.SchemaVersion(ctx)
}

// OpenCopy opens the database file at path read-only, without its audit
// key and without running migrations: for reading a snapshot or a restored
// copy (schema version, deployment id, container records). VerifyAudit on
// it fails. A missing file is an error.
func OpenCopy(ctx context.Context, path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &Store{r: db, now: time.Now}, nil
}

// LatestSchemaVersion is the newest migration this binary carries (the
// number of the last file in migrations/): the schema version a database
// has after Open.
func LatestSchemaVersion() int64 {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		panic(err) // embedded at build time
	}
	var latest int64
	for _, e := range entries {
		num, _, ok := strings.Cut(path.Base(e.Name()), "_")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(num, 10, 64); err == nil && n > latest {
			latest = n
		}
	}
	if latest == 0 {
		panic(errors.New("store: no migrations embedded"))
	}
	return latest
}
