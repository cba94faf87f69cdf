package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

var admin = &User{ID: "u1", Email: "alice@example.com", Admin: true}

// renderCases covers every page Render knows.
var renderCases = []struct {
	page    string
	status  int
	p       Page
	want    []string
	notWant []string
}{
	{"signin", 200, Page{CSRF: "c1"}, []string{`data-page="signin"`, `data-csrf="c1"`, `id="signin-email"`, `aria-live="polite"`, `name="_csrf" value="c1"`}, []string{`data-action="logout"`}},
	{"verify", 200, Page{CSRF: "c2", Data: map[string]string{"token": "tok123", "purpose": "signin", "email": "bob@example.com"}},
		[]string{`method="post" action="/auth/verify"`, `name="token" value="tok123"`, `name="_csrf" value="c2"`, `id="continue"`, `data-token="tok123"`, `data-purpose="signin"`, "bob@example.com"},
		[]string{`id="bootstrap-email"`, "first user"}},
	{"verify", 200, Page{CSRF: "c3", Data: map[string]string{"token": "t", "purpose": "bootstrap"}},
		[]string{`id="bootstrap-email"`, `name="email"`, `type="email"`, " required", "You are the first user of this server; you will be its administrator.", `id="continue"`}, nil},
	{"verify", 200, Page{Data: map[string]string{"token": "t", "purpose": "invite", "email": "new@example.com"}}, []string{"invitation", "new@example.com", `id="continue"`}, []string{`id="bootstrap-email"`}},
	{"message", 410, Page{Data: map[string]string{"heading": "Link expired", "message": "Links work for 15 minutes.", "link-href": "/signin", "link-text": "Request a new link"}},
		[]string{"Link expired", "Links work for 15 minutes.", `href="/signin"`, "Request a new link", "<title>ocmt · Link expired</title>"}, nil},
	{"message", 400, Page{Data: map[string]string{"heading": "Bad link"}}, []string{"Bad link"}, []string{`class="btn btn-primary" href`}},
	{"app", 200, Page{CSRF: "c4", User: &User{ID: "u2", Email: "bob@example.com"}},
		[]string{`id="agent-state"`, `data-state=`, `data-action="provision"`, "Create my agent", `data-action="logout"`, "My agent", "Isolation is weaker:", "this server runs agents as processes, not containers", `aria-current="page"`,
			// vault, onboarding and chat (workspace.js)
			`id="vault-state" class="vault-state" data-locked="true"`, `id="vault-lock"`, `id="vault-extend"`, `<dialog id="unlock-dialog"`, `id="unlock-password"`, `id="unlock-submit"`,
			`id="onboarding"`, `id="vault-password"`, `id="vault-password-confirm"`, `id="provider-setup-form"`,
			`id="chat-input"`, `id="chat-send"`, `id="chat-stop"`, `id="chat-messages"`, `id="session-list"`, `id="new-session"`,
			`id="provider-list"`, `id="provider-form"`, `id="password-form"`,
			`data-worker="` + AssetURL("kdf-worker.js") + `"`, `data-wasm="` + AssetURL("wasm/kdf.wasm") + `"`, `data-wasm-exec="` + AssetURL("wasm/wasm_exec.js") + `"`,
			`name="username" autocomplete="username" value="bob@example.com"`},
		[]string{`href="/admin"`}},
	{"admin", 200, Page{CSRF: "c5", User: admin}, []string{`href="/admin" aria-current="page"`, `id="invite-form"`, `id="containers-body"`, `id="users-body"`, `data-action="logout"`}, nil},
}

func TestRenderPages(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range renderCases {
		t.Run(tc.page, func(t *testing.T) {
			seen[tc.page] = true
			rec := httptest.NewRecorder()
			if err := Render(rec, tc.status, tc.page, tc.p); err != nil {
				t.Fatalf("Render: %v", err)
			}
			if rec.Code != tc.status {
				t.Errorf("status = %d, want %d", rec.Code, tc.status)
			}
			if got := rec.Header().Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if rec.Header().Get("Content-Security-Policy") == "" {
				t.Error("no CSP header")
			}
			body := rec.Body.String()
			for _, w := range append(tc.want, `<main`, `<header`, AssetURL("app.js"), AssetURL("app.css")) {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q", w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(body, w) {
					t.Errorf("body has %q", w)
				}
			}
			checkHTML(t, tc.page, body)
		})
	}
	for name := range pageDefaults {
		if !seen[name] {
			t.Errorf("page %q has no render case", name)
		}
	}
}

func TestRenderKeepsCallerCSP(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Security-Policy", "x")
	if err := Render(rec, 200, "signin", Page{}); err != nil {
		t.Fatal(err)
	}
	if got := rec.Header().Get("Content-Security-Policy"); got != "x" {
		t.Errorf("CSP = %q, want the caller's", got)
	}
}

