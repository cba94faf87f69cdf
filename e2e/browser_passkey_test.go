package e2e

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/xtest"
)

const (
	pkEmail    = "passkey@example.com"
	pkPassword = "lantern-quarry-fjord-4417"
)

// passkeyEnv starts ocmt (process runtime) for passkey tests. A WebAuthn
// relying party ID must be a host name, not an IP address, so the server
// listens on 127.0.0.1 and the browser (and the public URL, the vault's
// RP ID and origin) use http://localhost:<port>, a secure context.
func passkeyEnv(tb testing.TB) *xtest.Env {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	public := "http://localhost:" + port
	env := xtest.NewEnv(tb, xtest.WithConfig(func(c *config.Config) { c.Listen = "127.0.0.1:" + port }), xtest.WithPublicURL(public))
	env.URL = public // the browser's address
	return env
}

// addAuthenticator adds a CTAP2.1 platform authenticator with user
// verification (and the PRF extension when prf) to the tab and returns its id.
func (b *browser) addAuthenticator(prf bool) webauthn.AuthenticatorID {
	b.t.Helper()
	var id webauthn.AuthenticatorID
	b.do("add a virtual authenticator", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		res, err := cdp.Call(ctx, t, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21, Transport: webauthn.AuthenticatorTransportInternal,
			HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, HasPrf: prf, AutomaticPresenceSimulation: true,
		}})
		id = res.AuthenticatorID
		return err
	}))
	return id
}

func (b *browser) removeAuthenticator(id webauthn.AuthenticatorID) {
	b.t.Helper()
	b.do("remove the virtual authenticator", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, webauthn.RemoveVirtualAuthenticator, webauthn.RemoveVirtualAuthenticatorParams{AuthenticatorID: id})
		return err
	}))
}

// pkRecorderJS records, in the page, every PRF output the authenticator
// returns (window.__pk.prf, base64) and every request body sent to a
// /passkeys/ route (window.__pk.bodies), so the test can check that the
// output never leaves the page and that the key sent is HKDF of it.
const pkRecorderJS = `(() => {
  const rec = window.__pk = { prf: [], bodies: [] };
  const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));
  for (const m of ['create', 'get']) {
    const orig = navigator.credentials[m].bind(navigator.credentials);
    navigator.credentials[m] = async (opts) => {
      const c = await orig(opts);
      const r = c.getClientExtensionResults();
      if (r.prf && r.prf.results && r.prf.results.first) rec.prf.push(b64(r.prf.results.first));
      return c;
    };
  }
  const of = window.fetch.bind(window);
  window.fetch = (url, init) => {
    if (String(url).includes('/passkeys/')) rec.bodies.push({ url: String(url), body: init && typeof init.body === 'string' ? init.body : '' });
    return of(url, init);
  };
  return true;
})()`

type pkRecord struct {
	PRF    []string `json:"prf"`
	Bodies []struct {
		URL  string `json:"url"`
		Body string `json:"body"`
	} `json:"bodies"`
}

// createVaultInWizard creates the vault with pkPassword in the onboarding
// wizard and skips the provider step.
func (b *browser) createVaultInWizard() {
	b.t.Helper()
	b.waitJS("the onboarding wizard shows step 1", 30*time.Second, `vis('#onboarding-step-1') && vis('#vault-password')`,
		`vis('#vault-error') && document.getElementById('vault-error-text').textContent`)
	b.do("create the vault",
		chromedp.SendKeys(chromedp.ID("vault-password"), pkPassword),
		chromedp.SendKeys(chromedp.ID("vault-password-confirm"), pkPassword),
		chromedp.Click(chromedp.ID("vault-create-submit")))
	b.skipRecoveryPhrase()
	b.waitJS("the provider step", 90*time.Second, `vis('#onboarding-step-2')`,
		`document.getElementById('vault-create-status').dataset.kind === 'error' && 'vault creation failed: ' + document.getElementById('vault-create-status').textContent`)
	b.do("skip the provider (Later)", chromedp.Click(chromedp.CSS(`[data-action="onboarding-skip"]`)))
	b.waitJS("the workspace", 30*time.Second, `vis('#tab-vault')`, "")
}

