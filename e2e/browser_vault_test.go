package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/xtest"
)

// The browser vault test's secrets and script. The replies avoid Markdown
// syntax so the rendered text equals the scripted text.
const (
	bvEmail     = "vault-browser@example.com"
	bvPassword  = "harbor-velvet-comet-7319"
	bvWrong     = "harbor-velvet-comet-7318"
	bvAPIKey    = "sk-e2e-browser-5d1c9a7f"
	bvQuestion1 = "Which colour is the lighthouse at Kestrel Point?"
	bvReply1    = "The lighthouse at Kestrel Point is painted a deep teal with one white band, and its lamp has turned once every nine seconds since the winter of nineteen thirty two."
	bvQuestion2 = "And how tall is that lighthouse?"
	bvReply2    = "It stands forty one metres tall, counting the lantern room and the gallery around it."
)

// bvVis is a page-side helper: whether the element matching a selector is
// rendered (no [hidden] ancestor, has a box).
const bvVis = `const vis = (s) => { const el = document.querySelector(s); return !!el && !el.closest('[hidden]') && el.getClientRects().length > 0; };`

// waitJS polls the boolean expression expr (evaluated with vis in scope)
// until it is true. fail, when not "", is an expression returning a
// non-empty string when waiting is hopeless (e.g. an error status shows).
func (b *browser) waitJS(what string, timeout time.Duration, expr, fail string) {
	b.t.Helper()
	if fail == "" {
		fail = `''`
	}
	js := `(() => { ` + bvVis + ` const bad = (` + fail + `) || ''; return { ok: !bad && !!(` + expr + `), bad: String(bad) }; })()`
	b.until(what, timeout, 50*time.Millisecond, func() (bool, error) {
		v, err := eval[struct {
			OK  bool   `json:"ok"`
			Bad string `json:"bad"`
		}](b, js)
		if err != nil {
			return false, err
		}
		if v.Bad != "" {
			return false, &fatalErr{fmt.Errorf("%s", v.Bad)}
		}
		if !v.OK {
			return false, fmt.Errorf("not yet")
		}
		return true, nil
	})
}

// evalAwait evaluates expr and awaits the promise it returns.
func evalAwait[T any](b *browser, expr string, timeout time.Duration) (T, error) {
	ctx, cancel := b.stepCtx(timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// allowedConsole matches the network errors a wrong unlock legitimately
// logs: 401 wrong_key and 429 backoff from POST …/vault/unlock (not
// …/unlock/challenge).
var allowedConsole = regexp.MustCompile(`^browser log network/error: Failed to load resource: the server responded with a status of (401|429)\b.*\(http://[^)]+/api/v1/me/agent/vault/unlock\)$`)

// checkConsoleAllowing fails the test for every console problem except
// those matching allow, and returns how many matched.
func (b *browser) checkConsoleAllowing(allow *regexp.Regexp) (allowed []string) {
	b.t.Helper()
	b.mu.Lock()
	problems := b.problems
	b.problems = nil
	b.mu.Unlock()
	for _, p := range problems {
		if allow.MatchString(p) {
			allowed = append(allowed, p)
			continue
		}
		b.t.Errorf("browser console: %s", p)
	}
	return allowed
}

// fakeProviderOnGateway starts the fake provider on the Docker network's
// gateway address, the one host address user containers reach.
func fakeProviderOnGateway(t *testing.T, env *xtest.Env) *fakeprovider.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	nw, err := cli.NetworkInspect(ctx, env.Cfg.Network, client.NetworkInspectOptions{})
	if err != nil || len(nw.Network.IPAM.Config) == 0 {
		t.Fatalf("inspect network %s: %v", env.Cfg.Network, err)
	}
	gw := nw.Network.IPAM.Config[0].Gateway.String()
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatal(err)
	}
	fp := fakeprovider.NewOn(ln)
	t.Cleanup(fp.Close)
	return fp
}

