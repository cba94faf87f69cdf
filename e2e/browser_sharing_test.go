package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/xtest"
)

const (
	bsAlice     = "alice-share@example.com"
	bsBob       = "bob-share@example.com"
	bsSecret    = "Bearer alice-cal-secret"
	bsAPIKey    = "sk-e2e-sharing-77c1"
	bsModel     = "fake-share-model"
	bsQuestion1 = "What's on my calendar?"
	bsReply1    = "Your next event is the dentist at nine."
	bsQuestion2 = "And what is on it now?"
	bsReply2    = "I can no longer read your calendar: access was revoked."
)

// apiClient returns an api.Client sharing the browser's session: the
// browser's cookies for the server copied into the client's jar.
func (b *browser) apiClient() *api.Client {
	b.t.Helper()
	ctx, cancel := b.stepCtx(stepTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.env.URL + "/"}})
	if err != nil {
		b.fatalf("get cookies: %v", err)
	}
	c := b.env.Client()
	u, _ := url.Parse(b.env.URL)
	var cks []*http.Cookie
	for _, ck := range res.Cookies {
		cks = append(cks, &http.Cookie{Name: ck.Name, Value: ck.Value, Path: "/"})
	}
	if len(cks) == 0 {
		b.fatalf("the browser holds no cookies for %s", b.env.URL)
	}
	c.HC.Jar.SetCookies(u, cks)
	return c
}

// confirmStyled waits for the page's styled confirm dialog
// (#confirm-dialog; the page never opens the browser's own), presses its
// confirm button and returns the question it asked.
func (b *browser) confirmStyled(what string) string {
	b.t.Helper()
	b.waitJS(what+": the confirm dialog", stepTimeout, `document.getElementById('confirm-dialog').open && vis('#confirm-ok')`, "")
	msg := mustEval[string](b, `document.getElementById('confirm-message').textContent`)
	b.do(what+": press "+mustEval[string](b, `document.getElementById('confirm-ok').textContent`), chromedp.Click(chromedp.ID("confirm-ok")))
	b.waitJS(what+": the confirm dialog closed", stepTimeout, `!document.getElementById('confirm-dialog').open`, "")
	return msg
}

// openSharing clicks the Sharing tab and waits for the three lists to load.
func (b *browser) openSharing() {
	b.t.Helper()
	b.do("open the Sharing tab", chromedp.Click(chromedp.ID("tab-sharing")))
	b.waitJS("the Sharing tab loaded", stepTimeout,
		`vis('#panel-sharing') && !/Loading/.test(document.getElementById('shares-issued').textContent) && !/Loading/.test(document.getElementById('shares-received').textContent) && !/Loading/.test(document.getElementById('integration-list').textContent)`,
		`['integrations-status','shares-issued-status','shares-received-status'].map((id) => document.getElementById(id)).filter((e) => e.dataset.kind === 'error').map((e) => e.id + ': ' + e.textContent).join('; ')`)
}

// toolResults returns the contents of the tool-role messages of a recorded
// OpenAI chat request.
func toolResults(t *testing.T, r fakeprovider.Recorded) []string {
	t.Helper()
	var msgs []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(r.Messages, &msgs); err != nil {
		t.Fatalf("messages of %s: %v", r.Path, err)
	}
	var out []string
	for _, m := range msgs {
		if m.Role != "tool" {
			continue
		}
		var s string
		if json.Unmarshal(m.Content, &s) != nil {
			s = string(m.Content)
		}
		out = append(out, s)
	}
	return out
}