// addPasskeyInUI adds a passkey named name in Vault & keys and waits for
// it in the list (the vault must be unlocked, with no passkey yet).
func (b *browser) addPasskeyInUI(name string) {
	b.t.Helper()
	b.do("open Vault & keys", chromedp.Click(chromedp.ID("tab-vault")))
	b.waitJS("the passkey form", stepTimeout, `vis('#passkey-form') && vis('#passkey-add')`, "")
	b.do("name the device and add the passkey",
		chromedp.SendKeys(chromedp.ID("passkey-name"), name),
		chromedp.Click(chromedp.ID("passkey-add")))
	b.waitJS("the passkey added", 30*time.Second, `document.getElementById('passkey-status').dataset.kind === 'ok' && document.querySelectorAll('#passkey-list li[data-passkey]').length === 1`,
		`document.getElementById('passkey-status').dataset.kind === 'error' && 'adding the passkey failed: ' + document.getElementById('passkey-status').textContent`)
	if got := mustEval[string](b, `document.querySelector('#passkey-list li[data-passkey] .provider-name').textContent`); got != name {
		b.t.Errorf("passkey listed as %q, want %q", got, name)
	}
}

// vaultDir returns the directory holding the (single) user's vault file.
func vaultDir(tb testing.TB, dataDir string) string {
	tb.Helper()
	var dir string
	filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "vault.ocv" {
			dir = filepath.Dir(p)
		}
		return nil
	})
	if dir == "" {
		tb.Fatalf("no vault.ocv below %s", dataDir)
	}
	return dir
}

func fileSize(tb testing.TB, p string) int64 {
	tb.Helper()
	st, err := os.Stat(p)
	if err != nil {
		tb.Fatal(err)
	}
	return st.Size()
}

// wrapKinds lists the vault header's wraps as "kind/id" (GET /vault/ways works locked).
func (b *browser) wrapKinds() []string {
	b.t.Helper()
	v, err := evalAwait[[]string](b, `fetch('/api/v1/me/agent/vault/ways', {credentials: 'same-origin'}).then((r) => r.json()).then((d) => (d.wraps || []).map((w) => w.kind + '/' + (w.id || '')))`, stepTimeout)
	if err != nil {
		b.fatalf("GET /vault/ways: %v", err)
	}
	return v
}

func countKind(wraps []string, kind string) int {
	n := 0
	for _, w := range wraps {
		if strings.HasPrefix(w, kind+"/") {
			n++
		}
	}
	return n
}

// lockInBar presses Lock now and waits for the locked bar.
func (b *browser) lockInBar() {
	b.t.Helper()
	b.do("press Lock now", chromedp.Click(chromedp.ID("vault-lock")))
	b.waitJS("the vault locked", stepTimeout, `document.getElementById('vault-state').dataset.locked === 'true' && vis('#vault-unlock')`, "")
}

// passkeyModule returns the page's own (hashed) passkey.js URL.
func (b *browser) passkeyModule() string {
	b.t.Helper()
	b.waitJS("passkey.js loaded", stepTimeout, `performance.getEntriesByType('resource').some((e) => /\/static\/passkey\.[0-9a-f]{8}\.js$/.test(e.name))`, "")
	return mustEval[string](b, `performance.getEntriesByType('resource').map((e) => e.name).find((n) => /\/static\/passkey\.[0-9a-f]{8}\.js$/.test(n))`)
}

// unlockTiming is one passkey unlock timed in the page: the vault's own
// time (Server-Timing), the server's (request sent → first response
// byte, through management and the agent proxy) and the whole ceremony.
type unlockTiming struct {
	Vault float64 `json:"vault"`
	TTFB  float64 `json:"ttfb"`
	Total float64 `json:"total"`
	Err   string  `json:"err"`
	Parts string  `json:"parts"`
}

