package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ocmt/ocmt/xtest"
)

// TestBrowserSocialRecovery: Alice has forgotten her password; in the
// unlock dialog she picks "Ask my trusted contacts", her browser makes the
// one-time key in kdf.wasm and starts the request; once Bob and Carol
// approved, the page rebuilds the key in the worker and she sets a new
// password, which then unlocks the vault. Bob and Carol approve by typing
// the code shown on Alice's page.
func TestBrowserSocialRecovery(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	env := xtest.NewEnv(t)
	peers := socialPeers(t, env, "alice", "bob", "carol")
	alice, bob, carol := peers[0], peers[1], peers[2]
	setupContacts(t, alice, 2, bob, carol)
	waitHeld(t, bob, alice.id, 0)
	waitHeld(t, carol, alice.id, 0)
	alice.v.json("POST", "/lock", nil, nil)

	b := newBrowser(t, env, 4*time.Minute)
	b.open("/signin")
	b.signInMagicLink(alice.email)
	b.waitAgentState("running", 2*time.Minute)
	forgotToContacts := func() {
		t.Helper()
		b.waitJS("the unlock dialog", 30*time.Second, `vis('#unlock-dialog') && vis('#unlock-forgot')`, "")
		b.do("forgot password", chromedp.Click(chromedp.ID("unlock-forgot")))
		b.waitJS("the choices offer trusted contacts", 15*time.Second, `vis('#recover-paths button[data-path="contacts"]')`, "")
		b.screenshot("social-choices")
		b.do("ask my trusted contacts", chromedp.Click(chromedp.CSS(`#recover-paths button[data-path="contacts"]`)))
	}
	forgotToContacts()
	b.waitJS("the recovery dialog", 10*time.Second, `vis('#social-dialog') && vis('#social-start')`, "")
	b.do("start the request", chromedp.Click(chromedp.ID("social-start")))
	b.waitJS("the request's code shows", 30*time.Second, `vis('#social-code') && /^\d{6}$/.test(document.getElementById('social-code').textContent)`,
		`document.querySelector('#social-recover-status[data-kind="error"]')?.textContent`)
	b.screenshot("social-waiting")
	code := mustEval[string](b, `document.getElementById('social-code').textContent`)

	// Bob's inbox shows the request (without the code).
	var inbox struct {
		Requests []map[string]any `json:"requests"`
	}
	bob.c.JSON(context.Background(), "GET", "/api/v1/me/recovery/inbox", nil, &inbox)
	if len(inbox.Requests) != 1 || inbox.Requests[0]["code"] != nil {
		t.Fatalf("bob's inbox %v", inbox)
	}
	// Bob approves in his browser with the code Alice reads to him.
	b.do("close the dialog", chromedp.Click(chromedp.CSS(`#social-wait-actions button[data-action="social-close"]`)))
	b.signOut()
	b.signInMagicLink(bob.email)
	b.waitAgentState("running", 2*time.Minute)
	b.do("open Vault & keys", chromedp.Click(chromedp.ID("tab-vault")))
	input := "social-code-" + inbox.Requests[0]["id"].(string)
	b.waitJS("Bob's inbox", 15*time.Second, `vis('#social-inbox') && document.getElementById('social-inbox-list').textContent.includes('alice@example.org asks you to help unlock their vault')`, "")
	b.do("type the code and approve",
		chromedp.SendKeys(chromedp.ID(input), code),
		chromedp.Click(chromedp.CSS(`#social-inbox-list button[data-action="social-approve"]`)),
	)
	b.waitJS("approved", 15*time.Second, `document.querySelector('#social-inbox-status[data-kind="ok"]') && document.getElementById('social-inbox-list').textContent.includes('You approved')`,
		`document.querySelector('#social-inbox-status[data-kind="error"]')?.textContent`)
	b.screenshot("social-inbox")
	// Carol approves too (API); Alice comes back: her request survived in this tab.
	if r := approve(t, carol, inbox.Requests[0]["id"].(string), code); r.Status != 200 {
		t.Fatalf("carol approves: %d %s", r.Status, r.Body)
	}
	b.signOut()
	b.signInMagicLink(alice.email)
	b.waitAgentState("running", 2*time.Minute)
	forgotToContacts() // back to her request
	b.waitJS("the new password form", 30*time.Second, `vis('#social-new-password')`,
		`document.querySelector('#social-recover-status[data-kind="error"]')?.textContent`)
	const newPassword = "lantern-orchid-glacier-4471"
	b.do("set a new password",
		chromedp.SendKeys(chromedp.ID("social-new-password"), newPassword),
		chromedp.SendKeys(chromedp.ID("social-new-confirm"), newPassword),
		chromedp.Click(chromedp.ID("social-reset")),
	)
	b.waitJS("the vault is unlocked", 60*time.Second, `!vis('#social-dialog') && document.getElementById('vault-state').dataset.locked === 'false'`,
		`document.querySelector('#social-recover-status[data-kind="error"]')?.textContent`)
	b.screenshot("social-done")
	// The Vault & keys tab shows who the trusted contacts are.
	b.do("open Vault & keys", chromedp.Click(chromedp.ID("tab-vault")))
	b.waitJS("the trusted contacts card", 10*time.Second, `vis('#social-current') && document.getElementById('social-current').textContent.includes('2 of 2')`, "")
	b.screenshot("social-card")
	b.checkConsole()

	alice.v.json("POST", "/lock", nil, nil)
	if s := tryUnlock(t, alice.v, newPassword); s != 200 {
		t.Fatalf("the new password set in the browser: %d", s)
	}
}
