package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/xtest"
)

// sharedChatOnce sends msg on c and returns the final reply text, or the
// readable error: the chat.send refusal's message or the run's errorMessage.
func (c *chatWS) sharedChatOnce(id, session, msg string) (reply, errMsg string) {
	c.t.Helper()
	c.send(id, "chat.send", map[string]any{"sessionKey": session, "message": msg, "idempotencyKey": id})
	r := c.until(func(f map[string]any) bool { return f["id"] == id })
	if r["ok"] != true {
		e, _ := r["error"].(map[string]any)
		return "", fmt.Sprint(e["message"])
	}
	run := r["payload"].(map[string]any)["runId"]
	for {
		f := c.until(func(f map[string]any) bool { return f["event"] == "chat" })
		p := f["payload"].(map[string]any)
		if p["runId"] != run {
			continue
		}
		switch p["state"] {
		case "final":
			m := p["message"].(map[string]any)["content"].([]any)[0].(map[string]any)
			return m["text"].(string), ""
		case "error", "aborted":
			return "", fmt.Sprint(p["errorMessage"])
		}
	}
}

// TestChatOnSharedProviderKey: Alice shares her model provider key with a
// call budget; Bob, who has no API key, picks it in his vault and chats
// over the chat WebSocket through the real management role, relay and
// vault processes. The provider sees Alice's key; neither Bob's data nor
// the platform's (relay database included) ever holds it; a used-up budget
// and a revocation reach Bob's chat as readable errors.
func TestChatOnSharedProviderKey(t *testing.T) {
	for _, prov := range []string{"anthropic", "openai"} {
		t.Run(prov, func(t *testing.T) {
			env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} })) // the fake provider is on loopback
			ctx := context.Background()
			fp := fakeprovider.New()
			defer fp.Close()
			aliceKey := "sk-household-" + prov + "-7c31e9"
			fp.SetKey(aliceKey)
			alice, _ := env.Admin("alice@example.org")
			bob, _ := env.Invite(alice, "bob@example.org")
			av := readyVault(t, env, alice, "alice's long password")
			bv := readyVault(t, env, bob, "bob's long password")
			base := fp.URL()
			if prov == "openai" {
				base += "/v1"
			}
			av.json("PUT", "/apikeys/"+prov, map[string]string{"key": aliceKey, "baseUrl": base, "model": "household-model"}, nil)
			share := func(maxCalls int) string {
				var out struct {
					JTI string `json:"jti"`
				}
				av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "provider:" + prov,
					"scope": []string{"write"}, "expiresIn": 3600, "maxCalls": maxCalls}, &out)
				return out.JTI
			}
			jti := share(2)

			// Bob's vault lists the shared key, with Alice's address.
			type sharedJSON struct {
				JTI            string `json:"jti"`
				Provider       string `json:"provider"`
				IssuerEmail    string `json:"issuerEmail"`
				Model          string `json:"model"`
				RemainingCalls *int   `json:"remainingCalls"`
				Status         string `json:"status"`
			}
			var keys struct {
				Providers       []map[string]any `json:"providers"`
				DefaultProvider string           `json:"defaultProvider"`
				Shared          []sharedJSON     `json:"shared"`
			}
			xtest.Eventually(t, 10*time.Second, func() error {
				bv.json("GET", "/apikeys", nil, &keys)
				if len(keys.Shared) == 0 {
					return errString("grant not delivered yet")
				}
				return nil
			})
			s := keys.Shared[0]
			if len(keys.Providers) != 0 || keys.DefaultProvider != "" || s.JTI != jti || s.Provider != prov ||
				s.IssuerEmail != "alice@example.org" || s.Model != "household-model" || s.RemainingCalls == nil || *s.RemainingCalls != 2 || s.Status != "active" {
				t.Fatalf("Bob's keys: %+v", keys)
			}
			bv.json("PUT", "/default-provider", map[string]string{"provider": "shared:" + jti}, nil)

			cw := dialChat(t, env, bob)
			fp.Script(fakeprovider.Reply{Text: "Hi Bob, this is Alice's model."})
			start := time.Now()
			reply, errMsg := cw.sharedChatOnce("m1", "main", "hello from bob")
			t.Logf("%s: one chat turn on the shared key took %v", prov, time.Since(start))
			if reply != "Hi Bob, this is Alice's model." {
				t.Fatalf("chat on the shared key: %q %q", reply, errMsg)
			}
			reqs := fp.Requests()
			if len(reqs) != 1 || reqs[0].Stream || !strings.Contains(string(reqs[0].Messages), "hello from bob") ||
				reqs[0].Model != "household-model" {
				t.Fatalf("provider requests: %+v", reqs)
			}
			got := reqs[0].Headers.Get("X-Api-Key")
			if got == "" {
				got, _ = strings.CutPrefix(reqs[0].Headers.Get("Authorization"), "Bearer ")
			}
			if got != aliceKey {
				t.Fatalf("the provider got credential %q, want Alice's key", got)
			}
			if reply, errMsg = cw.sharedChatOnce("m2", "main", "second question"); !strings.HasPrefix(reply, "echo: ") {
				t.Fatalf("second turn: %q %q", reply, errMsg)
			}
			// The budget of 2 calls is spent.
			if _, errMsg = cw.sharedChatOnce("m3", "main", "third question"); !strings.Contains(errMsg, "used up its call budget") {
				t.Fatalf("past the budget: %q", errMsg)
			}
			if n := len(fp.Requests()); n != 2 {
				t.Fatalf("%d provider requests, want 2", n)
			}

			// A fresh share, chosen, then revoked by Alice.
			jti2 := share(10)
			xtest.Eventually(t, 10*time.Second, func() error {
				return bob.JSON(ctx, "PUT", "/api/v1/me/agent/vault/default-provider", map[string]string{"provider": "shared:" + jti2}, nil)
			})
			if reply, errMsg = cw.sharedChatOnce("m4", "main", "on the new share"); !strings.HasPrefix(reply, "echo: ") {
				t.Fatalf("on the second share: %q %q", reply, errMsg)
			}
			av.json("DELETE", "/capabilities/"+jti2, nil, nil)
			if _, errMsg = cw.sharedChatOnce("m5", "main", "after the revocation"); !strings.Contains(errMsg, "revoked by its owner") {
				t.Fatalf("after the revocation: %q", errMsg)
			}

			// Alice's key is nowhere on the platform's disk (relay and
			// management database, Bob's vault directory) nor in its logs.
			env.Stop()
			files := 0
			filepath.Walk(env.Cfg.DataDir, func(p string, info os.FileInfo, err error) error {
				if err == nil && !info.IsDir() {
					files++
					if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(aliceKey)) {
						t.Errorf("%s holds Alice's provider key in the clear", p)
					}
				}
				return nil
			})
			if files < 5 {
				t.Fatalf("only %d files searched", files)
			}
			if strings.Contains(env.Log.String(), aliceKey) {
				t.Error("the logs hold Alice's key")
			}
		})
	}
}