// TestBrowserSharing: Alice shares her calendar API with Bob in the UI; Bob
// sees the share and his agent uses it in chat; Alice revokes it in the UI
// and Bob's agent gets the refusal in plain words.
func TestBrowserSharing(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	begin := time.Now()
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} })) // fake API on loopback
	cal := newFakeAPI(t, nil)
	fp := fakeprovider.New()
	t.Cleanup(fp.Close)
	fp.SetKey(bsAPIKey)
	lap := time.Now()
	step := func(name string) {
		t.Logf("%-40s %6d ms", name, time.Since(lap).Milliseconds())
		lap = time.Now()
	}

	// 0. Alice signs in with the bootstrap link, invites Bob (admin API with
	// her browser session); Bob opens his link. Vaults and Bob's provider go
	// in through the API with the browsers' sessions: the UI under test here
	// is the Sharing tab and the chat.
	alice := newBrowser(t, env, 4*time.Minute)
	bob := newBrowser(t, env, 4*time.Minute)
	alice.signInBootstrap(bsAlice)
	ac := alice.apiClient()
	ctx := context.Background()
	if err := ac.JSON(ctx, "POST", "/api/v1/admin/users", api.InviteRequest{Email: bsBob}, nil); err != nil {
		t.Fatalf("invite Bob: %v", err)
	}
	bob.open("/auth/verify?token=" + env.LinkFor(bsBob))
	bob.navigate("Bob presses Continue", "/", chromedp.WaitVisible(chromedp.ID("continue")), chromedp.Click(chromedp.ID("continue")))
	bc := bob.apiClient()
	step("sign-ins + invite")
	av := readyVault(t, env, ac, "alice's long sharing password")
	bv := readyVault(t, env, bc, "bob's long sharing password")
	bv.json("PUT", "/apikeys/openai", map[string]string{"key": bsAPIKey, "baseUrl": fp.URL() + "/v1", "model": bsModel}, nil)
	step("vaults + Bob's provider (API)")
	alice.open("/")
	alice.waitAgentState("running", time.Minute)
	alice.waitJS("Alice's vault unlocked", stepTimeout, `document.getElementById('vault-state').dataset.locked === 'false'`, "")
	bob.open("/")
	bob.waitAgentState("running", time.Minute)
	bob.waitJS("Bob's chat, connected", 30*time.Second,
		`document.getElementById('vault-state').dataset.locked === 'false' && vis('#chat-input') && document.getElementById('chat-connection').dataset.state === 'open'`, "")
	step("both pages ready")

	// 1. Alice adds the HTTP API and shares it with Bob.
	alice.openSharing()
	if !mustEval[bool](alice, `document.getElementById('share-open').disabled`) {
		t.Errorf("Share… is enabled before any HTTP API exists")
	}
	if h := mustEval[string](alice, `document.getElementById('integration-header').value`); h != "Authorization" {
		t.Errorf("the auth header field starts as %q, want Authorization", h)
	}
	alice.do("fill in the HTTP API",
		chromedp.SendKeys(chromedp.ID("integration-name"), "calendar"),
		chromedp.SendKeys(chromedp.ID("integration-baseurl"), cal.URL),
		chromedp.SendKeys(chromedp.ID("integration-secret"), bsSecret),
		chromedp.Click(chromedp.ID("integration-submit")))
	alice.waitJS("the HTTP API in the list", stepTimeout,
		`!!document.querySelector('#integration-list [data-integration="calendar"]') && !document.getElementById('share-open').disabled`,
		`document.getElementById('integration-status').dataset.kind === 'error' && 'saving the HTTP API failed: ' + document.getElementById('integration-status').textContent`)
	if v := mustEval[string](alice, `document.getElementById('integration-secret').value`); v != "" {
		t.Errorf("the secret field keeps %q after saving", v)
	}
	if txt := mustEval[string](alice, `document.getElementById('integration-list').textContent`); strings.Contains(txt, "alice-cal-secret") {
		t.Errorf("the HTTP API list shows the secret: %q", txt)
	}
	t.Logf("integration status: %q", mustEval[string](alice, `document.getElementById('integration-status').textContent`))
	alice.do("press Share…", chromedp.Click(chromedp.ID("share-open")))
	alice.waitJS("the share dialog", stepTimeout, `document.getElementById('share-dialog').open && vis('#share-email')`, "")
	alice.do("fill in the share",
		chromedp.SetValue(chromedp.ID("share-resource"), "calendar"),
		chromedp.SendKeys(chromedp.ID("share-email"), bsBob),
		chromedp.SetValue(chromedp.ID("share-expires"), "604800"),
		chromedp.SendKeys(chromedp.ID("share-maxcalls"), "50"))
	// SetValue fires no events: nudge the summary like a change would.
	mustEval[bool](alice, `document.getElementById('share-form').dispatchEvent(new Event('change', { bubbles: true }))`)
	scope := mustEval[[]string](alice, `[...document.querySelectorAll('#share-form input[name=scope]:checked')].map((c) => c.value)`)
	if strings.Join(scope, ",") != "read" {
		t.Errorf("checked permissions = %q, want only read", scope)
	}
	sum := mustEval[string](alice, `document.getElementById('share-summary').textContent`)
	t.Logf("share summary: %q", sum)
	if !strings.Contains(sum, bsBob) || !strings.Contains(sum, "7 days") || !strings.Contains(sum, "calendar") || !strings.Contains(sum, "50 calls") {
		t.Errorf("share summary %q does not name Bob, the calendar, 7 days and 50 calls", sum)
	}
	alice.screenshot("share-dialog")
	alice.do("press Share", chromedp.Click(chromedp.ID("share-submit")))
	alice.waitJS("the dialog to close and the share to show as active", stepTimeout,
		`!document.getElementById('share-dialog').open && !!document.querySelector('#shares-issued li[data-jti][data-status="active"]')`,
		`document.getElementById('share-status').dataset.kind === 'error' && 'share failed: ' + document.getElementById('share-status').textContent`)
	jti := mustEval[string](alice, `document.querySelector('#shares-issued li[data-jti]').dataset.jti`)
	t.Logf("sharing status: %q; issued row: %q", mustEval[string](alice, `document.getElementById('sharing-status').textContent`),
		mustEval[string](alice, `document.querySelector('#shares-issued li[data-jti]').textContent`))
	alice.screenshot("issued")
	step("Alice: add API + share")

	// 2. Bob's page, loaded anew, shows "1 new" on the Sharing tab (part
	// of the tab's name for screen readers); opening the tab clears it.
	// Bob sees the share (after a Refresh: the list does not push).
	bob.open("/")
	bob.waitAgentState("running", time.Minute)
	bob.waitJS("Bob's page again, with the badge", 30*time.Second,
		`document.getElementById('chat-connection').dataset.state === 'open' && vis('#sharing-new') && document.getElementById('sharing-new').textContent === '1 new'`, "")
	if name := mustEval[string](bob, `document.getElementById('tab-sharing').textContent.replace(/\s+/g, ' ').trim()`); name != "Sharing 1 new" {
		t.Errorf("the Sharing tab reads %q, want %q", name, "Sharing 1 new")
	}
	bob.screenshot("badge")
	bob.openSharing()
	bob.waitJS("the badge to clear", stepTimeout, `document.getElementById('sharing-new').hidden`, "")
	if on := mustEval[bool](bob, `document.getElementById('share-mail').checked && !document.getElementById('share-mail').disabled`); !on {
		t.Errorf("the share mail setting is not shown as on")
	}
	bob.until("the received share", 15*time.Second, 300*time.Millisecond, func() (bool, error) {
		ok, err := eval[bool](bob, `!!document.querySelector('#shares-received li[data-jti][data-status="active"]')`)
		if err != nil || ok {
			return ok, err
		}
		_, _ = eval[bool](bob, `(document.getElementById('shares-refresh').click(), true)`)
		return false, nil
	})
	if got := mustEval[string](bob, `document.querySelector('#shares-received li[data-jti]').dataset.jti`); got != jti {
		t.Fatalf("Bob's received jti %q, Alice's issued jti %q", got, jti)
	}
	recvLine := mustEval[string](bob, `document.querySelector('#shares-received li[data-jti] .provider-name').textContent`)
	t.Logf("Bob's received row: %q", recvLine)
	if !strings.Contains(recvLine, "calendar") {
		t.Errorf("received row %q does not name the calendar", recvLine)
	}
	if !strings.Contains(recvLine, bsAlice) {
		// Known gap: received capabilities carry no issuer email, so the
		// row falls back to the internal user id.
		t.Logf("FINDING: the received row names the issuer by id, not by email: %q", recvLine)
	}
	bob.screenshot("received")
	step("Bob: received list")

	// 3. Bob's agent reads the calendar in chat.
	call := &fakeprovider.ToolCallReply{Name: "ocmt_call_shared_resource", Input: map[string]string{"jti": jti, "operation": "read", "path": "/events"}}
	fp.Script(fakeprovider.Reply{ToolCall: call}, fakeprovider.Reply{Text: bsReply1})
	bob.do("back to the chat", chromedp.Click(chromedp.ID("tab-chat")))
	bob.waitJS("the chat input", stepTimeout, `vis('#chat-input')`, "")
	bob.do("send the first question",
		chromedp.SendKeys(chromedp.ID("chat-input"), bsQuestion1),
		chromedp.Click(chromedp.ID("chat-send")))
	obs := bob.watchReply(bsReply1, 45*time.Second, nil)
	t.Logf("reply 1 done after %d ms", obs.Done.Milliseconds())
	bob.screenshot("chat-1")
	if !cal.sawOnly(bsSecret) {
		t.Errorf("the calendar API did not get (only) Alice's credential: %q", cal.auths)
	}
	reqs := fp.Requests()
	if len(reqs) != 2 {
		t.Fatalf("the provider got %d requests, want 2", len(reqs))
	}
	if res := toolResults(t, reqs[1]); len(res) != 1 || !strings.Contains(res[0], "Dentist at nine") {
		t.Errorf("the tool result the model got: %q, want the calendar's answer", res)
	} else {
		t.Logf("tool result 1: %.300s", res[0])
	}
	step("Bob: chat with the shared calendar")

	// 4. Alice revokes (confirming the dialog).
	alice.do("press Revoke", chromedp.Click(chromedp.CSS(`#shares-issued li[data-jti] button[data-action="share-revoke"]`)))
	asked := alice.confirmStyled("revoke")
	alice.waitJS("the share to show as revoked", stepTimeout,
		`!!document.querySelector('#shares-issued li[data-jti][data-status="revoked"]')`,
		`document.getElementById('shares-issued-status').dataset.kind === 'error' && 'revoke failed: ' + document.getElementById('shares-issued-status').textContent`)
	if !strings.Contains(asked, bsBob) {
		t.Errorf("confirm dialog: %q, want one naming Bob", asked)
	} else {
		t.Logf("confirm: %q", asked)
	}
	if n := mustEval[int](alice, `document.querySelectorAll('#shares-issued li[data-jti] button[data-action="share-revoke"]').length`); n != 0 {
		t.Errorf("a revoked share still offers %d Revoke buttons", n)
	}
	alice.screenshot("revoked")
	step("Alice: revoke")

	// 5. Bob's agent tries again and is refused in plain words.
	fp.Script(fakeprovider.Reply{ToolCall: call}, fakeprovider.Reply{Text: bsReply2})
	bob.do("send the second question",
		chromedp.SendKeys(chromedp.ID("chat-input"), bsQuestion2),
		chromedp.Click(chromedp.ID("chat-send")))
	obs = bob.watchReply(bsReply2, 45*time.Second, nil)
	t.Logf("reply 2 done after %d ms", obs.Done.Milliseconds())
	bob.screenshot("chat-2")
	reqs = fp.Requests()
	if len(reqs) != 4 {
		t.Fatalf("the provider got %d requests, want 4", len(reqs))
	}
	res := toolResults(t, reqs[3])
	if len(res) == 0 || !strings.Contains(res[len(res)-1], "capability_revoked") {
		t.Errorf("the tool results the model got after the revoke: %q, want capability_revoked", res)
	} else {
		t.Logf("tool result 2: %.300s", res[len(res)-1])
	}
	if n := len(cal.auths); n != 1 {
		t.Errorf("the calendar API was called %d times, want 1 (none after the revoke)", n)
	}
	want := []string{"user: " + bsQuestion1, "assistant: " + bsReply1, "user: " + bsQuestion2, "assistant: " + bsReply2}
	var got []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got = bob.transcript()
		if strings.Join(got, "\n") == strings.Join(want, "\n") || time.Now().After(deadline) {
			break
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Bob's chat:\n got %q\nwant %q", got, want)
	}
	// Bob's received list now shows the share as revoked.
	// The panel loads its lists once (first open) and on Refresh only.
	bob.openSharing()
	if st := mustEval[string](bob, `document.querySelector('#shares-received li[data-jti]').dataset.status`); st != "revoked" {
		t.Logf("FINDING: back on the Sharing tab, Bob's row still says %q until Refresh (lists load on first open only)", st)
	}
	bob.do("press Refresh", chromedp.Click(chromedp.ID("shares-refresh")))
	bob.waitJS("Bob's share shows as revoked", stepTimeout, `!!document.querySelector('#shares-received li[data-jti][data-status="revoked"]')`, "")
	t.Logf("Bob's received row after the revoke: %q", mustEval[string](bob, `document.querySelector('#shares-received li[data-jti]').textContent`))
	bob.screenshot("received-revoked")
	step("Bob: refused after the revoke")

	// 6. Alice's agent asks to share the calendar with Bob again (chat over
	// the API: the UI under test is the Sharing tab); Alice sees the request
	// in plain words and approves it, narrowed to read only.
	av.json("PUT", "/apikeys/openai", map[string]string{"key": bsAPIKey, "baseUrl": fp.URL() + "/v1", "model": bsModel}, nil)
	fp.Script(fakeprovider.Reply{ToolCall: &fakeprovider.ToolCallReply{Name: "ocmt_issue_capability", Input: map[string]any{
		"resource": "calendar", "subjectEmail": bsBob, "scope": []string{"read", "list"}, "days": 3, "maxCalls": 20,
		"reason": "Bob wants to plan a lunch."}}},
		fakeprovider.Reply{Text: "I asked you to approve it."})
	dialChat(t, env, ac).chatOnce("approvals", "share my calendar with Bob again")
	alice.openSharing()
	alice.waitJS("the request waiting for approval", stepTimeout,
		`vis('#approvals-card') && !!document.querySelector('#approvals-list li[data-approval] button[data-action="approval-approve"]')`, "")
	line := mustEval[string](alice, `document.querySelector('#approvals-list li[data-approval]').textContent`)
	t.Logf("approval row: %q", line)
	if want := "Your assistant asks to share your calendar with " + bsBob + " — see and list, 3 days, up to 20 calls"; !strings.Contains(line, want) ||
		!strings.Contains(line, "Bob wants to plan a lunch.") {
		t.Errorf("approval row %q lacks %q or the reason", line, want)
	}
	alice.screenshot("approval")
	alice.do("press Approve…", chromedp.Click(chromedp.CSS(`#approvals-list button[data-action="approval-approve"]`)))
	alice.waitJS("the prefilled approval dialog", stepTimeout,
		`document.getElementById('share-dialog').open && document.getElementById('share-submit').textContent === 'Approve'`, "")
	if got := mustEval[[]string](alice, `[document.getElementById('share-email').value, document.getElementById('share-resource').value, `+
		`document.getElementById('share-expires').value, document.getElementById('share-maxcalls').value, `+
		`String(document.querySelector('#share-form input[name=scope][value=write]').disabled)]`); strings.Join(got, ",") != bsBob+",calendar,259200,20,true" {
		t.Errorf("approval dialog prefilled with %q", got)
	}
	alice.screenshot("approval-dialog")
	alice.do("untick list and approve",
		chromedp.Click(chromedp.CSS(`#share-form input[name=scope][value=list]`)),
		chromedp.Click(chromedp.ID("share-submit")))
	alice.waitJS("the approval to issue the share", stepTimeout,
		`!document.getElementById('share-dialog').open && document.getElementById('approvals-card').hidden && !!document.querySelector('#shares-issued li[data-jti][data-status="active"]')`,
		`document.getElementById('share-status').dataset.kind === 'error' && 'approve failed: ' + document.getElementById('share-status').textContent`)
	t.Logf("after approving: %q", mustEval[string](alice, `document.getElementById('sharing-status').textContent`))
	xtest.Eventually(t, 10*time.Second, func() error {
		var got struct {
			Capabilities []struct {
				Scope  []string `json:"scope"`
				Status string   `json:"status"`
			} `json:"capabilities"`
		}
		if err := bc.JSON(ctx, "GET", "/api/v1/me/agent/vault/capabilities?direction=received", nil, &got); err != nil {
			return err
		}
		for _, c := range got.Capabilities {
			if c.Status == "active" && strings.Join(c.Scope, ",") == "read" {
				return nil
			}
		}
		return errString("the approved share has not reached Bob")
	})
	// A plain Share… afterwards is a plain share again.
	alice.do("press Share…", chromedp.Click(chromedp.ID("share-open")))
	if got := mustEval[[]string](alice, `[document.getElementById('share-submit').textContent, String(document.getElementById('share-email').readOnly), `+
		`String(document.getElementById('share-expires').options.length), document.getElementById('share-expires').value]`); strings.Join(got, ",") != "Share,false,4,604800" {
		t.Errorf("the share dialog after an approval: %q", got)
	}
	alice.do("cancel", chromedp.Click(chromedp.CSS(`#share-form button[data-action="share-cancel"]`)))
	step("Alice: approve her agent's request")

	alice.checkConsoleAllowing(regexp.MustCompile(`^$`))
	bob.checkConsoleAllowing(regexp.MustCompile(`^$`))
	t.Logf("total %s", time.Since(begin).Round(time.Millisecond))
}
