package vault

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/relay"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
)

type mapDir struct {
	mu   sync.Mutex
	keys map[string]ed25519.PublicKey
}

func (d *mapDir) Ed25519Key(_ context.Context, user string) (ed25519.PublicKey, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if k, ok := d.keys[user]; ok {
		return k, nil
	}
	return nil, store.ErrNotFound
}

// sharingVault is a vault Server connected to the test relay.
type sharingVault struct {
	*tv
	user     string
	relayURL string
	logs     io.Writer
	key      crypto.KEK // the derived key it was created with
	stop     func()     // stops its server (idempotent)
}

func newSharingVault(t *testing.T, user, relayURL string, dir *mapDir, logs io.Writer) *sharingVault {
	t.Helper()
	v := startSharingVault(t, user, relayURL, t.TempDir(), logs)
	rand.Read(v.key[:])
	if st, body := v.do("POST", "/vault/init", map[string]string{"derivedKey": b64(v.key[:])}); st != http.StatusCreated {
		t.Fatalf("init %s: %d %v", user, st, body)
	}
	rec, err := v.s.readIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := crypto.ParseEd25519(rec.Ed25519)
	dir.mu.Lock()
	dir.keys[user] = pub
	dir.mu.Unlock()
	return v
}

// startSharingVault runs a vault Server of user on data directory d.
func startSharingVault(t *testing.T, user, relayURL, d string, logs io.Writer) *sharingVault {
	t.Helper()
	s, err := New(Options{Secret: testSecret, Version: "test", Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DataDir: d, PublicURL: "https://ocmt.example", UserID: user, RelayURL: relayURL, AllowPrivateTargets: config.PrivateTargets{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; srv.Close() }) }
	t.Cleanup(stop)
	return &sharingVault{tv: &tv{t: t, s: s, srv: srv, dir: d}, user: user, relayURL: relayURL, logs: logs, stop: stop}
}

// restart stops v's server and returns a new one on the same data
// directory, unlocked with v's key, as a container restart does: nothing
// of v's memory survives.
func (v *sharingVault) restart() *sharingVault {
	v.t.Helper()
	v.stop()
	n := startSharingVault(v.t, v.user, v.relayURL, v.dir, v.logs)
	n.key = v.key
	if st, body := n.unlockWith(n.key); st != http.StatusOK {
		v.t.Fatalf("unlock after restart: %d %v", st, body)
	}
	return n
}

// subject is what the management role injects: the subject's signed record.
func (v *sharingVault) subject() map[string]any {
	b, err := os.ReadFile(filepath.Join(v.dir, identityFileName))
	if err != nil {
		v.t.Fatal(err)
	}
	var sr crypto.SignedKeyRecord
	json.Unmarshal(b, &sr)
	return map[string]any{"userId": v.user, "signed": sr}
}

