package vault

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocmt/ocmt/testdata/fakeprovider"
)

// sharingPair is Alice and Bob on one in-process relay, Alice sharing her
// "calendar" integration (a fake API) with Bob for read and list.
type sharingPair struct {
	alice, bob *sharingVault
	jti        string
	apiMu      sync.Mutex
	apiSeen    []string
}

func (p *sharingPair) apiCalls() []string {
	p.apiMu.Lock()
	defer p.apiMu.Unlock()
	return append([]string(nil), p.apiSeen...)
}

func newSharingPair(t *testing.T) *sharingPair {
	t.Helper()
	relayURL, dir, logs := startTestRelay(t)

	p := &sharingPair{}
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.apiMu.Lock()
		p.apiSeen = append(p.apiSeen, r.Method+" "+r.URL.Path)
		p.apiMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"events":[{"title":"standup"}]}`)
	}))
	t.Cleanup(fake.Close)

	p.alice = newSharingVault(t, "usr_aliceaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
	p.bob = newSharingVault(t, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
	waitFor(t, "relay connections", 5*time.Second, func() bool { return p.alice.s.relay.connected() && p.bob.s.relay.connected() })
	if st, body := p.alice.do("PUT", "/vault/integrations/calendar", map[string]string{"type": "http", "baseUrl": fake.URL,
		"authHeader": "Authorization", "authValue": "Bearer alice-secret"}); st != 200 {
		t.Fatalf("integration: %d %v", st, body)
	}
	st1, issued := p.alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar",
		"scope": []string{"read", "list"}, "expiresIn": 7 * 24 * 3600, "subject": p.bob.subject()})
	if st1 != http.StatusCreated {
		t.Fatalf("issue: %d %v", st1, issued)
	}
	p.jti = issued["jti"].(string)
	waitFor(t, "Bob receives the grant", 5*time.Second, func() bool {
		_, l := p.bob.do("GET", "/vault/capabilities?direction=received", nil)
		caps, _ := l["capabilities"].([]any)
		return len(caps) == 1
	})
	return p
}

// runTool runs an agent tool of v by name with input.
func runTool(t *testing.T, v *sharingVault, name string, input any) (string, error) {
	t.Helper()
	f := v.s.toolFuncs()[name]
	if f == nil {
		t.Fatalf("no tool %s", name)
	}
	b, _ := json.Marshal(input)
	return f(context.Background(), b)
}

func TestSharingTools(t *testing.T) {
	p := newSharingPair(t)
	alice, bob, jti := p.alice, p.bob, p.jti

	// Bob's agent sees the received grant.
	out, err := runTool(t, bob, "ocmt_list_capabilities", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	var lists map[string][]map[string]any
	if err := json.Unmarshal([]byte(out), &lists); err != nil {
		t.Fatalf("list output %q: %v", out, err)
	}
	if r := lists["received"]; len(r) != 1 || r[0]["jti"] != jti || r[0]["resource"] != "calendar" || r[0]["status"] != "active" ||
		r[0]["issuerUserId"] != "usr_aliceaaaaaaaaaaaaaaaaaaaaa" || len(lists["issued"]) != 0 {
		t.Fatalf("Bob's lists: %s", out)
	}
	if strings.Contains(out, "ocap1.") || strings.Contains(out, "alice-secret") {
		t.Fatalf("list leaks a token or secret: %s", out)
	}
	if out, err := runTool(t, bob, "ocmt_list_capabilities", map[string]any{"direction": "issued"}); err != nil || out != `{"issued":[]}` {
		t.Fatalf("issued only: %q %v", out, err)
	}
	if _, err := runTool(t, bob, "ocmt_list_capabilities", map[string]any{"direction": "sideways"}); err == nil {
		t.Fatal("bad direction accepted")
	}

	// Read through the capability: the fake API's answer.
	out, err = runTool(t, bob, "ocmt_call_shared_resource", map[string]any{"jti": jti, "operation": "read", "path": "/events?day=today"})
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	json.Unmarshal([]byte(out), &res)
	if res["status"] != float64(200) || !strings.Contains(res["body"].(string), "standup") {
		t.Fatalf("read: %s", out)
	}
	if c := p.apiCalls(); len(c) != 1 || c[0] != "GET /events" {
		t.Fatalf("fake API saw %q", c)
	}

	// Write and delete are above the agent's ceiling: nothing is sent.
	for _, op := range []string{"write", "delete"} {
		_, err = runTool(t, bob, "ocmt_call_shared_resource", map[string]any{"jti": jti, "operation": op, "path": "/events"})
		if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "web UI") {
			t.Fatalf("%s: %v", op, err)
		}
	}
	// A method cannot be smuggled in.
	if _, err := runTool(t, bob, "ocmt_call_shared_resource", map[string]any{"jti": jti, "operation": "read", "path": "/events", "method": "DELETE"}); err == nil {
		t.Fatal("method field accepted")
	}
	time.Sleep(100 * time.Millisecond)
	if c := p.apiCalls(); len(c) != 1 {
		t.Fatalf("a refused call reached the API: %q", c)
	}

	// Issuing is above the agent's ceiling: a pending approval (approvals_test.go), a summary and a pointer to the Sharing tab.
	_, before := alice.do("GET", "/vault/capabilities?direction=issued", nil)
	out, err = runTool(t, alice, "ocmt_issue_capability", map[string]any{"resource": "calendar", "subjectEmail": "carol@example.org",
		"scope": []string{"read"}, "days": 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"issued":false`, `"status":"pending_approval"`, "calendar", "carol@example.org", "7 days", "Sharing tab", "#sharing"} {
		if !strings.Contains(out, want) {
			t.Fatalf("issue output lacks %q: %s", want, out)
		}
	}
	_, after := alice.do("GET", "/vault/capabilities?direction=issued", nil)
	if len(before["capabilities"].([]any)) != 1 || len(after["capabilities"].([]any)) != 1 {
		t.Fatalf("issued list changed: %v → %v", before, after)
	}

	// Bob cannot revoke what he received; Alice's agent revokes what she issued.
	if _, err := runTool(t, bob, "ocmt_revoke_capability", map[string]any{"jti": jti}); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("Bob revoking: %v", err)
	}
	if out, err := runTool(t, alice, "ocmt_revoke_capability", map[string]any{"jti": jti}); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %q %v", out, err)
	}
	_, err = runTool(t, bob, "ocmt_call_shared_resource", map[string]any{"jti": jti, "operation": "read", "path": "/events"})
	if err == nil || !strings.Contains(err.Error(), "capability_revoked") {
		t.Fatalf("after revoke: %v", err)
	}
	if c := p.apiCalls(); len(c) != 1 {
		t.Fatalf("a revoked call reached the API: %q", c)
	}

	// Locked: every sharing tool points to the unlock link.
	bob.do("POST", "/vault/lock", nil)
	for name, in := range map[string]any{
		"ocmt_list_capabilities":    map[string]any{},
		"ocmt_call_shared_resource": map[string]any{"jti": jti, "operation": "read", "path": "/events"},
		"ocmt_revoke_capability":    map[string]any{"jti": jti},
		"ocmt_issue_capability":     map[string]any{"resource": "calendar", "subjectEmail": "x@example.org"},
	} {
		_, err := runTool(t, bob, name, in)
		if err == nil || !strings.Contains(err.Error(), "vault_locked") || !strings.Contains(err.Error(), unlockURL(bob.s.publicURL)) {
			t.Fatalf("%s locked: %v", name, err)
		}
	}
}