func TestRenderErrors(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		p          Page
	}{
		{"unknown page", "nope", Page{}},
		{"empty page", "", Page{}},
		{"path page", "../layout", Page{}},
		{"bad key", "app", Page{Data: map[string]string{`x" onload="y`: "1"}}},
		{"upper key", "app", Page{Data: map[string]string{"Token": "1"}}},
		{"reserved key", "app", Page{Data: map[string]string{"csrf": "1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := Render(rec, 200, tc.page, tc.p); err == nil {
				t.Fatal("want error")
			}
			if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
				t.Error("wrote a response despite the error")
			}
		})
	}
}

func TestRenderEscapes(t *testing.T) {
	const evil = `<script>alert(1)</script>`
	rec := httptest.NewRecorder()
	err := Render(rec, 200, "message", Page{
		Title: evil,
		CSRF:  `"><script>alert(2)</script>`,
		User:  &User{Email: evil},
		Data:  map[string]string{"heading": evil, "message": evil, "extra": `" onmouseover="x`, "link-href": "javascript:alert(1)"},
	})
	if err != nil {
		t.Fatal(err)
	}
	body := rec.Body.String()
	if strings.Contains(body, "alert(1)</script>") || strings.Contains(body, "alert(2)</script>") {
		t.Error("unescaped script in output")
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("escaped value missing")
	}
	if strings.Contains(body, ` href="javascript:`) || !strings.Contains(body, `href="#ZgotmplZ"`) {
		t.Errorf("javascript: URL not neutralised:\n%s", body)
	}
	if !strings.Contains(body, `data-extra="&#34; onmouseover=&#34;x"`) {
		t.Errorf("data-extra not escaped as expected")
	}
	// Outside attribute values nothing of the input survives as markup.
	if n := strings.Count(body, "<script"); n != 1 {
		t.Errorf("%d script tags, want 1", n)
	}
}