func waitFor(t *testing.T, what string, d time.Duration, f func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !f() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startTestRelay runs a relay role on a temporary store behind httptest and
// returns its WebSocket URL, its directory (register vault keys in it), and
// the log it writes to.
func startTestRelay(t *testing.T) (relayURL string, dir *mapDir, logs *syncBuf) {
	t.Helper()
	relayURL, dir, logs, _ = startTestRelayDB(t)
	return relayURL, dir, logs
}

// startTestRelayDB is startTestRelay that also returns the path of the
// relay's SQLite database (what a relay operator can read and write).
func startTestRelayDB(t *testing.T) (relayURL string, dir *mapDir, logs *syncBuf, dbPath string) {
	t.Helper()
	logs = &syncBuf{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	dbPath = filepath.Join(t.TempDir(), store.FileName)
	st, err := store.Open(context.Background(), dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dir = &mapDir{keys: map[string]ed25519.PublicKey{}}
	rl, err := relay.New(relay.Options{Store: st, Directory: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	e := web.New(log, false)
	rl.Routes(e.Group("/relay/v1"))
	rsrv := httptest.NewServer(e)
	t.Cleanup(func() { rl.Close(); rsrv.Close() })
	relayURL = "ws" + strings.TrimPrefix(rsrv.URL, "http") + "/relay/v1/connect"
	return relayURL, dir, logs, dbPath
}

func TestSharingThroughRelay(t *testing.T) {
	relayURL, dir, logs := startTestRelay(t)

	const secret = "Bearer alice-calendar-secret-7f3a9c"
	var apiMu sync.Mutex
	var seenAuth []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiMu.Lock()
		seenAuth = append(seenAuth, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		apiMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"events":[{"title":"standup"}]}`)
	}))
	t.Cleanup(fake.Close)

	alice := newSharingVault(t, "usr_aliceaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
	bob := newSharingVault(t, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
	waitFor(t, "relay connections", 5*time.Second, func() bool { return alice.s.relay.connected() && bob.s.relay.connected() })

	if st, body := alice.do("PUT", "/vault/integrations/calendar", map[string]string{"type": "http", "baseUrl": fake.URL, "authHeader": "Authorization", "authValue": secret}); st != 200 {
		t.Fatalf("integration: %d %v", st, body)
	}
	// Refusals at issue time.
	if st, body := alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"}, "expiresIn": 600}); st != 400 || errCode(body) != "subject_unknown" {
		t.Fatalf("no subject: %d %v", st, body)
	}
	if st, body := alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "nope", "scope": []string{"read"}, "expiresIn": 600, "subject": bob.subject()}); st != 400 {
		t.Fatalf("unknown resource: %d %v", st, body)
	}
	bad := bob.subject()
	bad["userId"] = "usr_malloryaaaaaaaaaaaaaaaaaaa"
	if st, body := alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"}, "expiresIn": 600, "subject": bad}); st != 400 || errCode(body) != "subject_unknown" {
		t.Fatalf("mismatched subject: %d %v", st, body)
	}

	st1, issued := alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar",
		"scope": []string{"read"}, "expiresIn": 7 * 24 * 3600, "maxCalls": 2, "subject": bob.subject()})
	if st1 != http.StatusCreated || issued["delivered"] != true {
		t.Fatalf("issue: %d %v", st1, issued)
	}
	jti := issued["jti"].(string)
	if !strings.HasPrefix(issued["token"].(string), "ocap1.") {
		t.Fatalf("token: %v", issued["token"])
	}

	var recv map[string]any
	waitFor(t, "Bob receives the grant", 5*time.Second, func() bool {
		_, l := bob.do("GET", "/vault/capabilities?direction=received", nil)
		caps, _ := l["capabilities"].([]any)
		if len(caps) == 1 {
			recv = caps[0].(map[string]any)
			return true
		}
		return false
	})
	if recv["jti"] != jti || recv["issuerUserId"] != "usr_aliceaaaaaaaaaaaaaaaaaaaaa" || recv["resource"] != "calendar" || recv["status"] != "active" {
		t.Fatalf("received: %v", recv)
	}
	_, il := alice.do("GET", "/vault/capabilities?direction=issued", nil)
	if b, _ := json.Marshal(il); strings.Contains(string(b), "alice-calendar-secret") || !strings.Contains(string(b), jti) {
		t.Fatalf("issued list: %s", b)
	}

	call := func(op, method string) (int, map[string]any) {
		t.Helper()
		req := map[string]any{"operation": op, "path": "/events?day=today"}
		if method != "" {
			req["method"] = method
		}
		return bob.do("POST", "/vault/capabilities/"+jti+"/call", req)
	}
	st2, res := call("read", "")
	if st2 != 200 || res["status"] != float64(200) || !strings.Contains(res["body"].(string), "standup") {
		t.Fatalf("call 1: %d %v", st2, res)
	}
	apiMu.Lock()
	if len(seenAuth) != 1 || seenAuth[0] != "GET /events "+secret {
		t.Fatalf("fake API saw %q", seenAuth)
	}
	apiMu.Unlock()

	// Outside the scope: refused, and no budget used.
	if st, body := call("write", ""); st != 403 || errCode(body) != "capability_out_of_scope" {
		t.Fatalf("write: %d %v", st, body)
	}
	if st, body := call("read", "DELETE"); st != 403 || errCode(body) != "capability_out_of_scope" {
		t.Fatalf("DELETE as read: %d %v", st, body)
	}
	if st, body := call("read", ""); st != 200 {
		t.Fatalf("call 2: %d %v", st, body)
	}
	if st, body := call("read", ""); st != 403 || errCode(body) != "capability_budget_exhausted" {
		t.Fatalf("call 3: %d %v", st, body)
	}
	apiMu.Lock()
	if len(seenAuth) != 2 {
		t.Fatalf("fake API calls: %q", seenAuth)
	}
	apiMu.Unlock()
	_, l := bob.do("GET", "/vault/capabilities?direction=received", nil)
	if s := l["capabilities"].([]any)[0].(map[string]any)["status"]; s != "exhausted" {
		t.Fatalf("status after budget: %v", s)
	}

	// A second grant, to test revocation and expiry.
	_, g2 := alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar",
		"scope": []string{"read", "list"}, "expiresIn": 3600, "subject": bob.subject()})
	jti2 := g2["jti"].(string)
	waitFor(t, "second grant", 5*time.Second, func() bool {
		_, l := bob.do("GET", "/vault/capabilities?direction=received", nil)
		caps, _ := l["capabilities"].([]any)
		return len(caps) == 2
	})
	call2 := func(op string) (int, map[string]any) {
		return bob.do("POST", "/vault/capabilities/"+jti2+"/call", map[string]any{"operation": op, "path": "/events"})
	}
	if st, body := call2("list"); st != 200 {
		t.Fatalf("list: %d %v", st, body)
	}
	// Expiry (the issuer's capability clock moved past exp + skew).
	alice.s.capSkew.Store(int64(2 * time.Hour))
	if st, body := call2("read"); st != 403 || errCode(body) != "capability_expired" {
		t.Fatalf("expired: %d %v", st, body)
	}
	alice.s.capSkew.Store(0)

	// Revocation: at once, locally and at the relay.
	if st, body := alice.do("DELETE", "/vault/capabilities/"+jti2, nil); st != http.StatusNoContent {
		t.Fatalf("revoke: %d %v", st, body)
	}
	alice.s.keys.mu.Lock()
	relayRevoked := alice.s.capsForTest().Issued[jti2].RelayRevoked
	alice.s.keys.mu.Unlock()
	if !relayRevoked {
		t.Fatal("the relay did not confirm the revocation")
	}
	start := time.Now()
	if st, body := call2("read"); st != 403 || errCode(body) != "capability_revoked" {
		t.Fatalf("after revoke: %d %v", st, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("revoked refusal took %v", d)
	}
	_, l = bob.do("GET", "/vault/capabilities?direction=received", nil)
	for _, c := range l["capabilities"].([]any) {
		if m := c.(map[string]any); m["jti"] == jti2 && m["status"] != "revoked" {
			t.Fatalf("received status after revoke: %v", m)
		}
	}
	_, l = alice.do("GET", "/vault/capabilities?direction=issued", nil)
	for _, c := range l["capabilities"].([]any) {
		if m := c.(map[string]any); m["jti"] == jti2 && m["status"] != "revoked" {
			t.Fatalf("issued status after revoke: %v", m)
		}
	}
	// Unknown jti.
	if st, _ := bob.do("POST", "/vault/capabilities/AAAAAAAAAAAAAAAAAAAAAA/call", map[string]any{"operation": "read", "path": "/x"}); st != 404 {
		t.Fatalf("unknown jti: %d", st)
	}
	if st, body := call2("read"); st != 403 {
		t.Fatalf("bad: %d %v", st, body)
	}

	// Locked: 423, and the relay connection goes away.
	bob.do("POST", "/vault/lock", nil)
	if st, body := call("read", ""); st != http.StatusLocked || errCode(body) != "vault_locked" {
		t.Fatalf("locked: %d %v", st, body)
	}
	waitFor(t, "disconnect on lock", 3*time.Second, func() bool { return !bob.s.relay.connected() })

	// Alice's credential never reaches Bob's files, nor any log.
	filepath.WalkDir(bob.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("alice-calendar-secret")) {
				t.Errorf("%s contains Alice's credential", p)
			}
		}
		return nil
	})
	if strings.Contains(logs.String(), "alice-calendar-secret") || strings.Contains(logs.String(), "standup") {
		t.Errorf("logs contain a credential or a body")
	}
}

func TestCallPathAndAddressGuards(t *testing.T) {
	for _, p := range []string{"", "events", "//evil.example/x", "/a/../b", "/a/%2e%2e/b", "/a#x", "/a b", `/a\b`} {
		if checkCallPath(p) == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	for _, p := range []string{"/", "/events", "/events?day=today&x=1"} {
		if err := checkCallPath(p); err != nil {
			t.Errorf("path %q refused: %v", p, err)
		}
	}
	s := &Server{}
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer fake.Close()
	res := s.runHTTP(context.Background(), "api", integration{BaseURL: fake.URL}, callPayload{Method: "GET", Path: "/x"})
	if res.Error == nil || res.Error.Code != "target_refused" {
		t.Fatalf("loopback target: %+v", res)
	}
}

// TestCallWaits: a shared model key gets minutes (a whole reply of a slow
// model), other resources the ordinary limit; the caller always waits
// longer than the issuer gives the resource.
func TestCallWaits(t *testing.T) {
	for _, tc := range []struct {
		resource string
		exec     time.Duration
	}{{"calendar", execTimeout}, {"provider:anthropic", providerExecTimeout}, {"provider:openai", providerExecTimeout}} {
		if got := execTimeoutFor(tc.resource); got != tc.exec {
			t.Errorf("%s: exec %v, want %v", tc.resource, got, tc.exec)
		}
		if w := callWait(tc.resource); w <= tc.exec {
			t.Errorf("%s: caller waits %v, not longer than the execution %v", tc.resource, w, tc.exec)
		}
	}
	if callWait("calendar") != callTimeout {
		t.Errorf("calendar wait %v", callWait("calendar"))
	}
}

// TestCheckModelCall: a shared model key serves one non-streamed chat
// request on the owner's model, nothing else of the provider's API.
func TestCheckModelCall(t *testing.T) {
	chat := `{"model":"m1","max_tokens":10,"messages":[]}`
	for _, tc := range []struct {
		name, provider, model, method, path, body, code string
	}{
		{"anthropic chat", "anthropic", "", "POST", "/v1/messages", chat, ""},
		{"openai chat", "openai", "", "POST", "/chat/completions", chat, ""},
		{"owner's model", "anthropic", "m1", "POST", "/v1/messages", chat, ""},
		{"body as a JSON string", "anthropic", "", "POST", "/v1/messages", mustJSON(chat), ""},
		{"batches", "anthropic", "", "POST", "/v1/messages/batches", chat, "endpoint_not_allowed"},
		{"files", "openai", "", "POST", "/files", chat, "endpoint_not_allowed"},
		{"query", "anthropic", "", "POST", "/v1/messages?beta=true", chat, "endpoint_not_allowed"},
		{"other provider's path", "openai", "", "POST", "/v1/messages", chat, "endpoint_not_allowed"},
		{"GET", "anthropic", "", "GET", "/v1/messages", chat, "endpoint_not_allowed"},
		{"stream", "anthropic", "", "POST", "/v1/messages", `{"model":"m1","stream":true}`, "invalid_request"},
		{"several choices", "openai", "", "POST", "/chat/completions", `{"model":"m1","n":5}`, "invalid_request"},
		{"array", "openai", "", "POST", "/chat/completions", `[1]`, "invalid_request"},
		{"other model", "anthropic", "m2", "POST", "/v1/messages", chat, "model_not_allowed"},
		{"no model", "anthropic", "m2", "POST", "/v1/messages", `{"max_tokens":1}`, "model_not_allowed"},
	} {
		call := callPayload{Method: tc.method, Path: tc.path, Body: json.RawMessage(tc.body)}
		if code, msg := checkModelCall(tc.provider, tc.model, &call); code != tc.code {
			t.Errorf("%s: %q (%s), want %q", tc.name, code, msg, tc.code)
		}
	}
}
