package e2e

import (
	"regexp"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/xtest"
)

// TestBrowserChatSocketSignedOut: in a real browser, the chat socket of a
// page (ui/static/gateway.js, as chat.js makes it) is closed with
// api.StatusSessionEnded when the session signs out elsewhere (another tab
// of the same browser: same cookie), the client reports signed_out and
// does not reconnect. Process runtime: the container is not the point.
func TestBrowserChatSocketSignedOut(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	env := xtest.NewEnv(t)
	b := newBrowser(t, env, 3*time.Minute)
	b.signInBootstrap("admin@example.com")
	b.waitAgentState("running", time.Minute)

	// Open a second socket with the page's own modules and record its statuses.
	if _, err := evalAwait[bool](b, `(async () => {
  const { GatewayClient } = await import('/static/gateway.js');
  const { chatURL } = await import('/static/protocol.js');
  const rec = window.__gwStatus = [];
  const c = window.__gw = new GatewayClient(chatURL(location), { onStatus: (s) => rec.push({ state: s.state, code: s.code || 0,
    retry: s.retryInMs ?? null, error: (s.error && s.error.code) || '', message: (s.error && s.error.message) || '' }) });
  await c.request('sessions.list', {}).catch((e) => e.code); // any answer: the socket works
  return c.state === 'open';
})()`, 30*time.Second); err != nil {
		b.fatalf("open the gateway: %v", err)
	}
	if _, err := evalAwait[int](b, `fetch('/api/v1/auth/logout', { method: 'POST', credentials: 'same-origin',
  headers: { 'X-CSRF-Token': document.body.dataset.csrf } }).then((r) => r.status)`, 10*time.Second); err != nil {
		b.fatalf("logout: %v", err)
	}
	type status struct {
		State, Error, Message string
		Code                  int
		Retry                 *int
	}
	var last status
	b.until("the socket closed with the session-ended code", 5*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := eval[[]status](b, `window.__gwStatus`)
		if err != nil || len(st) == 0 {
			return false, err
		}
		last = st[len(st)-1]
		return last.State == "closed", nil
	})
	if last.Code != api.StatusSessionEnded || last.Error != "signed_out" || last.Retry != nil || !regexp.MustCompile(`signed out`).MatchString(last.Message) {
		t.Fatalf("close status %+v, want code %d, error signed_out, no retry", last, api.StatusSessionEnded)
	}
	// A request neither reopens the socket nor waits: it fails at once.
	code, err := evalAwait[string](b, `window.__gw.request('chat.history', { sessionKey: 'main', limit: 1 }).then(() => 'ok', (e) => e.code)`, 5*time.Second)
	if err != nil || code != "signed_out" {
		t.Errorf("request after sign-out: %q %v, want signed_out at once", code, err)
	}
	time.Sleep(2 * time.Second) // the first backoff step is 1 s
	if n := mustEval[int](b, `window.__gwStatus.filter((s) => s.state === 'connecting').length`); n != 1 {
		t.Errorf("the client tried to reconnect (%d connecting states)", n)
	}
	// The page's own polls see 401 once signed out.
	b.checkConsoleAllowing(regexp.MustCompile(`status of 401\b`))
}