// replyObservation is what watchReply saw of one assistant reply.
type replyObservation struct {
	Partials []int // distinct partial text lengths seen while streaming, in order
	Samples  int   // samples taken while streaming
	First    time.Duration
	Done     time.Duration
}

// watchReply samples the newest assistant message until it has streamed
// and finished (or, if streaming was too quick to see, shows want), checking
// that every partial text is a prefix of want and that the final text is
// want. Call it right after sending, while no finished reply to this
// message can be on screen yet. shot, if not nil, runs once mid-stream
// (after two partial lengths).
func (b *browser) watchReply(want string, timeout time.Duration, shot func()) replyObservation {
	b.t.Helper()
	type sample struct {
		Count     int    `json:"count"`
		Streaming bool   `json:"streaming"`
		Text      string `json:"text"`
		State     string `json:"state"`
		Note      string `json:"note"`
	}
	const js = `(() => {
  const all = [...document.querySelectorAll('#chat-messages [data-role="assistant"]')];
  const el = all[all.length - 1];
  const body = el && el.querySelector('.msg-body');
  const note = el && el.querySelector('.msg-note');
  return { count: all.length, streaming: !!el && el.dataset.streaming === 'true', text: body ? body.textContent : '',
    state: el ? (el.dataset.state || '') : '', note: note ? note.textContent : '' };
})()`
	var obs replyObservation
	seen := map[int]bool{}
	start := time.Now()
	deadline := start.Add(timeout)
	var last sample
	sawStreaming := false
	for {
		s, err := eval[sample](b, js)
		if err == nil {
			last = s
			if s.Count > 0 && s.Streaming {
				sawStreaming = true
				obs.Samples++
				txt := strings.TrimSpace(s.Text)
				if txt != "" {
					if obs.First == 0 {
						obs.First = time.Since(start)
					}
					if !strings.HasPrefix(want, txt) {
						b.t.Errorf("streaming text %q is not a prefix of the scripted reply", txt)
					}
					if len(txt) < len(want) && !seen[len(txt)] {
						seen[len(txt)] = true
						obs.Partials = append(obs.Partials, len(txt))
						if len(obs.Partials) == 2 && shot != nil {
							shot()
						}
					}
				}
			} else if s.Count > 0 && (sawStreaming || strings.TrimSpace(s.Text) == want) {
				obs.Done = time.Since(start)
				break
			}
		}
		if time.Now().After(deadline) {
			b.fatalf("assistant reply %q did not finish within %s (last sample %+v, error %v)", want, timeout, last, err)
		}
		time.Sleep(15 * time.Millisecond)
	}
	if last.State != "" || last.Note != "" {
		b.t.Errorf("reply %q ended with data-state=%q note %q", want, last.State, last.Note)
	}
	if got := strings.TrimSpace(last.Text); got != want {
		b.t.Errorf("reply text = %q, want %q", got, want)
	}
	return obs
}

// transcript returns the roles and texts of the messages shown in the chat.
func (b *browser) transcript() []string {
	b.t.Helper()
	return mustEval[[]string](b, `[...document.querySelectorAll('#chat-messages [data-role]')].map((el) => el.dataset.role + ': ' + (el.querySelector('.msg-body')?.textContent || '').trim())`)
}

