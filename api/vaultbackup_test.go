package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
)

// proxyAgent is an api.Agent whose Proxy is h (the other methods are not used).
type proxyAgent struct {
	api.Agent
	h http.HandlerFunc
}

func (a proxyAgent) Proxy(string) http.Handler { return a.h }

// sealedBackup makes a real vault file and key record for user.
func sealedBackup(t *testing.T, user string) api.VaultBackup {
	t.Helper()
	salt, _ := crypto.NewSalt()
	p := crypto.DefaultKDFParams()
	p.MemoryKiB, p.Iterations = crypto.MinMemoryKiB, crypto.MinIterations
	kek, err := crypto.DeriveKEK([]byte("pw"), salt, p)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := crypto.NewVaultFile(&kek, salt, p, []byte(`{"secret":"sk-ant-inside"}`))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := crypto.NewIdentity()
	rec, err := id.SignKeyRecord(crypto.KeyRecord{Subject: user})
	if err != nil {
		t.Fatal(err)
	}
	return api.VaultBackup{Format: api.VaultBackupFormat, Vault: f.Marshal(), Identity: rec}
}

func TestFetchVaultBackup(t *testing.T) {
	const user = "usr_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	good := sealedBackup(t, user)
	other := sealedBackup(t, "usr_bbbbbbbbbbbbbbbbbbbbbbbbbb")
	send := func(status int, body any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != api.VaultBackupPath {
				t.Errorf("asked %s %s", r.Method, r.URL.Path)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			switch b := body.(type) {
			case []byte:
				w.Write(b)
			default:
				json.NewEncoder(w).Encode(b)
			}
		}
	}
	huge := good
	huge.Vault = make([]byte, api.MaxVaultBackupBytes+1)
	for _, tc := range []struct {
		name   string
		h      http.HandlerFunc
		status int
		code   string
	}{
		{"a good backup", send(200, good), 0, ""},
		{"the container's own error", send(409, api.ErrorBody{Error: api.ErrorDetail{Code: "vault_not_initialized", Message: "create your vault first"}}), 409, "vault_not_initialized"},
		{"another user's", send(200, other), 502, "invalid_backup"},
		{"not a vault file", send(200, api.VaultBackup{Format: 1, Vault: []byte("OCMTVLT1 nope"), Identity: good.Identity}), 502, "invalid_backup"},
		{"not JSON", send(200, []byte("<html>")), 502, "invalid_backup"},
		{"above the limit", send(200, huge), 413, "backup_too_large"},
		{"an endless answer", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			chunk := bytes.Repeat([]byte("A"), 1<<20)
			for range 16 {
				w.Write(chunk)
			}
		}, 413, "backup_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, rec, err := api.FetchVaultBackup(context.Background(), proxyAgent{h: tc.h}, user)
			if tc.code == "" {
				if err != nil || !bytes.Equal(b.Vault, good.Vault) || rec.Subject != user {
					t.Fatalf("got %v, %+v", err, rec)
				}
				return
			}
			var e *api.Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("got %v, want %d %s", err, tc.status, tc.code)
			}
		})
	}
}

func TestPushVaultRestore(t *testing.T) {
	const user = "usr_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	good := sealedBackup(t, user)
	var got api.VaultBackup
	ok := proxyAgent{h: func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != api.VaultRestorePath || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Errorf("asked %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		var err error
		if got, err = api.DecodeVaultBackup(r.Body); err != nil {
			t.Error(err)
		}
		w.WriteHeader(http.StatusNoContent)
	}}
	if err := api.PushVaultRestore(context.Background(), ok, user, good); err != nil || !bytes.Equal(got.Vault, good.Vault) || got.Identity != good.Identity {
		t.Fatalf("push: %v", err)
	}
	conflict := proxyAgent{h: func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusConflict)
		w.Write([]byte(`{"error":{"code":"already_initialized","message":"this container already has a vault"}}`))
	}}
	var e *api.Error
	if err := api.PushVaultRestore(context.Background(), conflict, user, good); !errors.As(err, &e) || e.Status != 409 || e.Code != "already_initialized" {
		t.Fatalf("push into a vault: %v", err)
	}
}
