package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/xtest"
)

// TestBrowserSharedProviderKey: Bob, who has no API key, finds the
// Anthropic key Alice shares with him in "Vault & keys", makes it his chat
// provider with one click and chats on it; the reply arrives in one piece.
// Vaults and the share go in through the API: the UI under test is the
// provider list and the chat.
func TestBrowserSharedProviderKey(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	const (
		aliceEmail = "alice-key@example.com"
		bobEmail   = "bob-key@example.com"
		aliceKey   = "sk-ant-household-e2e-31d7"
		reply      = "Hello Bob: this answer was paid for by Alice's key."
	)
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} })) // the fake provider is on loopback
	fp := fakeprovider.New()
	t.Cleanup(fp.Close)
	fp.SetKey(aliceKey)
	ctx := context.Background()

	alice := newBrowser(t, env, 4*time.Minute)
	bob := newBrowser(t, env, 4*time.Minute)
	alice.signInBootstrap(aliceEmail)
	ac := alice.apiClient()
	if err := ac.JSON(ctx, "POST", "/api/v1/admin/users", api.InviteRequest{Email: bobEmail}, nil); err != nil {
		t.Fatalf("invite Bob: %v", err)
	}
	bob.open("/auth/verify?token=" + env.LinkFor(bobEmail))
	bob.navigate("Bob presses Continue", "/", chromedp.WaitVisible(chromedp.ID("continue")), chromedp.Click(chromedp.ID("continue")))
	bc := bob.apiClient()
	av := readyVault(t, env, ac, "alice's long household password")
	bv := readyVault(t, env, bc, "bob's long household password")
	av.json("PUT", "/apikeys/anthropic", map[string]string{"key": aliceKey, "baseUrl": fp.URL()}, nil)
	var share struct {
		JTI string `json:"jti"`
	}
	av.json("POST", "/capabilities", map[string]any{"subjectEmail": bobEmail, "resource": "provider:anthropic",
		"scope": []string{"write"}, "expiresIn": 7 * 24 * 3600, "maxCalls": 37}, &share)
	xtest.Eventually(t, 10*time.Second, func() error {
		var keys struct {
			Shared []map[string]any `json:"shared"`
		}
		bv.json("GET", "/apikeys", nil, &keys)
		if len(keys.Shared) == 0 {
			return errString("grant not delivered yet")
		}
		return nil
	})

	bob.open("/")
	bob.waitAgentState("running", time.Minute)
	bob.waitJS("Bob's vault unlocked", stepTimeout, `document.getElementById('vault-state').dataset.locked === 'false'`, "")
	bob.do("open Vault & keys", chromedp.Click(chromedp.ID("tab-vault")))
	row := `#provider-list li.shared-provider[data-jti="` + share.JTI + `"]`
	bob.waitJS("the shared key in the provider list", stepTimeout, `!!document.querySelector('`+row+`')`, "")
	line := mustEval[string](bob, `document.querySelector('`+row+` .provider-name').textContent`)
	t.Logf("Bob's row: %q", line)
	if !regexp.MustCompile(`^Anthropic key shared by ` + regexp.QuoteMeta(aliceEmail) + ` \(37 calls left, until \d+ \w{3}( \d{4})?\)$`).MatchString(line) {
		t.Errorf("row %q, want \"Anthropic key shared by %s (37 calls left, until <date>)\"", line, aliceEmail)
	}
	bob.do("press Use for chat", chromedp.Click(chromedp.CSS(row+` button[data-action="use-provider"]`)))
	bob.waitJS("the key marked as used for chat", stepTimeout,
		`(document.querySelector('`+row+`').textContent || '').includes('Used for chat')`,
		`document.getElementById('providers-status').dataset.kind === 'error' && 'choosing failed: ' + document.getElementById('providers-status').textContent`)
	t.Logf("status: %q", mustEval[string](bob, `document.getElementById('providers-status').textContent`))
	bob.screenshot("shared-key-chosen")

	fp.Script(fakeprovider.Reply{Text: reply})
	bob.do("back to the chat", chromedp.Click(chromedp.ID("tab-chat")))
	bob.waitJS("the chat, connected", 30*time.Second, `vis('#chat-input') && document.getElementById('chat-connection').dataset.state === 'open'`, "")
	if hint := mustEval[string](bob, `(() => { const b = document.getElementById('chat-banner'); return b.hidden ? '' : b.textContent; })()`); hint != "" {
		t.Errorf("the chat still asks for a provider: %q", hint)
	}
	bob.do("send a question", chromedp.SendKeys(chromedp.ID("chat-input"), "Who pays for this answer?"), chromedp.Click(chromedp.ID("chat-send")))
	obs := bob.watchReply(reply, 45*time.Second, nil)
	t.Logf("reply done after %d ms", obs.Done.Milliseconds())
	bob.screenshot("shared-key-chat")
	reqs := fp.Requests()
	if len(reqs) != 1 || reqs[0].Stream {
		t.Fatalf("provider requests: %d", len(reqs))
	}
	got := reqs[0].Headers.Get("X-Api-Key")
	if got == "" {
		got, _ = strings.CutPrefix(reqs[0].Headers.Get("Authorization"), "Bearer ")
	}
	if got != aliceKey {
		t.Errorf("the provider got %q, want Alice's key", got)
	}
	bob.checkConsoleAllowing(regexp.MustCompile(`^$`))
}
