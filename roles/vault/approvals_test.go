package vault

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requestShare runs ocmt_issue_capability on v and returns the approval id.
func requestShare(t *testing.T, v *sharingVault, input map[string]any) string {
	t.Helper()
	out, err := runTool(t, v, "ocmt_issue_capability", input)
	if err != nil {
		t.Fatalf("tool: %v", err)
	}
	var res struct {
		Issued     bool   `json:"issued"`
		Status     string `json:"status"`
		ApprovalID string `json:"approvalId"`
		Message    string `json:"message"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Issued || res.Status != "pending_approval" || len(res.ApprovalID) != 22 ||
		!strings.Contains(res.Message, "Sharing tab") || !strings.Contains(res.Message, res.ApprovalID) {
		t.Fatalf("tool output: %s (%v)", out, err)
	}
	return res.ApprovalID
}

func pendingApprovals(t *testing.T, v *sharingVault) []map[string]any {
	t.Helper()
	st, body := v.do("GET", "/vault/approvals", nil)
	if st != http.StatusOK {
		t.Fatalf("list approvals: %d %v", st, body)
	}
	var out []map[string]any
	for _, a := range body["approvals"].([]any) {
		out = append(out, a.(map[string]any))
	}
	return out
}

func receivedCount(v *sharingVault) int {
	_, l := v.do("GET", "/vault/capabilities?direction=received", nil)
	caps, _ := l["capabilities"].([]any)
	return len(caps)
}

// TestApprovals: the agent's share request waits as a pending approval;
// the user approves it (as asked or narrower) through POST /capabilities,
// which issues and delivers it like any share, exactly once; anything
// broader, a denied or expired request, and a locked vault are refused.
func TestApprovals(t *testing.T) {
	p := newSharingPair(t)
	alice, bob := p.alice, p.bob
	issued := func() int {
		_, l := alice.do("GET", "/vault/capabilities?direction=issued", nil)
		return len(l["capabilities"].([]any))
	}

	// The tool validates like the API and issues nothing.
	for _, bad := range []struct {
		in   map[string]any
		code string
	}{
		{map[string]any{"resource": "nope", "subjectEmail": "bob@example.org"}, "unknown_resource"},
		{map[string]any{"resource": "calendar", "subjectEmail": "Bob <bob@example.org>"}, "invalid_email"},
		{map[string]any{"resource": "calendar", "subjectEmail": "bob@example.org", "scope": []string{"admin"}}, "invalid_scope"},
		{map[string]any{"resource": "calendar", "subjectEmail": "bob@example.org", "scope": []string{"read", "read"}}, "invalid_scope"},
		{map[string]any{"resource": "calendar", "subjectEmail": "bob@example.org", "days": 0}, "invalid_expiry"},
		{map[string]any{"resource": "calendar", "subjectEmail": "bob@example.org", "days": 366}, "invalid_expiry"},
		{map[string]any{"resource": "calendar", "subjectEmail": "bob@example.org", "maxCalls": 0}, "invalid_max_calls"},
		{map[string]any{"resource": "calendar", "subjectEmail": "bob@example.org", "reason": strings.Repeat("x", 501)}, "invalid_reason"},
		{map[string]any{"resource": "provider:anthropic", "subjectEmail": "bob@example.org", "scope": []string{"read"}}, "scope_unusable"},
		{map[string]any{"resource": "provider:openai", "subjectEmail": "bob@example.org", "scope": []string{"write"}}, "no_provider_key"},
	} {
		if _, err := runTool(t, alice, "ocmt_issue_capability", bad.in); err == nil || !strings.HasPrefix(err.Error(), bad.code+":") {
			t.Errorf("%v: %v, want %s", bad.in, err, bad.code)
		}
	}
	if l := pendingApprovals(t, alice); len(l) != 0 {
		t.Fatalf("refused requests left approvals: %v", l)
	}

	ask := map[string]any{"resource": "calendar", "subjectEmail": "Bob@Example.org", "scope": []string{"read", "list"}, "days": 3,
		"maxCalls": 50, "reason": "Bob asked for your free slots."}
	id := requestShare(t, alice, ask)
	if again := requestShare(t, alice, ask); again != id {
		t.Errorf("the same request asked twice got a second approval %s", again)
	}
	if issued() != 1 {
		t.Fatal("the tool issued a capability")
	}
	l := pendingApprovals(t, alice)
	if len(l) != 1 || l[0]["id"] != id || l[0]["kind"] != "issue_capability" || l[0]["reason"] != "Bob asked for your free slots." {
		t.Fatalf("approvals: %v", l)
	}
	req := l[0]["request"].(map[string]any)
	if req["resource"] != "calendar" || req["subjectEmail"] != "bob@example.org" || fmt.Sprint(req["scope"]) != "[read list]" ||
		req["expiresIn"] != float64(3*86400) || req["maxCalls"] != float64(50) {
		t.Fatalf("approval request: %v", req)
	}
	if exp, created := l[0]["expiresAt"].(float64), l[0]["createdAt"].(float64); exp-created != 24*3600 {
		t.Fatalf("approval lifetime %v s", exp-created)
	}

	approve := func(id string, over map[string]any) (int, map[string]any) {
		body := map[string]any{"approvalId": id, "subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read", "list"},
			"expiresIn": 3 * 86400, "maxCalls": 50, "subject": bob.subject()}
		for k, v := range over {
			if v == nil {
				delete(body, k)
			} else {
				body[k] = v
			}
		}
		return alice.do("POST", "/vault/capabilities", body)
	}
	// A model key shared without write could never be used: refused.
	if st, b := alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "provider:anthropic",
		"scope": []string{"read", "list"}, "expiresIn": 3600, "subject": bob.subject()}); st != 400 || errCode(b) != "scope_unusable" {
		t.Fatalf("provider key shared read-only: %d %v", st, b)
	}

	// Broader than asked: refused, nothing issued, the approval stays.
	alice.do("PUT", "/vault/integrations/notes", map[string]string{"type": "http", "baseUrl": "http://127.0.0.1:9",
		"authHeader": "Authorization", "authValue": "x"})
	for what, over := range map[string]map[string]any{
		"extra permission": {"scope": []string{"read", "list", "write"}},
		"longer":           {"expiresIn": 3*86400 + 1},
		"more calls":       {"maxCalls": 51},
		"no call budget":   {"maxCalls": nil},
		"other resource":   {"resource": "notes"},
		"other person":     {"subjectEmail": "carol@example.org"},
	} {
		if st, b := approve(id, over); st != http.StatusConflict || errCode(b) != "approval_exceeded" {
			t.Errorf("%s: %d %v", what, st, b)
		}
	}
	if st, b := approve("AAAAAAAAAAAAAAAAAAAAAA", nil); st != http.StatusNotFound || errCode(b) != "approval_not_found" {
		t.Errorf("unknown id: %d %v", st, b)
	}
	if issued() != 1 || len(pendingApprovals(t, alice)) != 1 {
		t.Fatal("a refused approval issued or consumed something")
	}

	// Narrower (read only, 1 day, 10 calls): issued and delivered; once.
	st, b := approve(id, map[string]any{"scope": []string{"read"}, "expiresIn": 86400, "maxCalls": 10})
	if st != http.StatusCreated || !strings.HasPrefix(fmt.Sprint(b["token"]), "ocap1.") {
		t.Fatalf("approve: %d %v", st, b)
	}
	waitFor(t, "Bob receives the approved grant", 5*time.Second, func() bool { return receivedCount(bob) == 2 })
	if l := pendingApprovals(t, alice); len(l) != 0 {
		t.Fatalf("approved request still pending: %v", l)
	}
	if st, b := approve(id, map[string]any{"scope": []string{"read"}, "expiresIn": 86400, "maxCalls": 10}); st != http.StatusNotFound ||
		errCode(b) != "approval_not_found" {
		t.Fatalf("second approve: %d %v", st, b)
	}
	if issued() != 2 {
		t.Fatalf("issued %d, want 2", issued())
	}

	// A budget may be added where none was asked.
	id = requestShare(t, alice, map[string]any{"resource": "calendar", "subjectEmail": "bob@example.org"})
	if st, b := approve(id, map[string]any{"scope": []string{"read"}, "expiresIn": 7 * 86400, "maxCalls": 5}); st != http.StatusCreated {
		t.Fatalf("approve with an added budget: %d %v", st, b)
	}

	// Deny: gone, and approving it afterwards is refused.
	id = requestShare(t, alice, ask)
	if st, b := alice.do("POST", "/vault/approvals/"+id+"/deny", nil); st != http.StatusNoContent {
		t.Fatalf("deny: %d %v", st, b)
	}
	if l := pendingApprovals(t, alice); len(l) != 0 {
		t.Fatalf("denied request still pending: %v", l)
	}
	if st, b := alice.do("POST", "/vault/approvals/"+id+"/deny", nil); st != http.StatusNotFound || errCode(b) != "approval_not_found" {
		t.Fatalf("deny twice: %d %v", st, b)
	}
	if st, b := approve(id, nil); st != http.StatusNotFound || errCode(b) != "approval_not_found" {
		t.Fatalf("approve after deny: %d %v", st, b)
	}

	// Expired: refused with its own code, then no longer listed.
	id = requestShare(t, alice, ask)
	alice.s.capSkew.Store(int64(approvalTTL + time.Minute))
	if st, b := approve(id, nil); st != http.StatusConflict || errCode(b) != "approval_expired" {
		t.Fatalf("approve expired: %d %v", st, b)
	}
	if l := pendingApprovals(t, alice); len(l) != 0 {
		t.Fatalf("expired request still listed: %v", l)
	}
	alice.s.capSkew.Store(0)
	if issued() != 3 {
		t.Fatalf("issued %d, want 3", issued())
	}

	// At most maxPendingApprovals wait at once.
	for i := range maxPendingApprovals {
		requestShare(t, alice, map[string]any{"resource": "calendar", "subjectEmail": fmt.Sprintf("p%d@example.org", i)})
	}
	_, err := runTool(t, alice, "ocmt_issue_capability", map[string]any{"resource": "calendar", "subjectEmail": "one-more@example.org"})
	if err == nil || !strings.HasPrefix(err.Error(), "too_many_approvals:") {
		t.Fatalf("request beyond the cap: %v", err)
	}
	if l := pendingApprovals(t, alice); len(l) != maxPendingApprovals {
		t.Fatalf("%d pending, want %d", len(l), maxPendingApprovals)
	}

	// Approvals are sealed: not in the vault file in the clear.
	if b, err := os.ReadFile(filepath.Join(alice.dir, vaultFileName)); err != nil || strings.Contains(string(b), "p7@example.org") {
		t.Fatal("an approval is stored in the clear")
	}

	// Locked: the tool points to the unlock link, the API answers 423.
	alice.do("POST", "/vault/lock", nil)
	if _, err := runTool(t, alice, "ocmt_issue_capability", ask); err == nil || !strings.HasPrefix(err.Error(), "vault_locked:") {
		t.Fatalf("tool while locked: %v", err)
	}
	for _, r := range [][2]string{{"GET", "/vault/approvals"}, {"POST", "/vault/approvals/" + id + "/deny"}} {
		if st, b := alice.do(r[0], r[1], nil); st != http.StatusLocked || errCode(b) != "vault_locked" {
			t.Errorf("%s %s locked: %d %v", r[0], r[1], st, b)
		}
	}
}