// timedPasskeyUnlock locks the vault through the API and unlocks it with
// the passkey through the page's module; it reads the finish request's
// timings.
func (b *browser) timedPasskeyUnlock(mod string) unlockTiming {
	b.t.Helper()
	js := fmt.Sprintf(`(async () => {
  const csrf = document.body.dataset.csrf || decodeURIComponent((document.cookie.match(/(?:^|; )ocmt_csrf=([^;]*)/) || [])[1] || '');
  const lk = await fetch('/api/v1/me/agent/vault/lock', { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } });
  if (!lk.ok) return { err: 'lock: ' + lk.status };
  const m = await import(%q);
  performance.clearResourceTimings();
  const t0 = performance.now();
  try { await m.unlockWithPasskey(); } catch (e) { return { err: String(e.code || '') + ' ' + e.message }; }
  const total = performance.now() - t0;
  const e = performance.getEntriesByType('resource').filter((x) => x.name.endsWith('/passkeys/unlock/finish')).pop();
  if (!e) return { err: 'no resource timing for finish' };
  const st = (e.serverTiming || []).find((x) => x.name === 'vault');
  return { vault: st ? st.duration : -1, ttfb: e.responseStart - e.requestStart, total, parts: (e.serverTiming || []).map((x) => x.name + '=' + x.duration).join(' ') };
})()`, mod)
	v, err := evalAwait[unlockTiming](b, js, 30*time.Second)
	if err != nil {
		b.fatalf("timed passkey unlock: %v", err)
	}
	return v
}

func percentile(xs []float64, p int) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := len(s) * p / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// allowedPasskeyConsole matches what the test's own failures log: the
// 404 no_passkeys of an unlock begun after the passkey was removed.
var allowedPasskeyConsole = regexp.MustCompile(`^browser log network/error: Failed to load resource: the server responded with a status of 404\b.*/api/v1/me/agent/vault/passkeys/unlock/begin\)$`)