var (
	scriptTag   = regexp.MustCompile(`(?is)<script\b[^>]*>`)
	onAttr      = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr   = regexp.MustCompile(`(?i)\sstyle\s*=`)
	styleTag    = regexp.MustCompile(`(?i)<style`)
	jsURL       = regexp.MustCompile(`(?i)javascript:`)
	htmlSinks   = regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(\s*['"](on|style)`)
	setTimeoutS = regexp.MustCompile(`set(Timeout|Interval)\(\s*['"]`)
	workerSink  = regexp.MustCompile(`new\s+(Shared)?Worker\(\s*`)
)

// checkHTML fails when markup would need a CSP exception.
func checkHTML(t *testing.T, name, s string) {
	t.Helper()
	for _, tag := range scriptTag.FindAllString(s, -1) {
		if !strings.Contains(tag, " src=") {
			t.Errorf("%s: inline script %q", name, tag)
		}
	}
	for _, re := range []*regexp.Regexp{onAttr, styleAttr, styleTag, jsURL} {
		if m := re.FindString(s); m != "" {
			t.Errorf("%s: forbidden %q", name, m)
		}
	}
}

// nativeDialog matches a call of the browser's own dialogs.
var nativeDialog = regexp.MustCompile(`(^|[^\w.]|window\.)(confirm|alert|prompt)\(`)

func TestEmbeddedFilesCSPClean(t *testing.T) {
	n := 0
	err := fs.WalkDir(templateFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(templateFS, p)
		checkHTML(t, p, string(b))
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walk templates: %v (%d files)", err, n)
	}
	n = 0
	err = fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(staticFS, p)
		s := string(b)
		switch path.Ext(p) {
		case ".js":
			if m := htmlSinks.FindString(s); m != "" {
				t.Errorf("%s: forbidden %q", p, m)
			}
			if m := setTimeoutS.FindString(s); m != "" {
				t.Errorf("%s: string timer %q", p, m)
			}
			if jsURL.MatchString(s) || styleTag.MatchString(s) || styleAttr.MatchString(s) {
				t.Errorf("%s: javascript: URL or style", p)
			}
			// Script URLs pass the "ocmt" Trusted Types policy (trusted.js).
			for _, i := range workerSink.FindAllStringIndex(s, -1) {
				if !strings.HasPrefix(s[i[1]:], "scriptURL(") {
					t.Errorf("%s: %q without scriptURL()", p, s[i[0]:i[1]])
				}
			}
			if strings.Contains(s, "importScripts(") {
				t.Errorf("%s: importScripts (use a module worker)", p)
			}
			// Questions go through the styled dialog (dom.js confirmDialog).
			if m := nativeDialog.FindString(s); m != "" {
				t.Errorf("%s: browser dialog %q (use confirmDialog from dom.js)", p, m)
			}
		case ".svg", ".html":
			checkHTML(t, p, s)
		case ".css":
			if strings.Contains(s, "expression(") || jsURL.MatchString(s) {
				t.Errorf("%s: forbidden CSS", p)
			}
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walk static: %v (%d files)", err, n)
	}
	for _, name := range []string{"app.js", "api.js", "dom.js", "agent.js", "admin.js", "signin.js", "app.css", "logo.svg",
		"workspace.js", "vault.js", "onboarding.js", "settings.js", "chat.js", "gateway.js", "protocol.js", "markdown.js",
		"password.js", "meter.js", "kdf.js", "kdf-worker.js", "trusted.js", "vaultcrypto.js", "lock.svg", "unlock.svg"} {
		if _, ok := assets.byName[name]; !ok {
			t.Errorf("static/%s missing", name)
		}
	}
}

func TestJSSyntax(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH")
	}
	dir := t.TempDir()
	for name, a := range assets.byName {
		if path.Ext(name) != ".js" {
			continue
		}
		// Check both the source and the served (import-rewritten) form; .mjs
		// makes node parse them as ES modules.
		src, _ := fs.ReadFile(staticFS, "static/"+name)
		for i, b := range [][]byte{src, a.body} {
			f := filepath.Join(dir, strings.TrimSuffix(strings.ReplaceAll(name, "/", "_"), ".js")+[]string{".src.mjs", ".served.mjs"}[i])
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(node, "--check", f).CombinedOutput(); err != nil {
				t.Errorf("node --check %s: %v\n%s", name, err, out)
			}
		}
	}
}

func TestAssetsServeHashed(t *testing.T) {
	h := Assets()
	for _, tc := range []struct{ name, ctype string }{
		{"app.js", "text/javascript; charset=utf-8"},
		{"api.js", "text/javascript; charset=utf-8"},
		{"app.css", "text/css; charset=utf-8"},
		{"logo.svg", "image/svg+xml"},
	} {
		url := AssetURL(tc.name)
		if !regexp.MustCompile(`^/static/[a-z]+\.[0-9a-f]{8}\.[a-z]+$`).MatchString(url) {
			t.Errorf("AssetURL(%q) = %q", tc.name, url)
		}
		for _, p := range []string{url, strings.TrimPrefix(url, "/static")} { // mounted with or without StripPrefix
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
			if rec.Code != 200 {
				t.Fatalf("GET %s: %d", p, rec.Code)
			}
			if got := rec.Header().Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
				t.Errorf("GET %s: Cache-Control %q", p, got)
			}
			if got := rec.Header().Get("Content-Type"); got != tc.ctype {
				t.Errorf("GET %s: Content-Type %q, want %q", p, got, tc.ctype)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no nosniff", p)
			}
			if !strings.Contains(url, contentHash(rec.Body.Bytes())) {
				t.Errorf("GET %s: body hash does not match URL", p)
			}
		}
	}
	// Plain names work with short caching.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/static/app.js", nil))
	if rec.Code != 200 || rec.Header().Get("Cache-Control") != "public, max-age=300" {
		t.Errorf("plain name: %d %q", rec.Code, rec.Header().Get("Cache-Control"))
	}
	// Conditional GET.
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("GET", AssetURL("app.js"), nil)
	req.Header.Set("If-None-Match", assets.byName["app.js"].etag)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", rec.Code)
	}
	for _, p := range []string{"/static/nope.js", "/static/app.00000000.js", "/static/", "/static/../ui.go", "/static/static/app.js", "/static/app.JS"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 404 {
			t.Errorf("GET %s: %d, want 404", p, rec.Code)
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", AssetURL("app.js"), nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
	if got := AssetURL("missing.js"); got != "/static/missing.js" {
		t.Errorf("AssetURL(missing) = %q", got)
	}
}

func TestAssetURLStable(t *testing.T) {
	if u1, u2 := AssetURL("app.js"), AssetURL("app.js"); u1 != u2 || u1 == "/static/app.js" {
		t.Errorf("AssetURL(app.js) = %q then %q, want one content-hashed URL", u1, u2)
	}
	a, b := contentHash([]byte("console.log(1)")), contentHash([]byte("console.log(2)"))
	if a == b || len(a) != hashLen || a != contentHash([]byte("console.log(1)")) {
		t.Errorf("contentHash: %q %q", a, b)
	}
	if got := hashedName("app.js", "3f9a1c2b"); got != "app.3f9a1c2b.js" {
		t.Errorf("hashedName = %q", got)
	}
	if got := hashedName("wasm/crypto.min.wasm", "00ff00ff"); got != "wasm/crypto.min.00ff00ff.wasm" {
		t.Errorf("hashedName = %q", got)
	}
	if got := hashedName("LICENSE", "00ff00ff"); got != "LICENSE.00ff00ff" {
		t.Errorf("hashedName = %q", got)
	}
}

func TestImportRewriting(t *testing.T) {
	fsys := fstest.MapFS{
		"s/app.js":      {Data: []byte("import { a } from './lib.js';\nimport * as b from \"./sub/b.js\";\nconst c = import('./lib.js');\n")},
		"s/lib.js":      {Data: []byte("export const a = 1;\n")},
		"s/sub/b.js":    {Data: []byte("import { a } from '../lib.js';\nexport const b = a;\n")},
		"s/x.css":       {Data: []byte("body { background: url(./img/bg.png); }\n")},
		"s/img/bg.png":  {Data: []byte("png")},
		"s/crypto.wasm": {Data: []byte("\x00asm")},
	}
	set, err := buildAssets(fsys, "s")
	if err != nil {
		t.Fatal(err)
	}
	app, lib, b := set.byName["app.js"], set.byName["lib.js"], set.byName["sub/b.js"]
	for _, want := range []string{"from './" + path.Base(lib.hashed) + "'", `from "./sub/` + path.Base(b.hashed) + `"`, "import('./" + path.Base(lib.hashed) + "')"} {
		if !strings.Contains(string(app.body), want) {
			t.Errorf("app.js lacks %q:\n%s", want, app.body)
		}
	}
	if !strings.Contains(string(b.body), "'../"+path.Base(lib.hashed)+"'") {
		t.Errorf("sub/b.js not rewritten:\n%s", b.body)
	}
	if !strings.Contains(string(set.byName["x.css"].body), "url(./img/"+path.Base(set.byName["img/bg.png"].hashed)+")") {
		t.Errorf("css not rewritten: %s", set.byName["x.css"].body)
	}
	if got := set.byName["crypto.wasm"].ctype; got != "application/wasm" {
		t.Errorf("wasm type %q", got)
	}

	// A change in a dependency changes the importer's hash too.
	fsys["s/lib.js"] = &fstest.MapFile{Data: []byte("export const a = 2;\n")}
	set2, err := buildAssets(fsys, "s")
	if err != nil {
		t.Fatal(err)
	}
	if set2.byName["lib.js"].hashed == lib.hashed || set2.byName["app.js"].hashed == app.hashed || set2.byName["sub/b.js"].hashed == b.hashed {
		t.Error("hash did not follow dependency change")
	}
	if set2.byName["x.css"].hashed != set.byName["x.css"].hashed {
		t.Error("unrelated file changed hash")
	}

	for name, files := range map[string]fstest.MapFS{
		"missing": {"s/a.js": {Data: []byte("import './nope.js';")}},
		"cycle":   {"s/a.js": {Data: []byte("import './b.js';")}, "s/b.js": {Data: []byte("import './a.js';")}},
	} {
		if _, err := buildAssets(files, "s"); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
}

func TestEmbeddedImportsHashed(t *testing.T) {
	// Every relative import in served JS points at a hashed name that Assets serves.
	spec := regexp.MustCompile(`from\s*['"]\./([^'"]+)['"]`)
	for name, a := range assets.byName {
		if path.Ext(name) != ".js" {
			continue
		}
		for _, m := range spec.FindAllStringSubmatch(string(a.body), -1) {
			if _, ok := assets.byHashed[m[1]]; !ok {
				t.Errorf("%s imports %q, which is not a hashed asset", name, m[1])
			}
		}
	}
}

func TestWorkerAndAppCSP(t *testing.T) {
	h := Assets()
	for name, want := range map[string]string{"kdf-worker.js": WorkerCSP, "app.js": WorkerCSP, "app.css": "", "logo.svg": ""} {
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Security-Policy", "") // as if middleware set nothing
		h.ServeHTTP(rec, httptest.NewRequest("GET", AssetURL(name), nil))
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d", name, rec.Code)
		}
		if got := rec.Header().Get("Content-Security-Policy"); got != want {
			t.Errorf("%s: CSP %q, want %q", name, got, want)
		}
	}
	if !strings.Contains(WorkerCSP, "'wasm-unsafe-eval'") || strings.Contains(WorkerCSP, " 'unsafe-eval'") {
		t.Errorf("WorkerCSP = %q", WorkerCSP)
	}
	for page, wasm := range map[string]bool{"app": true, "signin": false, "admin": false} {
		rec := httptest.NewRecorder()
		if err := Render(rec, 200, page, Page{User: admin}); err != nil {
			t.Fatal(err)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if got := strings.Contains(csp, "script-src 'self' 'wasm-unsafe-eval';"); got != wasm {
			t.Errorf("%s: CSP %q (wasm-unsafe-eval: %v, want %v)", page, csp, got, wasm)
		}
		if !strings.Contains(csp, "require-trusted-types-for 'script'") || strings.Contains(csp, "'unsafe-inline'") {
			t.Errorf("%s: CSP %q", page, csp)
		}
	}
}
