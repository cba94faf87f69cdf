package e2e

import (
	"io"
	"net/http"
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
