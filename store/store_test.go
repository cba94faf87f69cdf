package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFilesPrivate: the database and its WAL/SHM files are 0600 even in a
// directory that others can list.
func TestFilesPrivate(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, FileName)
	ctx := context.Background()
	st, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.GetOrCreateKV(ctx, "k", func() []byte { return []byte("secret") }); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
}

func TestMagicLinkSingleUse(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateUser(ctx, "a@example.org", false); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateMagicLink(ctx, "tok", "a@example.org", PurposeSignIn, 1e9*60); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() { _, err := st.ConsumeMagicLink(ctx, "tok", ""); errs <- err }()
	}
	ok := 0
	for i := 0; i < 8; i++ {
		if <-errs == nil {
			ok++
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent consumers succeeded, want 1", ok)
	}
}

// TestAuditChainNeedsKey: rewriting the whole chain consistently, as an
// attacker who can edit the database but not read audit.key would, fails.
func TestAuditChainNeedsKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := Open(ctx, filepath.Join(dir, FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, a := range []string{"auth.signin", "agent.wake", "auth.signout"} {
		if _, err := st.Audit(ctx, "usr_a", a, "usr_a", map[string]string{"ip": "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.VerifyAudit(ctx); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	// Edit row 2 and recompute every hash and the head with a guessed key.
	evs, _ := st.AuditEvents(ctx, AuditFilter{})
	guess := make([]byte, 32)
	prev := GenesisHash
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		if e.Seq == 2 {
			e.Detail["ip"] = "203.0.113.9"
		}
		e.PrevHash = prev
		dj, _ := json.Marshal(e.Detail)
		e.Hash = auditHash(guess, e, string(dj))
		if _, err := st.w.ExecContext(ctx, `UPDATE audit_log SET detail = ?, prev_hash = ?, hash = ? WHERE seq = ?`, string(dj), e.PrevHash, e.Hash, e.Seq); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	st.w.ExecContext(ctx, `UPDATE kv SET v = ? WHERE k = ?`, []byte("3:"+prev), auditHeadKey)
	if _, err := st.VerifyAudit(ctx); err == nil {
		t.Fatal("a chain rewritten without the audit key verified")
	}
}

// TestParseUserID: only the shape NewID("usr") makes is a user id.
func TestParseUserID(t *testing.T) {
	for i := 0; i < 100; i++ {
		id := NewID("usr")
		if got, err := ParseUserID(id); err != nil || string(got) != id {
			t.Fatalf("ParseUserID(%q) = %q, %v", id, got, err)
		}
	}
	for _, bad := range []string{
		"", "usr_", "usr_bob", "..%2f..%2fetc", "../../etc", "ocmt-agents",
		"usr_" + strings.Repeat("a", 25), "usr_" + strings.Repeat("a", 27),
		"usr_" + strings.Repeat("A", 26), "USR_" + strings.Repeat("a", 26),
		"usr_" + strings.Repeat("1", 26), "usr_" + strings.Repeat("8", 26),
		"ses_" + strings.Repeat("a", 26), "usr-" + strings.Repeat("a", 26),
		"usr_" + strings.Repeat("a", 25) + "/", "usr_" + strings.Repeat("a", 25) + "\x00",
		"usr_" + strings.Repeat("a", 24) + "é",
	} {
		if _, err := ParseUserID(bad); !errors.Is(err, ErrInvalidUserID) {
			t.Errorf("ParseUserID(%q): %v, want ErrInvalidUserID", bad, err)
		}
	}
}

// TestPutDeleteKV: PutKV replaces a value, DeleteKV removes it (twice is
// no error), and GetKV then says ErrNotFound.
func TestPutDeleteKV(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, v := range []string{"one", "two"} {
		if err := st.PutKV(ctx, "k", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if got, err := st.GetKV(ctx, "k"); err != nil || string(got) != v {
			t.Fatalf("GetKV after PutKV(%q) = %q, %v", v, got, err)
		}
	}
	for range 2 {
		if err := st.DeleteKV(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.GetKV(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetKV after DeleteKV: %v", err)
	}
}
