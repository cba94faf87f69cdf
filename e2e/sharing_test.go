package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/xtest"
)

// fakeAPI is a shared resource: it records the credential it receives.
type fakeAPI struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string
}

func newFakeAPI(t testing.TB, ln net.Listener) *fakeAPI {
	f := &fakeAPI{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auths = append(f.auths, r.Header.Get("Authorization"))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"events":[{"title":"Dentist at nine"}]}`))
	}))
	if ln != nil {
		f.Listener.Close()
		f.Listener = ln
	}
	f.Start()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) sawOnly(secret string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.auths {
		if a != secret {
			return false
		}
	}
	return len(f.auths) > 0
}

// readyVault provisions c's container and creates its vault.
func readyVault(t testing.TB, env *xtest.Env, c *api.Client, password string) vaultAPI {
	t.Helper()
	v, _ := readyVaultKey(t, env, c, password)
	return v
}

// readyVaultKey is readyVault that also returns the password's KEK.
func readyVaultKey(t testing.TB, env *xtest.Env, c *api.Client, password string) (vaultAPI, crypto.KEK) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.ProvisionAgent(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitAgent(ctx, api.StateRunning); err != nil {
		t.Fatal(err)
	}
	v := vaultAPI{t: t, c: c, env: env}
	k := v.deriveKey(password)
	v.json("POST", "/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(k[:])}, nil)
	return v, k
}

// TestSharingEndToEnd: Alice shares an integration with Bob through the
// real management role and relay; Bob's container calls it, Alice's
// container executes it with her credential; revocation refuses Bob's next
// call at once; a paused issuer is woken by the call.
func TestSharingEndToEnd(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} })) // the fake API is on loopback
	runSharing(t, env, newFakeAPI(t, nil), nil)
}

// TestSharingDocker runs the same story with real containers: the relay
// and the fake API listen on the agent network's gateway; Bob's container
// /data is searched for Alice's credential too.
func TestSharingDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	env := xtest.NewEnv(t, xtest.WithRuntime(config.RuntimeDocker), xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} }))
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	nw, err := cli.NetworkInspect(ctx, env.Cfg.Network, client.NetworkInspectOptions{})
	if err != nil || len(nw.Network.IPAM.Config) == 0 {
		t.Fatalf("inspect network: %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(nw.Network.IPAM.Config[0].Gateway.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	runSharing(t, env, newFakeAPI(t, ln), func(uid string) []byte {
		res, err := cli.CopyFromContainer(context.Background(), "ocmt-"+uid, client.CopyFromContainerOptions{SourcePath: "/data"})
		if err != nil {
			t.Errorf("copy /data: %v", err)
			return nil
		}
		defer res.Content.Close()
		b, _ := io.ReadAll(res.Content)
		return b
	})
}

func runSharing(t *testing.T, env *xtest.Env, cal *fakeAPI, containerData func(userID string) []byte) {
	ctx := context.Background()
	alice, au := env.Admin("alice@example.org")
	bob, bu := env.Invite(alice, "bob@example.org")
	av := readyVault(t, env, alice, "alice's long password")
	bv := readyVault(t, env, bob, "bob's long password")
	const secret = "Bearer alice-calendar-secret-5150"
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": cal.URL, "authHeader": "Authorization", "authValue": secret}, nil)

	share := func() string {
		var out struct {
			JTI   string `json:"jti"`
			Token string `json:"token"`
		}
		av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"}, "expiresIn": 7 * 24 * 3600, "maxCalls": 50}, &out)
		if !strings.HasPrefix(out.Token, "ocap1.") {
			t.Fatalf("share: %+v", out)
		}
		// The grant reaches Bob's container through the relay.
		if list := waitReceived(t, bob, out.JTI, 10*time.Second); !strings.Contains(list, `"issuerEmail":"alice@example.org"`) {
			t.Fatalf("received list without the issuer's email: %s", list)
		}
		return out.JTI
	}
	call := func(jti string) *api.Response {
		r, err := bob.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities/"+jti+"/call", map[string]string{"operation": "read", "path": "/events"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	jti := share()
	r := call(jti)
	if r.Status != 200 || !strings.Contains(string(r.Body), "Dentist at nine") {
		t.Fatalf("call: %d %s", r.Status, r.Body)
	}
	if !cal.sawOnly(secret) {
		t.Fatalf("the API did not get Alice's credential: %v", cal.auths)
	}
	// Sharing is audited as metadata for Alice.
	var audit struct {
		Events []api.AuditEvent `json:"events"`
	}
	alice.JSON(ctx, "GET", "/api/v1/audit?action=sharing.", nil, &audit)
	if len(audit.Events) == 0 || audit.Events[0].Target != string(bu.ID) {
		t.Fatalf("no sharing audit: %+v", audit.Events)
	}

	// The management role keeps the grant's metadata for both sides.
	grantStatus := func(c *api.Client, side, jti string) string {
		var g map[string][]map[string]any
		if err := c.JSON(ctx, "GET", "/api/v1/me/grants", nil, &g); err != nil {
			t.Fatal(err)
		}
		for _, x := range g[side] {
			if x["jti"] == jti {
				if strings.Contains(mustJSONString(x), "ocap1.") {
					t.Fatalf("grant metadata holds the token: %v", x)
				}
				return fmt.Sprint(x["status"])
			}
		}
		return "missing"
	}
	if a, b := grantStatus(alice, "issued", jti), grantStatus(bob, "received", jti); a != "active" || b != "active" {
		t.Fatalf("grant metadata: alice %s, bob %s", a, b)
	}

	// Revocation refuses Bob's next call within a second.
	if err := alice.JSON(ctx, "DELETE", "/api/v1/me/agent/vault/capabilities/"+jti, nil, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r = call(jti)
	if r.Status != http.StatusForbidden || r.ErrorCode() != "capability_revoked" || time.Since(start) > time.Second {
		t.Fatalf("after revoke: %d %s in %v", r.Status, r.Body, time.Since(start))
	}

	if a := grantStatus(alice, "issued", jti); a != "revoked" {
		t.Fatalf("grant metadata after revoke: %s", a)
	}

	// A paused issuer is woken by the call and answers.
	jti2 := share()
	if err := alice.AdminAction(ctx, string(au.ID), api.ActionPause); err != nil {
		t.Fatal(err)
	}
	r = call(jti2)
	if r.Status != 200 || !strings.Contains(string(r.Body), "Dentist") {
		t.Fatalf("call to a paused issuer: %d %s", r.Status, r.Body)
	}
	// The record follows the engine: the engine's unpause answer can trail
	// the container's first reply by a few milliseconds.
	xtest.Eventually(t, 5*time.Second, func() error {
		if st, _ := alice.Agent(ctx); st.State != api.StateRunning {
			return errString("issuer state after the call: " + st.State)
		}
		return nil
	})

	// A stopped issuer (paused first, as hibernation does) is started by
	// the call; its vault comes back unlocked (the agent role kept the
	// hibernation key in memory) and answers.
	for _, action := range []string{api.ActionPause, api.ActionStop} {
		if err := alice.AdminAction(ctx, string(au.ID), action); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := alice.Agent(ctx); st.State != api.StateStopped {
		t.Fatalf("issuer not stopped: %s", st.State)
	}
	start = time.Now()
	r = call(jti2)
	if r.Status != 200 || !strings.Contains(string(r.Body), "Dentist") {
		t.Fatalf("call to a stopped issuer: %d %s", r.Status, r.Body)
	}
	t.Logf("call to a stopped issuer: %v", time.Since(start).Round(time.Millisecond))
	if av.locked() {
		t.Fatal("the issuer's vault is locked after the wake")
	}

	// Bob's container never held Alice's credential; the platform neither.
	env.Stop()
	filepath.Walk(env.Cfg.DataDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte("alice-calendar-secret-5150")) {
				t.Errorf("%s holds Alice's credential in the clear", p)
			}
		}
		return nil
	})
	if strings.Contains(env.Log.String(), "alice-calendar-secret-5150") || strings.Contains(env.Log.String(), "Dentist at nine") {
		t.Error("the logs hold a credential or a payload")
	}
	if containerData != nil {
		if b := containerData(string(bu.ID)); bytes.Contains(b, []byte("alice-calendar-secret-5150")) || len(b) == 0 {
			t.Errorf("Bob's /data holds Alice's credential (or could not be read: %d bytes)", len(b))
		}
	}
	_ = bv
}

// waitReceived waits up to timeout until jti is in the received list of
// the recipient's vault (the grant came through the relay) and returns
// that list as JSON text.
func waitReceived(t *testing.T, recipient *api.Client, jti string, timeout time.Duration) string {
	t.Helper()
	var list string
	xtest.Eventually(t, timeout, func() error {
		var got map[string]any
		if err := recipient.JSON(context.Background(), "GET", "/api/v1/me/agent/vault/capabilities?direction=received", nil, &got); err != nil {
			return err
		}
		if list = mustJSONString(got); !strings.Contains(list, jti) {
			return errString("grant " + jti + " not received yet")
		}
		return nil
	})
	return list
}

type errString string

func (e errString) Error() string { return string(e) }

func mustJSONString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSharingOfflineAndRelayRestart: a grant sent while Bob's vault is
// locked (not connected to the relay) waits at the relay, survives a
// restart of the server, and reaches Bob once he unlocks.
func TestSharingOfflineAndRelayRestart(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} }))
	ctx := context.Background()
	cal := newFakeAPI(t, nil)
	alice, _ := env.Admin("alice@example.org")
	bob, _ := env.Invite(alice, "bob@example.org")
	av := readyVault(t, env, alice, "alice's long password")
	bv := readyVault(t, env, bob, "bob's long password")
	bobKey := bv.deriveKey("bob's long password")
	bv.json("POST", "/lock", nil, nil) // Bob goes offline for the relay
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": cal.URL, "authHeader": "Authorization", "authValue": "Bearer s"}, nil)
	var out struct {
		JTI string `json:"jti"`
	}
	av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"}, "expiresIn": 3600}, &out)

	env.Restart() // the relay's queue is in SQLite

	if err := bob.ProvisionAgent(ctx); err != nil { // wakes Bob's container after the restart
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := bob.WaitAgent(wctx, api.StateRunning); err != nil {
		t.Fatal(err)
	}
	bv.unlock(bobKey)
	// The vault redials the relay with backoff (up to 30 s between tries,
	// roles/vault/relayclient.go); after a restart under load the first
	// tries can fail, so allow one full backoff step.
	waitReceived(t, bob, out.JTI, 45*time.Second)
}

// TestSharingSplitRoles runs the sharing story with management, agent and
// relay as three separate servers: the relay reads the key directory from
// management and wakes recipients through the agent role, over HTTP.
func TestSharingSplitRoles(t *testing.T) {
	env := xtest.NewSplitEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} }))
	runSharing(t, env, newFakeAPI(t, nil), nil)
}

// TestSharingProviderKey: Alice shares her model provider key with Bob with
// a call budget; Bob's requests reach the provider with Alice's key, Bob
// never holds it, and the budget ends his access. Then Alice's agent asks
// to share it again and Alice approves the request, narrowed.
func TestSharingProviderKey(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} }))
	ctx := context.Background()
	fp := fakeprovider.New()
	defer fp.Close()
	const aliceKey = "sk-ant-household-9d41"
	fp.SetKey(aliceKey)
	alice, _ := env.Admin("alice@example.org")
	bob, _ := env.Invite(alice, "bob@example.org")
	av := readyVault(t, env, alice, "alice's long password")
	readyVault(t, env, bob, "bob's long password")
	av.json("PUT", "/apikeys/anthropic", map[string]string{"key": aliceKey, "baseUrl": fp.URL()}, nil)
	var out struct {
		JTI string `json:"jti"`
	}
	av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "provider:anthropic",
		"scope": []string{"write"}, "expiresIn": 3600, "maxCalls": 2}, &out)
	call := func() *api.Response {
		var r *api.Response
		xtest.Eventually(t, 10*time.Second, func() error {
			var err error
			r, err = bob.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities/"+out.JTI+"/call", map[string]any{
				"operation": "write", "path": "/v1/messages",
				"body": `{"model":"claude-test","max_tokens":50,"messages":[{"role":"user","content":"hello from bob"}]}`})
			if err != nil {
				return err
			}
			if r.Status == 404 || r.ErrorCode() == "not_found" { // the grant is still on its way
				return errString("grant not delivered yet")
			}
			return nil
		})
		return r
	}
	fp.Script(fakeprovider.Reply{Text: "Hi Bob, this is Alice's model."})
	r := call()
	if r.Status != 200 || !strings.Contains(string(r.Body), "Alice's model") {
		t.Fatalf("shared provider call: %d %s", r.Status, r.Body)
	}
	reqs := fp.Requests()
	if len(reqs) != 1 || !strings.Contains(string(reqs[0].Messages), "hello from bob") {
		t.Fatalf("provider requests: %+v", reqs)
	}
	call()
	if r := call(); r.Status != http.StatusForbidden || r.ErrorCode() != "capability_budget_exhausted" {
		t.Fatalf("third call with a budget of 2: %d %s", r.Status, r.Body)
	}

	// Alice's agent asks to share the key again: a pending approval, nothing
	// issued. Alice approves it, narrowed, through the management role
	// (which adds Bob's keys); Bob gets it like any share; once only.
	fp.Script(fakeprovider.Reply{ToolCall: &fakeprovider.ToolCallReply{Name: "ocmt_issue_capability", Input: map[string]any{
		"resource": "provider:anthropic", "subjectEmail": "bob@example.org", "scope": []string{"write"}, "days": 2, "maxCalls": 10,
		"reason": "Bob used up his budget."}}},
		fakeprovider.Reply{Text: "I asked you to approve it in the Sharing tab."})
	if _, final := dialChat(t, env, alice).chatOnce("main", "give Bob ten more calls"); !strings.Contains(final, "Sharing tab") {
		t.Fatalf("chat: %q", final)
	}
	if reqs := fp.Requests(); !strings.Contains(string(reqs[len(reqs)-1].Messages), "pending_approval") {
		t.Fatalf("the model did not get the pending approval: %s", reqs[len(reqs)-1].Messages)
	}
	var pending struct {
		Approvals []struct {
			ID      string `json:"id"`
			Reason  string `json:"reason"`
			Request struct {
				Resource     string `json:"resource"`
				SubjectEmail string `json:"subjectEmail"`
				MaxCalls     int    `json:"maxCalls"`
			} `json:"request"`
		} `json:"approvals"`
	}
	av.json("GET", "/approvals", nil, &pending)
	if len(pending.Approvals) != 1 || pending.Approvals[0].Request.Resource != "provider:anthropic" || pending.Approvals[0].Request.MaxCalls != 10 ||
		pending.Approvals[0].Reason != "Bob used up his budget." {
		t.Fatalf("approvals: %+v", pending)
	}
	approval := map[string]any{"approvalId": pending.Approvals[0].ID, "subjectEmail": "bob@example.org", "resource": "provider:anthropic",
		"scope": []string{"write"}, "expiresIn": 86400, "maxCalls": 1}
	if r, err := alice.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities", map[string]any{"approvalId": pending.Approvals[0].ID,
		"subjectEmail": "bob@example.org", "resource": "provider:anthropic", "scope": []string{"write", "delete"}, "expiresIn": 86400}); err != nil ||
		r.Status != http.StatusConflict || r.ErrorCode() != "approval_exceeded" {
		t.Fatalf("broader approve: %v %+v", err, r)
	}
	av.json("POST", "/capabilities", approval, &out)
	if r, err := alice.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities", approval); err != nil || r.Status != http.StatusNotFound ||
		r.ErrorCode() != "approval_not_found" {
		t.Fatalf("second approve: %v %+v", err, r)
	}
	var audit struct {
		Events []api.AuditEvent `json:"events"`
	}
	alice.JSON(ctx, "GET", "/api/v1/audit?action=sharing.granted", nil, &audit)
	if len(audit.Events) != 2 || audit.Events[0].Detail["jti"] != out.JTI || audit.Events[0].Detail["approval"] != "true" ||
		audit.Events[1].Detail["approval"] != "" {
		t.Fatalf("grant audit: %+v", audit.Events)
	}
	fp.Script(fakeprovider.Reply{Text: "Hi again, Bob."})
	if r := call(); r.Status != 200 || !strings.Contains(string(r.Body), "Hi again") {
		t.Fatalf("call through the approved share: %d %s", r.Status, r.Body)
	}
	if r := call(); r.Status != http.StatusForbidden || r.ErrorCode() != "capability_budget_exhausted" {
		t.Fatalf("second call with the narrowed budget of 1: %d %s", r.Status, r.Body)
	}
	env.Stop()
	filepath.Walk(filepath.Join(env.Cfg.DataDir, "users"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(aliceKey)) {
				t.Errorf("%s holds Alice's provider key in the clear", p)
			}
		}
		return nil
	})
}

// TestSharingLockedIssuerFailsFast: with --hibernate-unlocked=false a stop
// locks the issuer's vault; Bob's call then wakes the container, which
// cannot connect to the relay while locked, and Bob is told so in plain
// words within the relay's connect grace instead of waiting out his own
// timeout; his next call is refused at once; once Alice unlocks, calls
// work again.
func TestSharingLockedIssuerFailsFast(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) {
		c.AllowPrivateTargets = config.PrivateTargets{All: true}
		c.HibernateUnlocked = false
	}))
	ctx := context.Background()
	cal := newFakeAPI(t, nil)
	alice, au := env.Admin("alice@example.org")
	bob, _ := env.Invite(alice, "bob@example.org")
	av := readyVault(t, env, alice, "alice's long password")
	readyVault(t, env, bob, "bob's long password")
	aliceKey := av.deriveKey("alice's long password")
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": cal.URL, "authHeader": "Authorization", "authValue": "Bearer s"}, nil)
	var out struct {
		JTI string `json:"jti"`
	}
	av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"}, "expiresIn": 3600}, &out)
	call := func() *api.Response {
		r, err := bob.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities/"+out.JTI+"/call", map[string]string{"operation": "read", "path": "/events"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if r := call(); r.Status != 200 {
			return errString(fmt.Sprintf("call before the stop: %d %s", r.Status, r.Body))
		}
		return nil
	})

	if err := alice.AdminAction(ctx, string(au.ID), api.ActionStop); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := call()
	took := time.Since(start)
	if r.Status != http.StatusServiceUnavailable || r.ErrorCode() != "issuer_unavailable" || !strings.Contains(string(r.Body), "locked") {
		t.Fatalf("call to a locked issuer: %d %s", r.Status, r.Body)
	}
	if took > 20*time.Second {
		t.Fatalf("locked issuer reported after %v", took)
	}
	t.Logf("locked issuer reported after %v", took.Round(time.Millisecond))
	if !av.locked() {
		t.Fatal("with --hibernate-unlocked=false the vault must be locked after a stop")
	}
	start = time.Now()
	if r := call(); r.ErrorCode() != "issuer_unavailable" || time.Since(start) > 2*time.Second {
		t.Fatalf("second call: %d %s after %v", r.Status, r.Body, time.Since(start))
	}

	// Alice unlocks: her vault connects and the next call works.
	av.unlock(aliceKey)
	xtest.Eventually(t, 10*time.Second, func() error {
		if r := call(); r.Status != 200 {
			return errString(fmt.Sprintf("call after unlock: %d %s", r.Status, r.Body))
		}
		return nil
	})
}