// TestSharingToolThroughChat: Bob's chat model calls the shared resource
// and the final text streams back.
func TestSharingToolThroughChat(t *testing.T) {
	p := newSharingPair(t)
	fp := fakeprovider.New()
	t.Cleanup(fp.Close)
	fp.SetKey("sk-ant-test")
	if st, b := p.bob.do("PUT", "/vault/apikeys/anthropic", map[string]string{"key": "sk-ant-test", "baseUrl": fp.URL()}); st != 200 {
		t.Fatalf("put key: %d %v", st, b)
	}
	fp.Script(fakeprovider.Reply{ToolCall: &fakeprovider.ToolCallReply{Name: "ocmt_call_shared_resource",
		Input: map[string]any{"jti": p.jti, "operation": "read", "path": "/events"}}},
		fakeprovider.Reply{Text: "Alice has a standup today."})
	c := p.bob.dialChat()
	c.connect()
	res := c.call("chat.send", map[string]any{"sessionKey": "s1", "message": "what is on Alice's calendar?", "idempotencyKey": "k1"})
	evs := c.events(res["payload"].(map[string]any)["runId"].(string))
	if last := evs[len(evs)-1]; last["state"] != "final" || !strings.Contains(text(last), "standup today") {
		t.Fatalf("chat: %v", last)
	}
	reqs := fp.Requests()
	if len(reqs) < 2 || !strings.Contains(string(reqs[len(reqs)-1].Messages), "standup") {
		t.Fatalf("the tool result did not reach the model")
	}
	if c := p.apiCalls(); len(c) != 1 || c[0] != "GET /events" {
		t.Fatalf("fake API saw %q", c)
	}
}