// TestBrowserVaultChat is the browser end-to-end test (SPEC §3 steps
// 4–7) with a real Docker container and the fake model provider: create the
// vault with a password stretched in the browser, add a provider key, chat
// with a reply that visibly streams, reload (still unlocked, history
// decrypted in the container), lock, get the unlock prompt by chatting,
// fail once with a wrong password, unlock and continue the chat.
func TestBrowserVaultChat(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := docker.Ping(pctx)
	cancel()
	if err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	begin := time.Now()
	env := xtest.NewEnv(t, xtest.WithRuntime(config.RuntimeDocker))
	fp := fakeProviderOnGateway(t, env)
	fp.SetKey(bvAPIKey)
	b := newBrowser(t, env, 6*time.Minute)
	lap := time.Now()
	step := func(name string) {
		t.Logf("%-34s %6d ms", name, time.Since(lap).Milliseconds())
		lap = time.Now()
	}

	// 1. Sign in; the container starts and the wizard shows.
	b.signInBootstrap(bvEmail)
	b.waitAgentState("running", 3*time.Minute)
	b.waitJS("the onboarding wizard shows step 1", 30*time.Second, `vis('#onboarding-step-1') && vis('#vault-password')`,
		`vis('#vault-error') && document.getElementById('vault-error-text').textContent`)
	step("sign-in → container running")
	b.screenshot("wizard")

	// 2. Create the vault; time the in-browser key derivation.
	type kdfParams struct {
		Salt string `json:"salt"`
		KDF  struct {
			Alg         string `json:"alg"`
			MemoryKiB   int    `json:"memoryKiB"`
			Iterations  int    `json:"iterations"`
			Parallelism int    `json:"parallelism"`
		} `json:"kdf"`
	}
	params, err := evalAwait[kdfParams](b, `fetch('/api/v1/me/agent/vault/params', {credentials: 'same-origin'}).then((r) => r.json())`, stepTimeout)
	if err != nil {
		b.fatalf("GET params: %v", err)
	}
	b.do("type the vault password twice",
		chromedp.SendKeys(chromedp.ID("vault-password"), bvPassword),
		chromedp.SendKeys(chromedp.ID("vault-password-confirm"), bvPassword))
	meter := mustEval[[]string](b, `(() => { const m = document.querySelector('.strength[data-for="vault-password"]'); return [m.dataset.ok || '', m.dataset.score || '', m.querySelector('.strength-text').textContent]; })()`)
	if meter[0] != "true" {
		t.Errorf("strength meter for a good password: ok=%q score=%q %q", meter[0], meter[1], meter[2])
	}
	// Record every status line with its time, and the submit time.
	mustEval[bool](b, `(() => {
  performance.clearResourceTimings();
  const rec = window.__bvStatus = [];
  const el = document.getElementById('vault-create-status');
  new MutationObserver(() => rec.push({ t: performance.now(), text: el.textContent })).observe(el, { childList: true, characterData: true, subtree: true });
  document.getElementById('vault-create-form').addEventListener('submit', () => { window.__bvSubmit = performance.now(); }, { capture: true });
  return true;
})()`)
	clicked := time.Now()
	b.do("press Create vault", chromedp.Click(chromedp.ID("vault-create-submit")))
	b.skipRecoveryPhrase()
	b.waitJS("the provider step after creating the vault", 90*time.Second, `vis('#onboarding-step-2') && vis('#setup-kind')`,
		`document.getElementById('vault-create-status').dataset.kind === 'error' && 'vault creation failed: ' + document.getElementById('vault-create-status').textContent`)
	wall := time.Since(clicked)
	type kdfTiming struct {
		Submit    float64 `json:"submit"`
		Deriving  float64 `json:"deriving"`
		Creating  float64 `json:"creating"`
		ParamsEnd float64 `json:"paramsEnd"`
		InitEnd   float64 `json:"initEnd"`
		Statuses  []string
	}
	tm := mustEval[kdfTiming](b, `(() => {
  const r = window.__bvStatus || [];
  const at = (re) => { const e = r.find((x) => re.test(x.text)); return e ? e.t : -1; };
  const res = (suffix) => { const e = performance.getEntriesByType('resource').filter((x) => x.name.endsWith(suffix)).pop(); return e ? e.responseEnd : -1; };
  return { submit: window.__bvSubmit || -1, deriving: at(/^Deriving key/), creating: at(/^Creating your vault/),
    paramsEnd: res('/api/v1/me/agent/vault/params'), initEnd: res('/api/v1/me/agent/vault/init'), Statuses: r.map((x) => x.text) };
})()`)
	label := fmt.Sprintf("browser Argon2id (%d MiB, t=%d, p=%d)", params.KDF.MemoryKiB/1024, params.KDF.Iterations, params.KDF.Parallelism)
	if tm.ParamsEnd > 0 && tm.Creating > tm.ParamsEnd {
		// From the parameters' arrival to "Creating your vault…": worker
		// start, wasm load and compile, and Argon2id itself.
		t.Logf("%s: %.0f ms (worker start + wasm load + derivation; GET /params to status change)", label, tm.Creating-tm.ParamsEnd)
	} else {
		t.Errorf("could not time the derivation in the page: %+v", tm)
	}
	t.Logf("vault creation: submit → 'Deriving key' %.0f ms, → 'Creating your vault' %.0f ms, → POST /init done %.0f ms; click → provider step (wall) %d ms; statuses %q",
		tm.Deriving-tm.Submit, tm.Creating-tm.Submit, tm.InitEnd-tm.Submit, wall.Milliseconds(), tm.Statuses)
	if params.KDF.MemoryKiB != crypto.DefaultMemoryKiB || params.KDF.Iterations != crypto.DefaultIterations || params.KDF.Parallelism != crypto.DefaultParallelism {
		t.Errorf("the container offers KDF parameters %+v, want the defaults (64 MiB, t=3, p=4)", params.KDF)
	}
	if mustEval[bool](b, `document.getElementById('vault-bar').hidden || document.getElementById('vault-state').dataset.locked !== 'false'`) {
		t.Errorf("after creating the vault the bar does not show it unlocked")
	}
	step("create vault")

	// 3. The provider: the UI offers a base URL only for OpenAI-compatible
	// servers, so the fake provider goes in as one (its /v1 endpoints).
	if mustEval[bool](b, `(() => { `+bvVis+` return vis('#setup-baseurl'); })()`) {
		t.Errorf("the base URL field shows for the default (Anthropic) choice")
	}
	mustEval[string](b, `(() => { const s = document.getElementById('setup-kind'); s.value = 'compatible'; s.dispatchEvent(new Event('change', { bubbles: true })); return s.value; })()`)
	b.waitJS("the base URL field for an OpenAI-compatible server", stepTimeout, `vis('#setup-baseurl')`, "")
	b.do("fill in the provider",
		chromedp.SendKeys(chromedp.ID("setup-baseurl"), fp.URL()+"/v1"),
		chromedp.SendKeys(chromedp.ID("setup-key"), bvAPIKey),
		chromedp.SendKeys(chromedp.ID("setup-model"), "fake-model-1"))
	b.screenshot("wizard-provider")
	b.do("press Save provider", chromedp.Click(chromedp.CSS(`#provider-setup-form button[type="submit"]`)))
	b.waitJS("the last wizard step", 30*time.Second, `vis('#onboarding-step-3') && vis('#onboarding-finish')`,
		`document.getElementById('setup-provider-status').dataset.kind === 'error' && 'saving the provider failed: ' + document.getElementById('setup-provider-status').textContent`)
	b.do("press Start chatting", chromedp.Click(chromedp.ID("onboarding-finish")))
	b.waitJS("the chat, connected", 30*time.Second,
		`vis('#chat-input') && document.getElementById('onboarding').hidden && document.getElementById('chat-connection').dataset.state === 'open'`, "")
	if reqs := fp.Requests(); len(reqs) != 0 {
		t.Errorf("the provider was called %d times before the first message", len(reqs))
	}
	step("provider + finish wizard")

	// 4. Chat: the reply streams in.
	fp.Script(fakeprovider.Reply{Text: bvReply1, ChunkDelay: 40 * time.Millisecond})
	b.do("send the first question",
		chromedp.SendKeys(chromedp.ID("chat-input"), bvQuestion1),
		chromedp.Click(chromedp.ID("chat-send")))
	obs := b.watchReply(bvReply1, 45*time.Second, func() { b.screenshot("chat-streaming") })
	t.Logf("reply 1: first text after %d ms, done after %d ms, %d samples while streaming, partial lengths %v",
		obs.First.Milliseconds(), obs.Done.Milliseconds(), obs.Samples, obs.Partials)
	if len(obs.Partials) < 2 {
		t.Errorf("the reply did not stream progressively: partial lengths seen %v (want at least 2 distinct)", obs.Partials)
	}
	if got := b.transcript(); len(got) != 2 || got[0] != "user: "+bvQuestion1 {
		t.Errorf("chat after the first exchange: %q", got)
	}
	b.screenshot("chat-done")
	step("chat 1")

	// 5. Reload: the vault stays unlocked (server-side, 30 min) and the
	// history comes back, decrypted in the container.
	b.open("/")
	b.waitAgentState("running", 30*time.Second)
	b.waitJS("the history after a reload", 30*time.Second,
		`document.getElementById('vault-state').dataset.locked === 'false' && document.querySelectorAll('#chat-messages [data-role]').length >= 2`, "")
	if got := b.transcript(); len(got) != 2 || got[0] != "user: "+bvQuestion1 || got[1] != "assistant: "+bvReply1 {
		t.Errorf("history after reload: %q", got)
	}
	if mustEval[bool](b, `document.getElementById('unlock-dialog').open`) {
		t.Errorf("the unlock dialog opened after a reload although the vault is unlocked")
	}
	t.Logf("after reload: %s", mustEval[string](b, `document.getElementById('vault-state').textContent.replace(/\s+/g, ' ').trim()`))
	step("reload")

	// 6. Lock, then chat: the unlock prompt opens; a wrong password first.
	b.do("press Lock now", chromedp.Click(chromedp.ID("vault-lock")))
	b.waitJS("the bar to show the vault locked", stepTimeout,
		`document.getElementById('vault-state').dataset.locked === 'true' && document.getElementById('vault-state-text').textContent === 'Vault locked' && vis('#vault-unlock')`, "")
	if n := mustEval[int](b, `document.querySelectorAll('#chat-messages [data-role]').length`); n != 0 {
		t.Errorf("%d decrypted messages stay on screen after locking", n)
	}
	if mustEval[bool](b, `document.getElementById('unlock-dialog').open`) {
		t.Errorf("the unlock dialog opened by itself after Lock now")
	}
	b.screenshot("locked")
	fp.Script(fakeprovider.Reply{Text: bvReply2, ChunkDelay: 20 * time.Millisecond})
	b.do("send the second question while locked",
		chromedp.SendKeys(chromedp.ID("chat-input"), bvQuestion2),
		chromedp.Click(chromedp.ID("chat-send")))
	b.waitJS("the unlock prompt", stepTimeout, `document.getElementById('unlock-dialog').open && vis('#unlock-password')`, "")
	if why := mustEval[string](b, `document.getElementById('unlock-reason').hidden ? '' : document.getElementById('unlock-reason').textContent`); why == "" {
		t.Errorf("the unlock prompt gives no reason")
	} else {
		t.Logf("unlock prompt says %q", why)
	}
	t.Logf("viewport while the dialog is open: %s", mustEval[string](b, `innerWidth + 'x' + innerHeight + ', scrollY ' + Math.round(scrollY) + ', page height ' + document.documentElement.scrollHeight`))
	b.screenshot("unlock-dialog")
	wrongAt := time.Now()
	b.do("try a wrong password",
		chromedp.SendKeys(chromedp.ID("unlock-password"), bvWrong),
		chromedp.Click(chromedp.ID("unlock-submit")))
	b.waitJS("“Wrong password”", 60*time.Second, `/Wrong password/.test(document.getElementById('unlock-status').textContent)`,
		`(() => { const s = document.getElementById('unlock-status'); return s.dataset.kind === 'error' && !/Wrong password|Too many attempts/.test(s.textContent) && 'unlock failed otherwise: ' + s.textContent; })()`)
	t.Logf("wrong password rejected after %d ms", time.Since(wrongAt).Milliseconds())
	if !mustEval[bool](b, `document.getElementById('unlock-dialog').open`) {
		t.Errorf("the dialog closed after a wrong password")
	}
	b.screenshot("unlock-wrong")
	if n := len(fp.Requests()); n != 1 {
		t.Errorf("the provider has %d requests while the vault is locked, want 1 (the message must wait for the unlock)", n)
	}
	// Wait out a backoff, if the status shows one.
	b.waitJS("the unlock button to be usable again", 60*time.Second, `!document.getElementById('unlock-submit').disabled`, "")
	rightAt := time.Now()
	b.do("enter the right password",
		chromedp.Clear(chromedp.ID("unlock-password")),
		chromedp.SendKeys(chromedp.ID("unlock-password"), bvPassword),
		chromedp.Click(chromedp.ID("unlock-submit")))
	b.waitJS("the vault unlocked", 60*time.Second,
		`!document.getElementById('unlock-dialog').open && document.getElementById('vault-state').dataset.locked === 'false'`,
		`(() => { const s = document.getElementById('unlock-status'); return s.dataset.kind === 'error' && !/Too many attempts/.test(s.textContent) && 'unlock failed: ' + s.textContent; })()`)
	t.Logf("unlocked after %d ms", time.Since(rightAt).Milliseconds())
	b.screenshot("after-unlock")
	step("lock → unlock prompt → unlock")

	// 7. The held message goes out and its reply arrives; the provider saw
	// the first exchange in the history.
	obs = b.watchReply(bvReply2, 45*time.Second, nil)
	t.Logf("reply 2: done after %d ms, partial lengths %v", obs.Done.Milliseconds(), obs.Partials)
	want := []string{"user: " + bvQuestion1, "assistant: " + bvReply1, "user: " + bvQuestion2, "assistant: " + bvReply2}
	// The user's message and the history reload race after an unlock: give
	// the page a moment to settle before comparing.
	var got []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got = b.transcript()
		if strings.Join(got, "\n") == strings.Join(want, "\n") || time.Now().After(deadline) {
			break
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("chat after unlocking:\n got %q\nwant %q", got, want)
	}
	b.screenshot("chat-continued")
	reqs := fp.Requests()
	if len(reqs) != 2 {
		t.Fatalf("the provider got %d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if r.Path != "/v1/chat/completions" || !r.Stream || r.Headers.Get("Authorization") != "Bearer "+bvAPIKey {
			t.Errorf("provider request %d: path %s stream %v authorization %q", i+1, r.Path, r.Stream, r.Headers.Get("Authorization"))
		}
	}
	var msgs []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(reqs[1].Messages, &msgs); err != nil {
		t.Fatalf("second request's messages: %v", err)
	}
	var seen []string
	for _, m := range msgs {
		var s string
		if json.Unmarshal(m.Content, &s) != nil {
			s = string(m.Content)
		}
		if m.Role == "user" || m.Role == "assistant" {
			seen = append(seen, m.Role+": "+s)
		}
	}
	if strings.Join(seen, "\n") != strings.Join(want[:3], "\n") {
		t.Errorf("the provider's second request carries the conversation\n %q\nwant\n %q", seen, want[:3])
	}
	// The container holds the whole conversation: a reload shows it.
	b.open("/")
	b.waitJS("the whole history after a second reload", 30*time.Second,
		`document.getElementById('vault-state').dataset.locked === 'false' && document.querySelectorAll('#chat-messages [data-role]').length >= 4`, "")
	if got := b.transcript(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("history after the second reload:\n got %q\nwant %q", got, want)
	}
	step("chat 2 + reload")

	// 8. Console: only the wrong password's 401 (and a 429 if a backoff hit).
	allowed := b.checkConsoleAllowing(allowedConsole)
	if len(allowed) == 0 {
		t.Errorf("no 401 from /vault/unlock was logged for the wrong password")
	}
	t.Logf("allowed console errors: %q", allowed)
	t.Logf("total %s", time.Since(begin).Round(time.Millisecond))
}

