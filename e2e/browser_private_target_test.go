package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ocmt/ocmt/xtest"
)

// TestBrowserPrivateTargetWarning (issue 11, item 2): saving an HTTP API
// on a private address says at once, in words, that shares of it will be
// refused and which --allow-private-targets value would allow it; a public
// address gets the plain confirmation. Desktop and phone sizes.
func TestBrowserPrivateTargetWarning(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	for _, size := range []struct {
		name string
		w, h int64
	}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
		t.Run(size.name, func(t *testing.T) {
			env := xtest.NewEnv(t)
			b := newBrowser(t, env, 3*time.Minute)
			if size.name == "phone" {
				b.do("emulate a phone", chromedp.EmulateViewport(size.w, size.h, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait))
			} else {
				b.do("desktop size", chromedp.EmulateViewport(size.w, size.h))
			}
			b.signInBootstrap("nas-owner@example.org")
			readyVault(t, env, b.apiClient(), "a long enough vault password")
			b.open("/")
			b.waitAgentState("running", time.Minute)
			b.waitJS("the vault unlocked", stepTimeout, `document.getElementById('vault-state').dataset.locked === 'false'`, "")
			b.openSharing()
			save := func(name, base string) (kind, text string) {
				b.do("save "+name,
					chromedp.SendKeys(chromedp.ID("integration-name"), name),
					chromedp.SendKeys(chromedp.ID("integration-baseurl"), base),
					chromedp.SendKeys(chromedp.ID("integration-secret"), "Bearer nas-secret"),
					chromedp.Click(chromedp.ID("integration-submit")))
				b.waitJS(name+" saved", stepTimeout, `!!document.querySelector('#integration-list [data-integration="`+name+`"]') && ['ok','warn'].includes(document.getElementById('integration-status').dataset.kind)`,
					`document.getElementById('integration-status').dataset.kind === 'error' && document.getElementById('integration-status').textContent`)
				return mustEval[string](b, `document.getElementById('integration-status').dataset.kind`), mustEval[string](b, `document.getElementById('integration-status').textContent`)
			}
			kind, text := save("nas", "http://192.168.1.5:8080")
			if kind != "warn" || !strings.Contains(text, "--allow-private-targets=192.168.1.0/24") || !strings.Contains(text, "refused") {
				t.Fatalf("private address: %s %q", kind, text)
			}
			b.screenshot("private-target-warning-" + size.name)
			if kind, text := save("weather", "https://93.184.216.34/api"); kind != "ok" || strings.Contains(text, "private") {
				t.Fatalf("public address: %s %q", kind, text)
			}
		})
	}
}
