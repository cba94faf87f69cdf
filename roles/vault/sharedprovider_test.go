package vault

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/vault/llm"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
)

// sharedChat sends one chat message on c and returns the run's last event
// payload, or the chat.send error response.
func sharedChat(c *chatClient, session, msg string) (last, sendErr map[string]any) {
	c.t.Helper()
	res := c.call("chat.send", map[string]any{"sessionKey": session, "message": msg, "idempotencyKey": msg})
	if res["ok"] != true {
		return nil, res["error"].(map[string]any)
	}
	evs := c.events(res["payload"].(map[string]any)["runId"].(string))
	return evs[len(evs)-1], nil
}

// TestChatOnSharedProvider: Bob, with no key of his own, chats on the
// provider key Alice shares with him (Anthropic and OpenAI): the reply
// comes whole through the relay, Alice's vault adds her key, each model
// request counts against the budget, and a used-up budget or a revocation
// gives a readable error.
func TestChatOnSharedProvider(t *testing.T) {
	for _, prov := range []string{llm.Anthropic, llm.OpenAI} {
		t.Run(prov, func(t *testing.T) {
			relayURL, dir, logs := startTestRelay(t)
			alice := newSharingVault(t, "usr_aliceaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
			bob := newSharingVault(t, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
			waitFor(t, "relay connections", 5*time.Second, func() bool { return alice.s.relay.connected() && bob.s.relay.connected() })
			fp := fakeprovider.New()
			t.Cleanup(fp.Close)
			aliceKey := "sk-alice-household-" + prov
			fp.SetKey(aliceKey)
			base := fp.URL()
			if prov == llm.OpenAI {
				base += "/v1"
			}
			body := map[string]string{"key": aliceKey, "baseUrl": base}
			if prov == llm.OpenAI {
				body["model"] = "household-model"
			}
			if st, b := alice.do("PUT", "/vault/apikeys/"+prov, body); st != 200 {
				t.Fatalf("alice key: %d %v", st, b)
			}
			st, issued := alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "provider:" + prov,
				"scope": []string{"write"}, "expiresIn": 3600, "maxCalls": 3, "subject": bob.subject()})
			if st != http.StatusCreated {
				t.Fatalf("issue: %d %v", st, issued)
			}
			jti := issued["jti"].(string)

			// Bob has no key: chat refuses until he chooses the shared one,
			// which GET /apikeys offers.
			c := bob.dialChat()
			c.connect()
			if _, e := sharedChat(c, "s", "before choosing"); e["code"] != "no_provider" {
				t.Fatalf("without a provider: %v", e)
			}
			var keys map[string]any
			waitFor(t, "the shared key listed", 5*time.Second, func() bool {
				_, keys = bob.do("GET", "/vault/apikeys", nil)
				return strings.Contains(mustJSON(keys["shared"]), jti)
			})
			sh := keys["shared"].([]any)[0].(map[string]any)
			if sh["provider"] != prov || sh["remainingCalls"] != float64(3) || sh["issuerUserId"] != "usr_aliceaaaaaaaaaaaaaaaaaaaaa" || sh["status"] != "active" {
				t.Fatalf("shared entry %v", sh)
			}
			if prov == llm.OpenAI && sh["model"] != "household-model" {
				t.Fatalf("the model of Alice's key did not come with the grant: %v", sh)
			}
			if st, b := bob.do("PUT", "/vault/default-provider", map[string]string{"provider": "shared:nope"}); st != http.StatusNotFound {
				t.Fatalf("unknown share chosen: %d %v", st, b)
			}
			if st, b := bob.do("PUT", "/vault/default-provider", map[string]string{"provider": "evil"}); st != http.StatusBadRequest || errCode(b) != "invalid_provider" {
				t.Fatalf("unknown provider chosen: %d %v", st, b)
			}
			if st, b := bob.do("PUT", "/vault/default-provider", map[string]string{"provider": "shared:" + jti}); st != 200 {
				t.Fatalf("choose: %d %v", st, b)
			}
			if _, keys = bob.do("GET", "/vault/apikeys", nil); keys["defaultProvider"] != "shared:"+jti {
				t.Fatalf("defaultProvider %v", keys["defaultProvider"])
			}

			// A long reply arrives whole; a tool round costs a second call.
			long := strings.Repeat("Hello Bob, this is Alice's model speaking. ", 600)
			fp.Script(fakeprovider.Reply{Text: long})
			last, e := sharedChat(c, "s", "hello from bob")
			if e != nil || last["state"] != "final" || text(last) != long {
				t.Fatalf("chat on the shared key: %v %v", e, last)
			}
			fp.Script(fakeprovider.Reply{ToolCall: &fakeprovider.ToolCallReply{Name: "ocmt_vault_status"}},
				fakeprovider.Reply{Text: "Your vault is open."})
			if last, e = sharedChat(c, "s", "is my vault open?"); e != nil || last["state"] != "final" || text(last) != "Your vault is open." {
				t.Fatalf("tool round on the shared key: %v %v", e, last)
			}
			reqs := fp.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d provider requests, want 3", len(reqs))
			}
			for i, r := range reqs {
				got := r.Headers.Get("X-Api-Key")
				if got == "" {
					got, _ = strings.CutPrefix(r.Headers.Get("Authorization"), "Bearer ")
				}
				if got != aliceKey || r.Stream {
					t.Errorf("request %d: key %q stream %v", i, got, r.Stream)
				}
			}
			if prov == llm.OpenAI && (reqs[0].Model != "household-model" || !strings.Contains(string(reqs[0].Body), `"max_tokens"`)) {
				t.Errorf("compatible server request: model %q body %s", reqs[0].Model, reqs[0].Body)
			}
			if !strings.Contains(string(reqs[2].Messages), "is my vault open?") || !strings.Contains(string(reqs[0].Messages), "hello from bob") {
				t.Errorf("conversation not sent")
			}

			// The budget of 3 is spent: the next message is refused, readably.
			_, keys = bob.do("GET", "/vault/apikeys", nil)
			if sh := keys["shared"].([]any)[0].(map[string]any); sh["remainingCalls"] != float64(0) || sh["status"] != "exhausted" {
				t.Fatalf("after 3 calls: %v", sh)
			}
			last, e = sharedChat(c, "s", "one more")
			if msg := fmt.Sprint(e["message"], last["errorMessage"]); !strings.Contains(msg, "used up its call budget") {
				t.Fatalf("budget exhausted: %v %v", e, last)
			}
			if len(fp.Requests()) != 3 {
				t.Fatal("a request past the budget reached the provider")
			}

			// A second share, revoked: readable error from the issuer's side.
			st, issued = alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "provider:" + prov,
				"scope": []string{"write"}, "expiresIn": 3600, "subject": bob.subject()})
			if st != http.StatusCreated {
				t.Fatalf("issue: %d %v", st, issued)
			}
			jti2 := issued["jti"].(string)
			waitFor(t, "second grant", 5*time.Second, func() bool {
				return bob.do2("PUT", "/vault/default-provider", map[string]string{"provider": "shared:" + jti2}) == 200
			})
			if st, _ := alice.do("DELETE", "/vault/capabilities/"+jti2, nil); st != http.StatusNoContent {
				t.Fatalf("revoke: %d", st)
			}
			last, e = sharedChat(c, "s", "after the revocation")
			if msg := fmt.Sprint(e["message"], last["errorMessage"]); !strings.Contains(msg, "was revoked by its owner") {
				t.Fatalf("revoked: %v %v", e, last)
			}
			// Known locally from now on: refused before anything is sent.
			if _, e = sharedChat(c, "s", "and again"); e["code"] != "shared_provider_unavailable" {
				t.Fatalf("second try after revocation: %v", e)
			}
			assertNoPlaintext(t, bob.dir, aliceKey)
		})
	}
}

