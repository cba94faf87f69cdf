package e2e

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/xtest"
)

// TestBadParamsFileIsReported is ocmt issue 8 item 6 end to end: a
// vault.params.json with weak parameters and an all-zero salt, written
// into the user's data directory before the vault exists, is neither
// served nor used. Through the management proxy, GET /params and POST
// /init answer 500 invalid_params_file with a message that names the file
// and the rule, and the file stays as it was (no silent replacement).
func TestBadParamsFileIsReported(t *testing.T) {
	env := xtest.NewEnv(t) // process runtime: the data dir is on this machine
	c, u := env.Admin("kdf-params@example.com")
	dir := filepath.Join(env.Cfg.DataDir, "users", string(u.ID))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	weak := `{"salt":"` + base64.StdEncoding.EncodeToString(make([]byte, 16)) + `","kdf":{"alg":"argon2id","memoryKiB":8192,"iterations":1,"parallelism":1}}`
	path := filepath.Join(dir, "vault.params.json")
	if err := os.WriteFile(path, []byte(weak), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, step := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/params", nil},
		{"POST", "/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}},
	} {
		r, err := c.Do(ctx, step.method, "/api/v1/me/agent/vault"+step.path, step.body)
		if err != nil {
			t.Fatal(err)
		}
		body := string(r.Body)
		if r.Status != http.StatusInternalServerError || r.ErrorCode() != "invalid_params_file" ||
			!strings.Contains(body, "vault.params.json") || !strings.Contains(body, "memoryKiB") {
			t.Errorf("%s %s: %d %s, want 500 invalid_params_file naming the file and memoryKiB", step.method, step.path, r.Status, body)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != weak {
		t.Errorf("params file replaced: %s", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "vault.ocv")); !os.IsNotExist(err) {
		t.Errorf("vault created: %v", err)
	}
}
