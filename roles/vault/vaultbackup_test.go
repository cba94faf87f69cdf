package vault

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
)

// getBackup fetches GET /vault/backup as the typed wire form.
func (v *tv) getBackup() (int, api.VaultBackup, []byte) {
	v.t.Helper()
	req, _ := http.NewRequest("GET", v.srv.URL+api.VaultBackupPath, nil)
	req.Header.Set(api.ContainerSecretHeader, testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var b api.VaultBackup
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &b); err != nil {
			v.t.Fatalf("backup JSON: %v", err)
		}
	}
	return resp.StatusCode, b, raw
}

// vaultFor is newTestVault for another container user.
func vaultFor(t *testing.T, userID string) *tv {
	t.Helper()
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	s, err := New(Options{Secret: testSecret, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		DataDir: t.TempDir(), PublicURL: "https://ocmt.example", UserID: userID, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() { s.cancel(); s.hub.wg.Wait() })
	return &tv{t: t, s: s, srv: srv, clk: clk, dir: s.dataDir}
}

func TestVaultBackupRestore(t *testing.T) {
	const apiKeyText = "sk-ant-vault-backup-unit-5c1d"
	old := newTestVault(t, "")
	if st, _, raw := old.getBackup(); st != http.StatusConflict || !bytes.Contains(raw, []byte("vault_not_initialized")) {
		t.Fatalf("backup before init: %d %s", st, raw)
	}
	k := old.create("correct horse battery staple")
	if st, b := old.do("PUT", "/vault/apikeys/anthropic", map[string]string{"key": apiKeyText}); st != http.StatusOK {
		t.Fatalf("put key: %d %v", st, b)
	}
	// Unlocked and locked give the same sealed bytes, never the key.
	st, unlocked, raw := old.getBackup()
	if st != http.StatusOK || bytes.Contains(raw, []byte(apiKeyText)) {
		t.Fatalf("backup while unlocked: %d (holds the key in clear: %v)", st, bytes.Contains(raw, []byte(apiKeyText)))
	}
	old.do("POST", "/vault/lock", nil)
	st, b, raw := old.getBackup()
	if st != http.StatusOK || !bytes.Equal(b.Vault, unlocked.Vault) || b.Format != api.VaultBackupFormat {
		t.Fatalf("backup while locked: %d, same bytes %v", st, bytes.Equal(b.Vault, unlocked.Vault))
	}
	if bytes.Contains(raw, []byte(apiKeyText)) || bytes.Contains(b.Vault, []byte(apiKeyText)) {
		t.Fatal("the backup holds the API key in clear")
	}
	if _, err := b.Check("usr_test"); err != nil {
		t.Fatalf("check: %v", err)
	}

	// A fresh container takes it, locked; the old password opens it and
	// the key is there.
	nv := newTestVault(t, "")
	if st, body := nv.do("PUT", api.VaultRestorePath, b); st != http.StatusNoContent {
		t.Fatalf("restore: %d %v", st, body)
	}
	_, status := nv.do("GET", "/vault/status", nil)
	if status["initialized"] != true || status["locked"] != true || status["publicKeys"] == nil {
		t.Fatalf("status after restore: %v", status)
	}
	if st, body := nv.unlockWith(k); st != http.StatusOK {
		t.Fatalf("unlock restored vault: %d %v", st, body)
	}
	_, keys := nv.do("GET", "/vault/apikeys", nil)
	if ps, _ := keys["providers"].([]any); len(ps) != 1 {
		t.Fatalf("providers after restore: %v", keys)
	}
	// Never over an initialized vault.
	if st, body := nv.do("PUT", api.VaultRestorePath, b); st != http.StatusConflict || errCode(body) != "already_initialized" {
		t.Fatalf("restore over a vault: %d %v", st, body)
	}

	// Refusals, each leaving the container uninitialized.
	bad := b
	bad.Vault = append(bytes.Clone(b.Vault), 0)
	huge := b
	huge.Vault = make([]byte, api.MaxVaultBackupBytes+1)
	for _, tc := range []struct {
		name   string
		user   string
		body   any
		status int
		code   string
	}{
		{"another user's backup", "usr_other", b, http.StatusForbidden, "backup_wrong_user"},
		{"a torn vault file", "usr_test", bad, http.StatusBadRequest, "invalid_backup"},
		{"an unknown format", "usr_test", api.VaultBackup{Format: 2, Vault: b.Vault, Identity: b.Identity}, http.StatusBadRequest, "invalid_backup"},
		{"a forged key record", "usr_test", api.VaultBackup{Format: 1, Vault: b.Vault, Identity: crypto.SignedKeyRecord{Record: b.Identity.Record, Sig: unlocked.Identity.Sig[:10] + "AAAA" + unlocked.Identity.Sig[14:]}}, http.StatusBadRequest, "invalid_backup"},
		{"not JSON", "usr_test", "nope", http.StatusBadRequest, "invalid_backup"},
		{"above the size limit", "usr_test", huge, http.StatusRequestEntityTooLarge, "backup_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := vaultFor(t, tc.user)
			st, body := v.do("PUT", api.VaultRestorePath, tc.body)
			if st != tc.status || errCode(body) != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, body, tc.status, tc.code)
			}
			if _, s := v.do("GET", "/vault/status", nil); s["initialized"] != false {
				t.Fatalf("status after a refused restore: %v", s)
			}
		})
	}
}

// TestVaultRestoreAfterTornInit: a crash between the two writes of an init
// leaves an identity record without a vault file; the vault counts as not
// initialized and a restore replaces the stale record.
func TestVaultRestoreAfterTornInit(t *testing.T) {
	old := newTestVault(t, "")
	k := old.create("correct horse battery staple")
	_, b, _ := old.getBackup()

	dir := t.TempDir()
	torn := newTestVault(t, dir)
	torn.create("another password entirely")
	if err := os.Remove(filepath.Join(dir, vaultFileName)); err != nil {
		t.Fatal(err)
	}
	nv := newTestVault(t, dir) // the container starts again after the crash
	if _, st := nv.do("GET", "/vault/status", nil); st["initialized"] != false {
		t.Fatalf("status with only an identity record: %v", st)
	}
	if st, body := nv.do("PUT", api.VaultRestorePath, b); st != http.StatusNoContent {
		t.Fatalf("restore: %d %v", st, body)
	}
	ib, _ := os.ReadFile(filepath.Join(dir, identityFileName))
	var rec crypto.SignedKeyRecord
	if err := json.Unmarshal(ib, &rec); err != nil || rec != b.Identity {
		t.Fatalf("identity record after restore: %v", err)
	}
	if st, body := nv.unlockWith(k); st != http.StatusOK {
		t.Fatalf("unlock: %d %v", st, body)
	}
}
