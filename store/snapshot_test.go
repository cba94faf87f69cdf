package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshot: a snapshot taken while the database is open holds every
// committed row, is 0600, reports the current schema version, and its
// audit chain verifies with the original key; a second snapshot to the
// same file is refused.
func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, filepath.Join(dir, FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 3; i++ {
		if _, err := s.Audit(ctx, "system", "test.event", "target", nil); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	dst := filepath.Join(out, FileName)
	v, err := Snapshot(ctx, filepath.Join(dir, FileName), dst)
	if err != nil || v != LatestSchemaVersion() {
		t.Fatalf("Snapshot = %d, %v; want %d", v, err, LatestSchemaVersion())
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot mode: %v %v", fi.Mode(), err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, AuditKeyFile))
	os.WriteFile(filepath.Join(out, AuditKeyFile), key, 0o600)
	cp, err := OpenReadOnly(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if n, err := cp.VerifyAudit(ctx); err != nil || n != 3 {
		t.Fatalf("audit chain of the snapshot: %d rows, %v", n, err)
	}
	if _, err := Snapshot(ctx, filepath.Join(dir, FileName), dst); err == nil {
		t.Fatal("a snapshot over an existing file succeeded")
	}
}
