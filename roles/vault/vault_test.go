package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// clock is a settable wall clock for auto-lock tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type tv struct {
	t   *testing.T
	s   *Server
	srv *httptest.Server
	clk *clock
	dir string
}

func newTestVault(t *testing.T, dir string) *tv {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	s, err := New(Options{Secret: testSecret, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		DataDir: dir, PublicURL: "https://ocmt.example", UserID: "usr_test", Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	// Runs still going end before the data directory is removed.
	t.Cleanup(func() { s.cancel(); s.hub.wg.Wait() })
	return &tv{t: t, s: s, srv: srv, clk: clk, dir: dir}
}

func (v *tv) do(method, path string, body any) (int, map[string]any) {
	v.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, v.srv.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.ContainerSecretHeader, testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// derive does what the browser does: fetch params and run Argon2id.
func (v *tv) derive(password string) crypto.KEK {
	v.t.Helper()
	_, p := v.do("GET", "/vault/params", nil)
	salt, _ := base64.StdEncoding.DecodeString(p["salt"].(string))
	kb, _ := json.Marshal(p["kdf"])
	var kdf crypto.KDFParams
	json.Unmarshal(kb, &kdf)
	k, err := crypto.DeriveKEK([]byte(password), salt, kdf)
	if err != nil {
		v.t.Fatal(err)
	}
	return k
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func (v *tv) unlockWith(k crypto.KEK) (int, map[string]any) {
	v.t.Helper()
	_, ch := v.do("POST", "/vault/unlock/challenge", nil)
	chb, _ := base64.StdEncoding.DecodeString(ch["challenge"].(string))
	return v.do("POST", "/vault/unlock", map[string]string{
		"challengeId": ch["challengeId"].(string), "derivedKey": b64(k[:]), "proof": b64(crypto.UnlockProof(&k, chb)),
	})
}

func (v *tv) create(password string) crypto.KEK {
	v.t.Helper()
	k := v.derive(password)
	st, body := v.do("POST", "/vault/init", map[string]string{"derivedKey": b64(k[:])})
	if st != http.StatusCreated {
		v.t.Fatalf("init: %d %v", st, body)
	}
	return k
}

func TestVaultRequiresContainerSecret(t *testing.T) {
	v := newTestVault(t, "")
	for _, p := range []string{"/healthz", "/vault/status", "/vault/params", "/chat", "/mcp"} {
		resp, err := http.Get(v.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without secret: %d", p, resp.StatusCode)
		}
	}
}

func TestVaultLifecycle(t *testing.T) {
	v := newTestVault(t, "")
	st, s := v.do("GET", "/vault/status", nil)
	if st != 200 || s["initialized"] != false || s["locked"] != true {
		t.Fatalf("status before init: %d %v", st, s)
	}
	// Params are stable until init, so a browser may derive, then init.
	_, p1 := v.do("GET", "/vault/params", nil)
	_, p2 := v.do("GET", "/vault/params", nil)
	if p1["salt"] != p2["salt"] {
		t.Fatal("salt changed between params calls")
	}
	if st, b := v.do("GET", "/vault/apikeys", nil); st != http.StatusConflict || errCode(b) != "vault_not_initialized" {
		t.Fatalf("apikeys before init: %d %v", st, b)
	}
	k := v.create("correct horse battery staple")
	if st, b := v.do("POST", "/vault/init", map[string]string{"derivedKey": b64(k[:])}); st != http.StatusConflict || errCode(b) != "already_initialized" {
		t.Fatalf("second init: %d %v", st, b)
	}
	_, s = v.do("GET", "/vault/status", nil)
	pk, _ := s["publicKeys"].(map[string]any)
	if s["locked"] != false || pk == nil || !strings.HasPrefix(pk["ed25519"].(string), "ed25519:") {
		t.Fatalf("status after init: %v", s)
	}
	if st, _ := v.do("PUT", "/vault/apikeys/anthropic", map[string]string{"key": "sk-ant-secret-1", "model": "claude-x"}); st != 200 {
		t.Fatalf("put key: %d", st)
	}
	st, list := v.do("GET", "/vault/apikeys", nil)
	raw, _ := json.Marshal(list)
	if st != 200 || !strings.Contains(string(raw), `"provider":"anthropic"`) || strings.Contains(string(raw), "sk-ant-secret-1") {
		t.Fatalf("list keys: %s", raw)
	}
	// Nothing on disk holds the key or the password in the clear.
	assertNoPlaintext(t, v.dir, "sk-ant-secret-1", "correct horse battery staple")

	// Lock → locked answers carry an unlock link.
	v.do("POST", "/vault/lock", nil)
	st, b := v.do("GET", "/vault/apikeys", nil)
	e, _ := b["error"].(map[string]any)
	if st != http.StatusLocked || errCode(b) != "vault_locked" || e["unlockUrl"] != "https://ocmt.example/#unlock" {
		t.Fatalf("locked: %d %v", st, b)
	}
	// Unlock with the right key; the key survives a restart of the vault.
	v2 := newTestVault(t, v.dir)
	if st, b := v2.unlockWith(k); st != 200 || b["expiresIn"].(float64) != 1800 {
		t.Fatalf("unlock: %d %v", st, b)
	}
	if _, list := v2.do("GET", "/vault/apikeys", nil); !strings.Contains(mustJSON(list), "anthropic") {
		t.Fatalf("keys after reopen: %v", list)
	}
	// Extend; auto-lock after 30 minutes of wall-clock time without use.
	v2.clk.add(29 * time.Minute)
	if st, b := v2.do("POST", "/vault/extend", nil); st != 200 || b["expiresIn"].(float64) != 1800 {
		t.Fatalf("extend: %d %v", st, b)
	}
	v2.clk.add(30 * time.Minute)
	if st, _ := v2.do("GET", "/vault/apikeys", nil); st != http.StatusLocked {
		t.Fatalf("not auto-locked after 30 min: %d", st)
	}
	if v2.s.keys.dek != nil || v2.s.keys.sec != nil {
		t.Fatal("key material kept after auto-lock")
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// assertNoPlaintext searches every file under dir for the needles.
func assertNoPlaintext(t *testing.T, dir string, needles ...string) {
	t.Helper()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				t.Errorf("%s contains %q in the clear", p, n)
			}
		}
		return nil
	})
}

func TestUnlockRefusals(t *testing.T) {
	v := newTestVault(t, "")
	k := v.create("correct horse battery staple")
	v.do("POST", "/vault/lock", nil)
	wrong := v.derive("wrong password entirely")

	// Wrong key → 401, then growing backoff (429 with retryAfterMs).
	if st, b := v.unlockWith(wrong); st != http.StatusUnauthorized || errCode(b) != "wrong_key" {
		t.Fatalf("wrong key: %d %v", st, b)
	}
	st, b := v.unlockWith(k)
	if st != http.StatusTooManyRequests || errCode(b) != "unlock_backoff" {
		t.Fatalf("during backoff: %d %v", st, b)
	}
	first := b["error"].(map[string]any)["retryAfterMs"].(float64)
	v.clk.add(time.Second)
	v.unlockWith(wrong) // second failure
	_, b = v.unlockWith(k)
	second := b["error"].(map[string]any)["retryAfterMs"].(float64)
	if second <= first {
		t.Fatalf("backoff did not grow: %v then %v", first, second)
	}
	v.clk.add(time.Minute)

	// Replayed challenge → refused.
	_, ch := v.do("POST", "/vault/unlock/challenge", nil)
	chb, _ := base64.StdEncoding.DecodeString(ch["challenge"].(string))
	req := map[string]string{"challengeId": ch["challengeId"].(string), "derivedKey": b64(k[:]), "proof": b64(crypto.UnlockProof(&k, chb))}
	if st, _ := v.do("POST", "/vault/unlock", req); st != 200 {
		t.Fatalf("unlock: %d", st)
	}
	if st, b := v.do("POST", "/vault/unlock", req); st != http.StatusBadRequest || errCode(b) != "challenge_invalid" {
		t.Fatalf("replayed challenge: %d %v", st, b)
	}
	// Expired challenge → refused.
	_, ch = v.do("POST", "/vault/unlock/challenge", nil)
	chb, _ = base64.StdEncoding.DecodeString(ch["challenge"].(string))
	v.clk.add(2 * time.Minute)
	if st, b := v.do("POST", "/vault/unlock", map[string]string{"challengeId": ch["challengeId"].(string), "derivedKey": b64(k[:]), "proof": b64(crypto.UnlockProof(&k, chb))}); st != http.StatusBadRequest || errCode(b) != "challenge_invalid" {
		t.Fatalf("expired challenge: %d %v", st, b)
	}
	// Malformed inputs → 400, never 500.
	for _, body := range []any{
		map[string]string{"challengeId": "x", "derivedKey": "not base64!", "proof": "x"},
		map[string]string{"challengeId": "x", "derivedKey": b64([]byte("short")), "proof": "x"},
		"a string", []int{1, 2},
	} {
		if st, _ := v.do("POST", "/vault/unlock", body); st != http.StatusBadRequest {
			t.Errorf("malformed %v: %d", body, st)
		}
	}
}

func TestPasswordChange(t *testing.T) {
	v := newTestVault(t, "")
	old := v.create("first password is long")
	v.do("PUT", "/vault/apikeys/openai", map[string]string{"key": "sk-openai-1", "baseUrl": "http://localhost:11434/v1", "model": "llama3.1"})
	_, p := v.do("GET", "/vault/params", nil)
	kb, _ := json.Marshal(p["kdf"])
	var kdf crypto.KDFParams
	json.Unmarshal(kb, &kdf)
	newSalt, _ := crypto.NewSalt()
	newKey, _ := crypto.DeriveKEK([]byte("second password, longer"), newSalt, kdf)
	_, ch := v.do("POST", "/vault/unlock/challenge", nil)
	chb, _ := base64.StdEncoding.DecodeString(ch["challenge"].(string))
	st, b := v.do("POST", "/vault/password", map[string]any{"challengeId": ch["challengeId"], "derivedKey": b64(old[:]),
		"proof": b64(crypto.UnlockProof(&old, chb)), "newDerivedKey": b64(newKey[:]), "newSalt": b64(newSalt), "newKdf": kdf})
	if st != http.StatusNoContent {
		t.Fatalf("password change: %d %v", st, b)
	}
	v.do("POST", "/vault/lock", nil)
	if st, _ := v.unlockWith(old); st != http.StatusUnauthorized {
		t.Fatalf("old password still unlocks: %d", st)
	}
	v.clk.add(time.Minute)
	v2 := newTestVault(t, v.dir)
	if st, _ := v2.unlockWith(v2.derive("second password, longer")); st != 200 {
		t.Fatalf("new password: %d", st)
	}
	if _, l := v2.do("GET", "/vault/apikeys", nil); !strings.Contains(mustJSON(l), "openai") {
		t.Fatal("data lost in password change")
	}
}

func TestAPIKeyValidation(t *testing.T) {
	v := newTestVault(t, "")
	v.create("correct horse battery staple")
	for _, tc := range []struct {
		provider string
		body     any
		code     string
	}{
		{"mistral", map[string]string{"key": "k"}, "invalid_provider"},
		{"anthropic", map[string]string{"key": ""}, "invalid_key"},
		{"anthropic", map[string]string{"key": "a\nb"}, "invalid_key"},
		{"openai", map[string]string{"key": "k", "baseUrl": "file:///etc/passwd"}, "invalid_base_url"},
		{"openai", map[string]string{"key": strings.Repeat("k", 5000)}, "invalid_key"},
		{"openai", map[string]string{"key": "k", "baseUrl": "http://localhost:11434/v1"}, "model_required"},
	} {
		st, b := v.do("PUT", "/vault/apikeys/"+tc.provider, tc.body)
		if st != http.StatusBadRequest || errCode(b) != tc.code {
			t.Errorf("%s %v: %d %v, want %s", tc.provider, tc.body, st, b, tc.code)
		}
	}
	if st, _ := v.do("DELETE", "/vault/apikeys/anthropic", nil); st != http.StatusNotFound {
		t.Errorf("delete missing: %d", st)
	}
}

func TestIdentityRecordVerifies(t *testing.T) {
	v := newTestVault(t, "")
	v.create("correct horse battery staple")
	req, _ := http.NewRequest("GET", v.srv.URL+"/vault/identity", nil)
	req.Header.Set(api.ContainerSecretHeader, testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sr crypto.SignedKeyRecord
	json.NewDecoder(resp.Body).Decode(&sr)
	kr, err := crypto.VerifyKeyRecord(sr)
	if err != nil || kr.Subject != "usr_test" {
		t.Fatalf("key record: %+v %v", kr, err)
	}
	_ = context.Background
}

// TestMCPThroughVault lists and calls the agent tools over MCP with the
// container secret, as an external agent runtime in the container would.
func TestMCPThroughVault(t *testing.T) {
	v := newTestVault(t, "")
	v.create("correct horse battery staple")
	call := func(body string) string {
		req, _ := http.NewRequest("POST", v.srv.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set(api.ContainerSecretHeader, testSecret)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	list := call(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)
	if !strings.Contains(list, "ocmt_vault_status") || !strings.Contains(list, "ocmt_unlock_link") {
		t.Fatalf("tools/list: %s", list)
	}
	res := call(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ocmt_unlock_link","arguments":{}}}`)
	if !strings.Contains(res, "https://ocmt.example/#unlock") {
		t.Fatalf("tools/call: %s", res)
	}
}

func TestIntegrations(t *testing.T) {
	v := newTestVault(t, "")
	v.create("correct horse battery staple")
	st, b := v.do("PUT", "/vault/integrations/calendar", map[string]string{"type": "http", "baseUrl": "https://cal.example/api/", "authHeader": "authorization", "authValue": "Bearer cal-secret-77"})
	if st != 200 || b["authHeader"] != "Authorization" || b["baseUrl"] != "https://cal.example/api" {
		t.Fatalf("put: %d %v", st, b)
	}
	_, l := v.do("GET", "/vault/integrations", nil)
	if !strings.Contains(mustJSON(l), `"name":"calendar"`) || strings.Contains(mustJSON(l), "cal-secret-77") {
		t.Fatalf("list: %v", l)
	}
	assertNoPlaintext(t, v.dir, "cal-secret-77")
	for _, tc := range []struct {
		name string
		body map[string]string
		code string
	}{
		{"Bad Name", map[string]string{"type": "http", "baseUrl": "https://x"}, "invalid_name"},
		{"ok", map[string]string{"type": "ftp", "baseUrl": "https://x"}, "invalid_type"},
		{"ok", map[string]string{"type": "http", "baseUrl": "https://user:pw@x"}, "invalid_base_url"},
		{"ok", map[string]string{"type": "http", "baseUrl": "https://x", "authHeader": "X-Key: y", "authValue": "v"}, "invalid_auth_header"},
		{"ok", map[string]string{"type": "http", "baseUrl": "https://x", "authHeader": "host", "authValue": "v"}, "invalid_auth_header"},
		{"ok", map[string]string{"type": "http", "baseUrl": "https://x", "authHeader": "Content-Length", "authValue": "1"}, "invalid_auth_header"},
		{"ok", map[string]string{"type": "http", "baseUrl": "https://x", "authHeader": "X-Key"}, "invalid_auth"},
		{"ok", map[string]string{"type": "http", "baseUrl": "https://x", "authHeader": "X-Key", "authValue": "a\r\nb"}, "invalid_auth_value"},
	} {
		if st, b := v.do("PUT", "/vault/integrations/"+strings.ReplaceAll(tc.name, " ", "%20"), tc.body); st != 400 || errCode(b) != tc.code {
			t.Errorf("%v: %d %v, want %s", tc.body, st, b, tc.code)
		}
	}
	if st, _ := v.do("DELETE", "/vault/integrations/calendar", nil); st != 204 {
		t.Fatalf("delete: %d", st)
	}
	v.do("POST", "/vault/lock", nil)
	if st, _ := v.do("GET", "/vault/integrations", nil); st != http.StatusLocked {
		t.Fatalf("locked list: %d", st)
	}
}

// TestFailedWriteChangesNothing: when the vault file cannot be written, the
// change is undone in memory too (memory never disagrees with the file).
func TestFailedWriteChangesNothing(t *testing.T) {
	v := newTestVault(t, "")
	v.create("correct horse battery staple")
	v.do("PUT", "/vault/apikeys/anthropic", map[string]string{"key": "sk-first"})
	path := filepath.Join(v.dir, vaultFileName)
	if err := os.Rename(path, path+".bak"); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(path, "blocker"), 0o700) // the atomic rename now fails
	if st, _ := v.do("PUT", "/vault/apikeys/openai", map[string]string{"key": "sk-second"}); st < 500 {
		t.Fatalf("write to a blocked vault file answered %d", st)
	}
	if st, _ := v.do("DELETE", "/vault/apikeys/anthropic", nil); st < 500 {
		t.Fatalf("delete with a blocked vault file answered %d", st)
	}
	_, l := v.do("GET", "/vault/apikeys", nil)
	if got := mustJSON(l); !strings.Contains(got, "anthropic") || strings.Contains(got, "openai") {
		t.Fatalf("memory changed although the write failed: %s", got)
	}
}

// TestStrictJSON: a field an endpoint does not take is refused rather than
// ignored (a misspelt optional field such as "approval_id" would otherwise
// change what happens silently), and so is trailing data.
func TestStrictJSON(t *testing.T) {
	v := newTestVault(t, "")
	k := v.derive("correct horse battery staple")
	for _, tc := range []struct {
		body string
		code string
	}{
		{`{"derivedKey":"` + b64(k[:]) + `","extra":1}`, "unknown_field"},
		{`{"derivedKey":"` + b64(k[:]) + `"} {}`, "invalid_json"},
		{`[1,2]`, "invalid_json"},
	} {
		req, _ := http.NewRequest("POST", v.srv.URL+"/vault/init", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.ContainerSecretHeader, testSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b map[string]any
		json.NewDecoder(resp.Body).Decode(&b)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || errCode(b) != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", tc.body, resp.StatusCode, b, tc.code)
		}
	}
	if st, b := v.do("POST", "/vault/init", map[string]any{"derivedKey": b64(k[:])}); st != http.StatusCreated {
		t.Fatalf("init: %d %v", st, b)
	}
	if st, b := v.do("POST", "/vault/capabilities", map[string]any{"approval_id": "x", "resource": "calendar"}); st != http.StatusBadRequest || errCode(b) != "unknown_field" {
		t.Errorf("misspelt approvalId: %d %v", st, b)
	}
}