// TestBrowserKDFMatchesGo proves that the browser (kdf.js → worker → Go
// compiled to WebAssembly) and the container (crypto.DeriveKEK) derive the
// same key from the same password, salt and parameters, including the
// browser's NFC normalisation of the password.
func TestBrowserKDFMatchesGo(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	env := xtest.NewEnv(t) // process runtime: only the page matters
	b := newBrowser(t, env, 2*time.Minute)
	b.signInBootstrap("kdf@example.com")
	b.waitJS("the page's modules", stepTimeout, `!!document.getElementById('kdf-config') && performance.getEntriesByType('resource').some((e) => /\/static\/kdf\.[0-9a-f]{8}\.js$/.test(e.name))`, "")
	// The page's own (hashed) kdf.js, so the module instance is the app's.
	kdfURL := mustEval[string](b, `performance.getEntriesByType('resource').map((e) => e.name).find((n) => /\/static\/kdf\.[0-9a-f]{8}\.js$/.test(n))`)
	t.Logf("kdf module %s", kdfURL)

	salt := []byte("ocmt-e2e-salt-16")
	cases := []struct {
		name            string
		browserPW, goPW string
		m, it, p        int
	}{
		{"ascii, floor 32 MiB t=2 p=1", "correct horse battery staple", "correct horse battery staple", crypto.MinMemoryKiB, crypto.MinIterations, 1},
		// "é" typed decomposed (e + U+0301) must give the key of the composed form.
		{"NFD password, 32 MiB t=2 p=4", "Cafe\u0301 au lait, s'il vous pla\u0131t", "Caf\u00e9 au lait, s'il vous pla\u0131t", crypto.MinMemoryKiB, crypto.MinIterations, 4},
		{"defaults 64 MiB t=3 p=4", bvPassword, bvPassword, crypto.DefaultMemoryKiB, crypto.DefaultIterations, crypto.DefaultParallelism},
	}
	for _, c := range cases {
		pw, _ := json.Marshal(c.browserPW)
		js := fmt.Sprintf(`import(%q).then(async (m) => { const t0 = performance.now(); const key = await m.deriveKey(%s, { salt: %q, kdf: { alg: 'argon2id', memoryKiB: %d, iterations: %d, parallelism: %d } }); return { key, ms: performance.now() - t0 }; })`,
			kdfURL, pw, base64.StdEncoding.EncodeToString(salt), c.m, c.it, c.p)
		got, err := evalAwait[struct {
			Key string  `json:"key"`
			MS  float64 `json:"ms"`
		}](b, js, time.Minute)
		if err != nil {
			b.fatalf("%s: browser deriveKey: %v", c.name, err)
		}
		goStart := time.Now()
		k, err := crypto.DeriveKEK([]byte(c.goPW), salt, crypto.KDFParams{Alg: crypto.KDFArgon2id, MemoryKiB: uint32(c.m), Iterations: uint32(c.it), Parallelism: uint8(c.p)})
		if err != nil {
			t.Fatalf("%s: DeriveKEK: %v", c.name, err)
		}
		goMS := time.Since(goStart).Milliseconds()
		want := base64.StdEncoding.EncodeToString(k[:])
		if got.Key != want {
			t.Errorf("%s: browser key %s, Go key %s", c.name, got.Key, want)
		}
		t.Logf("%s: browser %.0f ms (incl. worker + wasm start), Go %d ms, keys equal: %v", c.name, got.MS, goMS, got.Key == want)
	}
	b.checkConsole()
}