// TestPasskeyUnlockPRF is issue 10's passkey test, in real Chromium with a
// DevTools virtual authenticator that has the PRF extension: create the
// vault, add a passkey in Vault & keys, lock, unlock with the passkey from
// the unlock dialog (no password typed), check that the PRF output never
// left the page and that the key sent is HKDF-SHA256 of it, then remove
// the passkey: the dialog no longer offers it, its wrap is gone and an
// unlock cannot start. Last, an authenticator without PRF gets the clear
// message and adds nothing.
func TestPasskeyUnlockPRF(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	begin := time.Now()
	env := passkeyEnv(t)
	b := newBrowser(t, env, 5*time.Minute)
	auth := b.addAuthenticator(true)

	b.signInBootstrap(pkEmail)
	b.waitAgentState("running", 3*time.Minute)
	b.createVaultInWizard()
	dir := vaultDir(t, env.Cfg.DataDir)
	sizeBefore := fileSize(t, filepath.Join(dir, "vault.ocv"))
	mustEval[bool](b, pkRecorderJS)

	// 1. Add a passkey in Vault & keys.
	b.addPasskeyInUI("Test laptop")
	b.waitJS("the Ways back in card counts it", stepTimeout, `!document.getElementById('ways-list') || /1 passkey/.test(document.getElementById('ways-list').textContent)`, "")
	b.screenshot("passkey-added")
	wraps := b.wrapKinds()
	if countKind(wraps, "passkey") != 1 || countKind(wraps, "password") != 1 {
		t.Errorf("wraps after adding a passkey: %q, want the password and one passkey", wraps)
	}
	grow := fileSize(t, filepath.Join(dir, "vault.ocv")) - sizeBefore
	t.Logf("vault file grew by %d bytes for the passkey (wrap + sealed credential record)", grow)
	if grow >= 1024 {
		t.Errorf("the vault file grew by %d bytes for one passkey, want < 1 KiB", grow)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "vault.passkeys.json"))
	if err != nil {
		t.Fatalf("public passkey record: %v", err)
	}
	if strings.Contains(string(pub), "Test laptop") {
		t.Errorf("the public passkey record holds the device name: %s", pub)
	}

	// 2. Lock; the unlock dialog offers the passkey first; unlock with it.
	b.lockInBar()
	b.do("press Unlock", chromedp.Click(chromedp.ID("vault-unlock")))
	b.waitJS("the dialog offers the passkey", stepTimeout, `document.getElementById('unlock-dialog').open && vis('#unlock-passkey') && document.activeElement === document.getElementById('unlock-passkey')`, "")
	b.screenshot("unlock-passkey-offered")
	clicked := time.Now()
	b.do("press Unlock with a passkey", chromedp.Click(chromedp.ID("unlock-passkey")))
	b.waitJS("the vault unlocked by the passkey", 30*time.Second,
		`!document.getElementById('unlock-dialog').open && document.getElementById('vault-state').dataset.locked === 'false'`,
		`document.getElementById('unlock-status').dataset.kind === 'error' && 'passkey unlock failed: ' + document.getElementById('unlock-status').textContent`)
	t.Logf("click → unlocked by passkey: %d ms", time.Since(clicked).Milliseconds())
	b.waitJS("last used shown", stepTimeout, `/last used/.test(document.querySelector('#passkey-list li[data-passkey]').textContent)`, "")

	// 3. The PRF output stayed in the page; the key sent is HKDF of it.
	rec := mustEval[pkRecord](b, `window.__pk`)
	if len(rec.PRF) < 2 {
		t.Fatalf("recorded %d PRF outputs, want one at registration and one at unlock", len(rec.PRF))
	}
	var finishes int
	for _, body := range rec.Bodies {
		for _, p := range rec.PRF {
			raw, _ := base64.StdEncoding.DecodeString(p)
			for _, form := range []string{p, base64.RawStdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw), base64.URLEncoding.EncodeToString(raw), fmt.Sprintf("%x", raw)} {
				if strings.Contains(body.Body, form) {
					t.Errorf("the PRF output was sent to %s", body.URL)
				}
			}
		}
		if !strings.HasSuffix(body.URL, "/finish") {
			continue
		}
		finishes++
		var fin struct {
			DerivedKey string `json:"derivedKey"`
			Credential struct {
				Ext map[string]any `json:"clientExtensionResults"`
			} `json:"credential"`
		}
		if err := json.Unmarshal([]byte(body.Body), &fin); err != nil {
			t.Fatalf("finish body: %v", err)
		}
		if len(fin.Credential.Ext) != 0 {
			t.Errorf("%s carries client extension results %v, want none", body.URL, fin.Credential.Ext)
		}
		ok := false
		for _, p := range rec.PRF {
			raw, _ := base64.StdEncoding.DecodeString(p)
			want, err := hkdf.Key(sha256.New, raw, nil, "ocmt/v1/kek/passkey", 32)
			if err != nil {
				t.Fatal(err)
			}
			ok = ok || fin.DerivedKey == base64.StdEncoding.EncodeToString(want)
		}
		if !ok {
			t.Errorf("%s: derivedKey is not HKDF-SHA256(PRF output, nil, \"ocmt/v1/kek/passkey\") of any recorded output", body.URL)
		}
	}
	if finishes != 2 {
		t.Errorf("saw %d finish requests, want 2 (register, unlock)", finishes)
	}
	if got := string(rec.PRF[0]); got != rec.PRF[len(rec.PRF)-1] {
		t.Errorf("the PRF output differs between registration and unlock")
	}

	// 4. Server time of a passkey unlock (lock → unlock, 20 times).
	mod := b.passkeyModule()
	var vaultMS, ttfb []float64
	for i := 0; i < 20; i++ {
		tm := b.timedPasskeyUnlock(mod)
		if tm.Err != "" {
			b.fatalf("passkey unlock %d: %s", i+1, tm.Err)
		}
		vaultMS, ttfb = append(vaultMS, tm.Vault), append(ttfb, tm.TTFB)
	}
	t.Logf("passkey unlock, 20 runs: vault handler p50 %.1f ms p95 %.1f ms; server (finish request → first byte, via management) p50 %.1f ms p95 %.1f ms",
		percentile(vaultMS, 50), percentile(vaultMS, 95), percentile(ttfb, 50), percentile(ttfb, 95))
	t.Logf("samples: vault %v ms; server %v ms", vaultMS, ttfb)
	b.open("/") // the page's state after the API locks
	b.waitAgentState("running", 30*time.Second)
	b.do("open Vault & keys", chromedp.Click(chromedp.ID("tab-vault")))
	b.waitJS("the vault unlocked after reload", 30*time.Second, `document.getElementById('vault-state').dataset.locked === 'false' && vis('#passkey-form')`, "")

	// 5. Remove it: it no longer unlocks.
	b.waitJS("the passkey row", stepTimeout, `vis('#passkey-list [data-action="remove-passkey"]')`, "")
	b.do("remove the passkey", chromedp.Click(chromedp.CSS(`#passkey-list [data-action="remove-passkey"]`)))
	b.waitJS("the passkey removed", stepTimeout, `document.getElementById('passkey-status').dataset.kind === 'ok' && document.querySelectorAll('#passkey-list li[data-passkey]').length === 0`,
		`document.getElementById('passkey-status').dataset.kind === 'error' && document.getElementById('passkey-status').textContent`)
	if wraps := b.wrapKinds(); countKind(wraps, "passkey") != 0 {
		t.Errorf("wraps after removing the passkey: %q", wraps)
	}
	if mustEval[bool](b, `typeof PublicKeyCredential.signalUnknownCredential === 'function'`) {
		var left int
		b.do("list the authenticator's credentials", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			res, err := cdp.Call(ctx, tg, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: auth})
			left = len(res.Credentials)
			return err
		}))
		if left != 0 {
			t.Errorf("the removed passkey is still on this device's authenticator (%d credentials; signalUnknownCredential)", left)
		}
	}
	b.lockInBar()
	b.do("press Unlock", chromedp.Click(chromedp.ID("vault-unlock")))
	b.waitJS("the unlock dialog", stepTimeout, `document.getElementById('unlock-dialog').open && vis('#unlock-password')`, "")
	time.Sleep(500 * time.Millisecond) // the dialog's GET /ways
	if mustEval[bool](b, `(() => { `+bvVis+` return vis('#unlock-passkey'); })()`) {
		t.Errorf("the unlock dialog still offers a passkey after it was removed")
	}
	res, err := evalAwait[string](b, fmt.Sprintf(`import(%q).then((m) => m.unlockWithPasskey().then(() => 'unlocked', (e) => e.code))`, mod), stepTimeout)
	if err != nil {
		b.fatalf("passkey unlock after removal: %v", err)
	}
	if res != "no_passkeys" {
		t.Errorf("a passkey unlock after removal answered %q, want no_passkeys", res)
	}
	if mustEval[string](b, `document.getElementById('vault-state').dataset.locked`) != "true" {
		t.Errorf("the vault is unlocked after the removed passkey was tried")
	}
	b.do("unlock with the password",
		chromedp.SendKeys(chromedp.ID("unlock-password"), pkPassword),
		chromedp.Click(chromedp.ID("unlock-submit")))
	b.waitJS("the vault unlocked by the password", 60*time.Second,
		`!document.getElementById('unlock-dialog').open && document.getElementById('vault-state').dataset.locked === 'false'`, "")

	// 6. An authenticator without PRF: a clear message, nothing added.
	b.removeAuthenticator(auth)
	noPRF := b.addAuthenticator(false)
	b.do("open Vault & keys", chromedp.Click(chromedp.ID("tab-vault")))
	b.waitJS("the passkey form", stepTimeout, `vis('#passkey-form')`, "")
	b.do("add a passkey without PRF",
		chromedp.SendKeys(chromedp.ID("passkey-name"), "Old key"),
		chromedp.Click(chromedp.ID("passkey-add")))
	b.waitJS("the no-PRF message", 30*time.Second, `document.getElementById('passkey-status').dataset.kind === 'error'`, "")
	msg := mustEval[string](b, `document.getElementById('passkey-status').textContent`)
	t.Logf("without PRF the page says: %q", msg)
	if !strings.Contains(msg, "PRF") || !strings.Contains(msg, "password still works") {
		t.Errorf("message for an authenticator without PRF: %q", msg)
	}
	if wraps := b.wrapKinds(); countKind(wraps, "passkey") != 0 {
		t.Errorf("wraps after a registration without PRF: %q", wraps)
	}
	// The page asked the authenticator to forget the useless credential
	// (PublicKeyCredential.signalUnknownCredential), where the browser can.
	var left int
	b.do("list the authenticator's credentials", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: noPRF})
		left = len(res.Credentials)
		return err
	}))
	if mustEval[bool](b, `typeof PublicKeyCredential.signalUnknownCredential === 'function'`) && left != 0 {
		t.Errorf("%d credentials left on the authenticator without PRF, want 0 (signalUnknownCredential)", left)
	}
	b.screenshot("no-prf")

	// The audit log has the passkey's life as metadata (no key material).
	seen, err := evalAwait[[]string](b, `fetch('/api/v1/audit?action=vault.', {credentials: 'same-origin'}).then((r) => r.json()).then((d) => (d.events || []).map((e) => e.action + '/' + ((e.detail || {}).kind || (e.detail || {}).way || '')))`, stepTimeout)
	if err != nil {
		b.fatalf("audit log: %v", err)
	}
	for _, want := range []string{"vault.way_added/passkey", "vault.unlocked/passkey", "vault.way_removed/passkey"} {
		if !slices.Contains(seen, want) {
			t.Errorf("no audit event %s in %q", want, seen)
		}
	}

	// 7. Byte search: neither the PRF output nor the key derived from it is
	// on any disk of the platform or the vault, or in the logs.
	prf, _ := base64.StdEncoding.DecodeString(rec.PRF[0])
	kek, err := hkdf.Key(sha256.New, prf, nil, "ocmt/v1/kek/passkey", 32)
	if err != nil {
		t.Fatal(err)
	}
	var needles [][]byte
	for _, k := range [][]byte{prf, kek} {
		needles = append(needles, k, []byte(base64.StdEncoding.EncodeToString(k)), []byte(base64.RawURLEncoding.EncodeToString(k)))
	}
	// The console is read before the server stops: afterwards the page's
	// polls fail with connection refused, which is not the page's fault.
	b.checkConsoleAllowing(allowedPasskeyConsole)
	b.do("leave the page", chromedp.Navigate("about:blank")) // no polls of a stopped server
	env.Stop()
	check := func(where string, data []byte) {
		for i, n := range needles {
			if bytes.Contains(data, n) {
				t.Errorf("%s holds the %s (encoding %d)", where, []string{"PRF output", "passkey KEK"}[i/3], i%3)
			}
		}
	}
	check("server log", []byte(env.Log.String()))
	check("console", []byte(env.Out.String()))
	files := 0
	filepath.WalkDir(env.Cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(p)
			check(p, data)
			files++
		}
		return nil
	})
	t.Logf("byte search: no PRF output or passkey KEK in %d files below the data directory, the server log or the console", files)
	if files < 3 {
		t.Errorf("searched only %d files", files)
	}
	t.Logf("total %s", time.Since(begin).Round(time.Millisecond))
}