func (v *sharingVault) do2(method, path string, body any) int {
	st, _ := v.do(method, path, body)
	return st
}

func TestFitHistory(t *testing.T) {
	msg := func(role, text string) llm.Message { return llm.Message{Role: role, Text: text} }
	big := strings.Repeat("x", 1000)
	h := []llm.Message{msg("user", big), {Role: llm.RoleAssistant, ToolCalls: []llm.ToolCall{{ID: "a", Name: "t", Input: []byte("{}")}}},
		msg(llm.RoleTool, big), msg("assistant", big), msg("user", "last")}
	got := fitHistory(h, 2200)
	if len(got) != 2 || got[0].Role != llm.RoleAssistant || got[0].Text != big || got[1].Text != "last" {
		t.Fatalf("fitHistory kept %+v", got)
	}
	if got := fitHistory(h[:3], 1100); len(got) != 1 || got[0].Role != llm.RoleTool {
		// The last message is always kept, even a tool result.
		t.Fatalf("kept %+v", got)
	}
	if got := fitHistory(h, 1<<20); len(got) != len(h) {
		t.Fatal("trimmed a history that fits")
	}
}

func TestSharedChatError(t *testing.T) {
	c := &sharedChoice{provider: llm.Anthropic, maxCalls: 5}
	wrap := func(code string) error {
		return fmt.Errorf("sdk: %w", &sharedCallError{err: api.E(403, code, "raw")})
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{wrap("capability_revoked"), "Anthropic key shared with you was revoked"},
		{wrap("capability_budget_exhausted"), "used up its call budget (5 calls)"},
		{wrap("capability_expired"), "has expired"},
		{wrap("too_large"), "too long to send through a shared key"},
		{wrap("upstream_timeout"), "time limit"},
		{wrap("something_new"), "could not be used: raw"},
		{&llm.Error{Kind: llm.KindAuth, Status: 401, Message: "check the key in your vault"}, "its owner needs to check it"},
		{&llm.Error{Kind: llm.KindRateLimit, Message: "Anthropic is rate limiting requests"}, "rate limiting"},
	} {
		if got := sharedChatError(tc.err, c); !strings.Contains(got, tc.want) {
			t.Errorf("%v → %q, want it to contain %q", tc.err, got, tc.want)
		}
	}
}
