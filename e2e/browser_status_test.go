package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ocmt/ocmt/xtest"
)

// statusViewports are the screen sizes the "honest status" tests run at
// (issue 11, item 5): a desktop window and a phone.
var statusViewports = []struct {
	name    string
	emulate func(b *browser)
}{
	{"desktop", func(b *browser) {}},
	{"phone", func(b *browser) {
		b.do("emulate a 390x844 phone",
			chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait, chromedp.EmulateScale(3)))
	}},
}

// TestBrowserNotFoundPage checks that a browser navigation to an unknown
// path gets the app's styled "Page not found" page with a link home, while
// API clients keep the JSON error (issue 11, item 5).
func TestBrowserNotFoundPage(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	env := xtest.NewEnv(t) // process runtime
	for _, vp := range statusViewports {
		t.Run(vp.name, func(t *testing.T) {
			b := newBrowser(t, env, 60*time.Second)
			vp.emulate(b)
			for _, path := range []string{"/no-such-page", "/settings/still-nothing"} {
				ctx, cancel := b.stepCtx(stepTimeout)
				resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(env.URL+path))
				cancel()
				if err != nil {
					b.fatalf("open %s: %v", path, err)
				}
				if resp == nil || resp.Status != http.StatusNotFound {
					b.fatalf("open %s: response %+v, want status 404", path, resp)
				}
				if ct, _ := resp.Headers["Content-Type"].(string); !strings.HasPrefix(ct, "text/html") {
					t.Errorf("%s: Content-Type %q, want text/html", path, ct)
				}
				type view struct {
					Heading string `json:"heading"`
					Home    string `json:"home"`
					Styled  bool   `json:"styled"`
					Body    string `json:"body"`
				}
				v := mustEval[view](b, `(() => ({
  heading: document.querySelector('main h1')?.textContent.trim() || '',
  home: document.querySelector('main a[href="/"]')?.textContent.trim() || '',
  styled: [...document.styleSheets].some((s) => s.cssRules.length > 0),
  body: document.body ? document.body.innerText.slice(0, 200) : '',
}))()`)
				if v.Heading != "Page not found" || v.Home == "" || !v.Styled {
					t.Errorf("%s: page shows heading %q, home link %q, styled %v; body %q", path, v.Heading, v.Home, v.Styled, v.Body)
				}
				b.assertNoHorizontalScroll(path)
			}
			b.screenshot("not-found")
			b.forget("status of 404 (Not Found)") // the documents' own status
			b.checkConsole()
		})
	}

	// API clients keep the JSON error.
	for _, c := range []struct{ path, accept string }{
		{"/no-such-page", "application/json"},
		{"/no-such-page", ""},
		{"/api/v1/no-such-route", "text/html,application/xhtml+xml"},
	} {
		req, _ := http.NewRequest(http.MethodGet, env.URL+c.path, nil)
		if c.accept != "" {
			req.Header.Set("Accept", c.accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !strings.Contains(string(body), `"not_found"`) {
			t.Errorf("GET %s (Accept %q): %s %s %q, want a JSON 404", c.path, c.accept, resp.Status, resp.Header.Get("Content-Type"), body)
		}
	}
}

// forget drops the console problems that contain substr (expected ones).
func (b *browser) forget(substr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.problems[:0]
	for _, p := range b.problems {
		if !strings.Contains(p, substr) {
			kept = append(kept, p)
		}
	}
	b.problems = kept
}

// unreachableConsole matches the console errors a stopped server causes.
var unreachableConsole = regexp.MustCompile(`ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|WebSocket connection to .* failed|status of 50[234]`)

// TestBrowserServerUnreachable checks that the page says so when the server
// stops answering (issue 11, item 5): the agent badge no longer claims
// "Running", the vault's lock countdown stops, a banner says the server
// cannot be reached; all of it recovers when the server answers again.
func TestBrowserServerUnreachable(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	for _, vp := range statusViewports {
		t.Run(vp.name, func(t *testing.T) {
			env := xtest.NewEnv(t) // process runtime
			b := newBrowser(t, env, 3*time.Minute)
			vp.emulate(b)
			b.signInBootstrap("offline-" + vp.name + "@example.com")
			b.waitAgentState("running", 60*time.Second)
			b.waitJS("the onboarding wizard", 30*time.Second, `vis('#vault-password')`, "")
			b.do("type the vault password twice",
				chromedp.SendKeys(chromedp.ID("vault-password"), bvPassword),
				chromedp.SendKeys(chromedp.ID("vault-password-confirm"), bvPassword))
			b.do("press Create vault", chromedp.Click(chromedp.ID("vault-create-submit")))
			b.skipRecoveryPhrase()
			b.waitJS("the lock countdown", 30*time.Second, `vis('#vault-timer') && document.getElementById('vault-timer').textContent.startsWith('locks in')`, "")
			if !mustEval[bool](b, `document.getElementById('offline-banner')?.hidden ?? true`) {
				t.Errorf("the offline banner shows while the server answers")
			}

			b.checkConfirmDialog()

			env.Stop()
			b.waitJS("the page to say the server cannot be reached", 20*time.Second,
				`document.getElementById('agent-state').dataset.state === 'offline' && vis('#offline-banner') && document.getElementById('vault-timer').dataset.offline === 'true'`, "")
			type view struct {
				Badge  string `json:"badge"`
				Banner string `json:"banner"`
				Timer  string `json:"timer"`
				Text   string `json:"text"`
			}
			look := func() view {
				return mustEval[view](b, `({badge: document.getElementById('agent-state').textContent.trim(),
  banner: document.getElementById('offline-banner').textContent.trim(),
  timer: document.getElementById('vault-timer').textContent.trim(),
  text: document.body.innerText})`)
			}
			v1 := look()
			time.Sleep(2500 * time.Millisecond)
			v2 := look()
			if v1.Timer != v2.Timer || strings.Contains(v2.Timer, "locks in") {
				t.Errorf("the lock countdown goes on while the server is away: %q, then %q", v1.Timer, v2.Timer)
			}
			if strings.Contains(v2.Badge, "Running") || strings.Contains(v2.Text, "Your agent is running") {
				t.Errorf("the page still claims the agent runs: badge %q", v2.Badge)
			}
			if !strings.Contains(v2.Banner, "can't reach the server") {
				t.Errorf("offline banner = %q", v2.Banner)
			}
			b.assertNoHorizontalScroll("/ (offline)")
			b.screenshot("offline")

			env.Restart()
			b.waitJS("the page to recover", 30*time.Second,
				`!['offline', 'loading'].includes(document.getElementById('agent-state').dataset.state) && document.getElementById('offline-banner').hidden && document.getElementById('vault-timer').dataset.offline === undefined`, "")
			t.Logf("after the restart: badge %q", mustEval[string](b, `document.getElementById('agent-state').textContent`))
			b.checkConsoleAllowing(unreachableConsole)
		})
	}
}

// checkConfirmDialog opens the styled confirm dialog (dom.js confirmDialog)
// on the current page, checks it fits the screen, and answers it once with
// Cancel (false) and once with its confirm button (true).
func (b *browser) checkConfirmDialog() {
	b.t.Helper()
	ask := `(() => {
  const url = performance.getEntriesByType('resource').map((e) => e.name).find((n) => /\/static\/dom\.[0-9a-f]{8}\.js$/.test(n));
  window.__answer = 'pending';
  import(url).then((m) => m.confirmDialog('Remove the test thing? This is a long question that has to wrap on a phone screen.', 'Remove'))
    .then((v) => { window.__answer = v; }, (e) => { window.__answer = 'error: ' + e; });
  return !!url;
})()`
	for _, c := range []struct {
		button string
		want   bool
	}{{"confirm-cancel", false}, {"confirm-ok", true}} {
		if !mustEval[bool](b, ask) {
			b.fatalf("dom.js is not among the loaded resources")
		}
		b.waitJS("the confirm dialog", stepTimeout, `document.getElementById('confirm-dialog').open && vis('#confirm-ok')`, "")
		type box struct {
			Left  float64 `json:"left"`
			Right float64 `json:"right"`
			Width float64 `json:"width"`
			OK    string  `json:"ok"`
		}
		d := mustEval[box](b, `(() => { const r = document.getElementById('confirm-dialog').getBoundingClientRect();
  return { left: r.left, right: r.right, width: window.innerWidth, ok: document.getElementById('confirm-ok').textContent }; })()`)
		if d.Left < 0 || d.Right > d.Width || d.OK != "Remove" {
			b.t.Errorf("confirm dialog spans %.0f–%.0f of %.0f px, confirm button %q", d.Left, d.Right, d.Width, d.OK)
		}
		b.assertNoHorizontalScroll("confirm dialog")
		if c.want {
			b.screenshot("confirm")
		}
		b.do("press "+c.button, chromedp.Click(chromedp.ID(c.button)))
		b.waitJS("the dialog to answer", stepTimeout, `!document.getElementById('confirm-dialog').open && window.__answer !== 'pending'`, "")
		if got := mustEval[any](b, `window.__answer`); got != c.want {
			b.t.Errorf("%s: confirmDialog resolved %v, want %v", c.button, got, c.want)
		}
	}
}