// BenchmarkPasskeyUnlock measures unlocking the vault with a passkey in
// real Chromium (virtual authenticator with PRF): each iteration locks the
// vault and runs the page's unlockWithPasskey (begin → get() with PRF →
// HKDF in WebCrypto → finish). It reports, for POST /passkeys/unlock/finish,
// the vault's own time (Server-Timing: lock wait, assertion checks, unwrap,
// open) and the server time the browser sees (request sent → first byte,
// through management and the agent proxy), p50 and p95, plus the whole
// ceremony in the page. Target: server time p95 < 50 ms.
func BenchmarkPasskeyUnlock(b *testing.B) {
	if findChromium() == "" {
		xtest.SkipOrFail(b, "no chromium or chromium-browser in PATH")
	}
	env := passkeyEnv(b)
	br := newBrowser(b, env, 15*time.Minute)
	br.addAuthenticator(true)
	br.signInBootstrap(pkEmail)
	br.waitAgentState("running", 3*time.Minute)
	br.createVaultInWizard()
	br.addPasskeyInUI("Bench laptop")
	mod := br.passkeyModule()
	var vaultMS, server, total []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tm := br.timedPasskeyUnlock(mod)
		if tm.Err != "" {
			b.Fatalf("passkey unlock %d: %s", i+1, tm.Err)
		}
		vaultMS, server, total = append(vaultMS, tm.Vault), append(server, tm.TTFB), append(total, tm.Total)
	}
	b.StopTimer()
	b.ReportMetric(percentile(vaultMS, 50), "vault-p50-ms")
	b.ReportMetric(percentile(vaultMS, 95), "vault-p95-ms")
	b.ReportMetric(percentile(server, 50), "server-p50-ms")
	b.ReportMetric(percentile(server, 95), "server-p95-ms")
	b.ReportMetric(percentile(total, 50), "ceremony-p50-ms")
	b.ReportMetric(percentile(total, 95), "ceremony-p95-ms")
}
