package management_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/xtest"
)

func TestSignInFlow(t *testing.T) {
	env := xtest.NewEnv(t)
	ctx := context.Background()
	admin, au := env.Admin("Admin@Example.org")
	if !au.Admin || au.Email != "admin@example.org" {
		t.Fatalf("bootstrap user = %+v, want admin with lower-cased email", au)
	}
	me, err := admin.Me(ctx)
	if err != nil || me.ID != au.ID {
		t.Fatalf("me = %+v, %v", me, err)
	}

	// Unknown and known addresses get the same answer; only the known one gets mail.
	anon := env.Client()
	for _, email := range []string{"nobody@example.org", "admin@example.org"} {
		r, err := anon.Do(ctx, "POST", "/api/v1/auth/magic-link", api.MagicLinkRequest{Email: email})
		if err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("magic-link %s: %v %v", email, r, err)
		}
	}
	if strings.Contains(env.Out.String(), "nobody@example.org") {
		t.Fatal("a link was sent to an address without an account")
	}
	tok := env.LinkFor("admin@example.org")

	// GET shows a Continue page and consumes nothing.
	for i := 0; i < 2; i++ {
		r, err := anon.Do(ctx, "GET", "/auth/verify?token="+tok, nil)
		if err != nil || r.Status != http.StatusOK || !strings.Contains(string(r.Body), "Continue") {
			t.Fatalf("GET verify #%d: status %d err %v", i, r.Status, err)
		}
		if anon.Cookie("ocmt_session") != "" {
			t.Fatal("GET /auth/verify set a session")
		}
	}
	// A form POST consumes it and redirects to /.
	r, err := anon.Do(ctx, "POST", "/auth/verify", url.Values{"token": {tok}, "_csrf": {anon.Cookie("ocmt_csrf")}})
	if err != nil || r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/" {
		t.Fatalf("POST verify: %+v %v", r, err)
	}
	if anon.Cookie("ocmt_session") == "" {
		t.Fatal("no session cookie after verify")
	}
	var sc *http.Cookie
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == "ocmt_session" {
			sc = c
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie flags wrong: %+v", sc)
	}
	// A real browser posts the Continue form with "Origin: null" (the page
	// has Referrer-Policy: no-referrer): the token decides.
	if err := anon.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if err := anon.RequestLink(ctx, "admin@example.org"); err != nil {
		t.Fatal(err)
	}
	tok2 := env.LinkFor("admin@example.org")
	req, _ := http.NewRequest("POST", env.URL+"/auth/verify", strings.NewReader(url.Values{"token": {tok2}, "_csrf": {anon.Cookie("ocmt_csrf")}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "null")
	req.AddCookie(&http.Cookie{Name: "ocmt_csrf", Value: anon.Cookie("ocmt_csrf")})
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("form post with Origin: null: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	// Without the token, a form post gets a page, not JSON.
	req, _ = http.NewRequest("POST", env.URL+"/auth/verify", strings.NewReader(url.Values{"token": {tok2}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "ocmt_csrf", Value: anon.Cookie("ocmt_csrf")})
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("form post without token: %v %v", resp, err)
	}
	resp.Body.Close()

	// Reused link: clear page, no second session.
	other := env.Client()
	r, _ = other.Do(ctx, "POST", "/auth/verify", url.Values{"token": {tok}, "_csrf": {mustCSRF(t, other)}})
	if r.Status != http.StatusGone || !strings.Contains(string(r.Body), "already used") {
		t.Fatalf("reused link: status %d body %q", r.Status, r.Body)
	}
	// Logout ends the session server-side.
	if err := anon.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Me(ctx); err == nil {
		t.Fatal("me works after logout")
	}
}

func mustCSRF(t *testing.T, c *api.Client) string {
	t.Helper()
	if err := c.EnsureCSRF(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c.Cookie("ocmt_csrf")
}

func TestBadLinks(t *testing.T) {
	now := time.Now()
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.MagicLinkTTL = 300 * time.Millisecond }))
	_ = now
	ctx := context.Background()
	admin, _ := env.Admin("admin@example.org")
	c := env.Client()
	if err := c.RequestLink(ctx, "admin@example.org"); err != nil {
		t.Fatal(err)
	}
	expired := env.LinkFor("admin@example.org")
	time.Sleep(400 * time.Millisecond)
	cases := []struct {
		name, token string
		status      int
		want        string
	}{
		{"malformed", "abc%3Cscript%3E", http.StatusBadRequest, "not valid"},
		{"unknown", strings.Repeat("A", 43), http.StatusNotFound, "not valid"},
		{"expired", expired, http.StatusGone, "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "POST"} {
				var r *api.Response
				var err error
				if method == "GET" {
					r, err = c.Do(ctx, "GET", "/auth/verify?token="+tc.token, nil)
				} else {
					tok, _ := url.QueryUnescape(tc.token)
					r, err = c.Do(ctx, "POST", "/auth/verify", url.Values{"token": {tok}, "_csrf": {mustCSRF(t, c)}})
				}
				if err != nil {
					t.Fatal(err)
				}
				if r.Status != tc.status || !strings.Contains(string(r.Body), tc.want) {
					t.Errorf("%s: status %d, body %q; want %d containing %q", method, r.Status, r.Body, tc.status, tc.want)
				}
				if strings.Contains(string(r.Body), "<script>") {
					t.Errorf("%s: input echoed unescaped", method)
				}
			}
		})
	}
	_ = admin
}

func TestCSRF(t *testing.T) {
	env := xtest.NewEnv(t)
	ctx := context.Background()
	admin, _ := env.Admin("admin@example.org")
	base := env.URL
	send := func(method, path, csrf, origin string, withCookie bool) int {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(`{"email":"x@example.org"}`))
		req.Header.Set("Content-Type", "application/json")
		if csrf != "" {
			req.Header.Set("X-CSRF-Token", csrf)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		u, _ := url.Parse(base)
		for _, ck := range admin.HC.Jar.Cookies(u) {
			if ck.Name == "ocmt_session" || withCookie {
				req.AddCookie(ck)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tok := admin.Cookie("ocmt_csrf")
	unbound := mustCSRF(t, env.Client()) // a valid token of another (signed-out) browser
	for _, tc := range []struct {
		name           string
		method, path   string
		csrf, origin   string
		withCSRFCookie bool
		want           int
	}{
		{"no token", "POST", "/api/v1/me/agent", "", "", true, http.StatusForbidden},
		{"no cookie", "POST", "/api/v1/me/agent", tok, "", false, http.StatusForbidden},
		{"wrong token", "POST", "/api/v1/me/agent", tok[:len(tok)-2] + "AA", "", true, http.StatusForbidden},
		{"foreign origin", "POST", "/api/v1/me/agent", tok, "https://evil.example", true, http.StatusForbidden},
		{"logout without token", "POST", "/api/v1/auth/logout", "", "", true, http.StatusForbidden},
		{"invite without token", "POST", "/api/v1/admin/users", "", "", true, http.StatusForbidden},
		{"grants seen without token", "POST", "/api/v1/me/grants/seen", "", "", true, http.StatusForbidden},
		{"settings without token", "PUT", "/api/v1/me/settings", "", "", true, http.StatusForbidden},
		{"settings from elsewhere", "PUT", "/api/v1/me/settings", tok, "https://evil.example", true, http.StatusForbidden},
		{"good", "POST", "/api/v1/admin/users", tok, base, true, http.StatusAccepted},
	} {
		if got := send(tc.method, tc.path, tc.csrf, tc.origin, tc.withCSRFCookie); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	// A token minted for no session does not work for a signed-in session.
	req, _ := http.NewRequest("POST", base+"/api/v1/auth/logout", nil)
	req.Header.Set("X-CSRF-Token", unbound)
	req.AddCookie(&http.Cookie{Name: "ocmt_csrf", Value: unbound})
	u, _ := url.Parse(base)
	for _, ck := range admin.HC.Jar.Cookies(u) {
		if ck.Name == "ocmt_session" {
			req.AddCookie(ck)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("session-unbound CSRF token: status %d, want 403", resp.StatusCode)
	}
	if _, err := admin.Me(ctx); err != nil {
		t.Fatalf("admin was signed out by a forged request: %v", err)
	}
}

func TestAPIScenarios(t *testing.T) {
	env := xtest.NewEnv(t)
	ctx := context.Background()
	admin, _ := env.Admin("admin@example.org")
	bob, _ := env.Invite(admin, "bob@example.org")
	anon := env.Client()
	for _, tc := range []struct {
		name         string
		c            *api.Client
		method, path string
		body         any
		status       int
		want, not    string
	}{
		{"health", anon, "GET", "/healthz", nil, 200, `"status":"ok"`, ""},
		{"me signed out", anon, "GET", "/api/v1/me", nil, 401, "unauthorized", ""},
		{"agent signed out", anon, "GET", "/api/v1/me/agent", nil, 401, "unauthorized", ""},
		{"proxy signed out", anon, "GET", "/api/v1/me/agent/healthz", nil, 401, "unauthorized", ""},
		{"admin users as member", bob, "GET", "/api/v1/admin/users", nil, 404, "not_found", "bob@"},
		{"admin action as member", bob, "POST", "/api/v1/admin/containers/x/pause", nil, 404, "not_found", ""},
		{"admin users", admin, "GET", "/api/v1/admin/users", nil, 200, "bob@example.org", ""},
		{"bad email", anon, "POST", "/api/v1/auth/magic-link", map[string]string{"email": "not an email"}, 400, "invalid_email", "not an email"},
		{"bad json", anon, "POST", "/api/v1/auth/magic-link", []int{1}, 400, "invalid_json", ""},
		{"unknown field", anon, "POST", "/api/v1/auth/magic-link", map[string]any{"email": "a@example.org", "emial": "x"}, 400, "unknown_field", "emial"},
		{"bad action", admin, "POST", "/api/v1/admin/containers/usr_xaaaaaaaaaaaaaaaaaaaaaaaaa/explode", nil, 400, "invalid_action", ""},
		{"unknown user action", admin, "POST", "/api/v1/admin/containers/usr_nobodyaaaaaaaaaaaaaaaaaaaa/pause", nil, 404, "not_found", ""},
		{"admin action short user id", admin, "POST", "/api/v1/admin/containers/usr_x/pause", nil, 400, "invalid_user_id", ""},
		{"admin action bad id, bad action", admin, "POST", "/api/v1/admin/containers/usr_x/explode", nil, 400, "invalid_user_id", ""},
		{"admin action traversal id", admin, "POST", "/api/v1/admin/containers/..%2f..%2fetc/pause", nil, 400, "invalid_user_id", ""},
		{"admin action network name", admin, "POST", "/api/v1/admin/containers/ocmt-agents/wake", nil, 400, "invalid_user_id", ""},
		{"admin action too long id", admin, "POST", "/api/v1/admin/containers/usr_" + strings.Repeat("a", 100) + "/pause", nil, 400, "invalid_user_id", ""},
		{"admin action upper-case id", admin, "POST", "/api/v1/admin/containers/usr_" + strings.Repeat("A", 26) + "/pause", nil, 400, "invalid_user_id", ""},
		{"audit mine", bob, "GET", "/api/v1/audit", nil, 200, "auth.signin", "admin.invite"},
		{"audit all", admin, "GET", "/api/v1/audit", nil, 200, "admin.invite", ""},
		{"audit bad limit", admin, "GET", "/api/v1/audit?limit=-1", nil, 400, "invalid_limit", ""},
		{"no route", anon, "GET", "/api/v1/nope", nil, 404, "not_found", ""},
		{"settings signed out", anon, "GET", "/api/v1/me/settings", nil, 401, "unauthorized", ""},
		{"settings default", bob, "GET", "/api/v1/me/settings", nil, 200, `"shareMail":true`, ""},
		{"settings without shareMail", bob, "PUT", "/api/v1/me/settings", map[string]any{}, 400, "invalid_settings", ""},
		{"settings not a bool", bob, "PUT", "/api/v1/me/settings", map[string]any{"shareMail": "yes"}, 400, "invalid_json", "yes"},
		{"settings off", bob, "PUT", "/api/v1/me/settings", map[string]any{"shareMail": false}, 200, `"shareMail":false`, ""},
		{"settings stay off", bob, "GET", "/api/v1/me/settings", nil, 200, `"shareMail":false`, ""},
		{"settings of others untouched", admin, "GET", "/api/v1/me/settings", nil, 200, `"shareMail":true`, ""},
		{"grants seen signed out", anon, "POST", "/api/v1/me/grants/seen", nil, 401, "unauthorized", ""},
		{"grants seen, none", bob, "POST", "/api/v1/me/grants/seen", nil, 200, `"seen":0`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.c.Do(ctx, tc.method, tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.status || !strings.Contains(string(r.Body), tc.want) || (tc.not != "" && strings.Contains(string(r.Body), tc.not)) {
				t.Errorf("status %d body %s; want %d with %q without %q", r.Status, r.Body, tc.status, tc.want, tc.not)
			}
			if r.Header.Get("Content-Security-Policy") == "" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("security headers missing: %v", r.Header)
			}
		})
	}
}

func TestSignInRateLimit(t *testing.T) {
	env := xtest.NewEnv(t)
	ctx := context.Background()
	env.Admin("admin@example.org")
	c := env.Client()
	limited := false
	for i := 0; i < 10; i++ {
		r, err := c.Do(ctx, "POST", "/api/v1/auth/magic-link", api.MagicLinkRequest{Email: "admin@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == http.StatusTooManyRequests {
			limited = r.ErrorCode() == "rate_limited"
			break
		}
	}
	if !limited {
		t.Fatal("10 sign-in requests for one address in a row were not rate limited")
	}
}

// TestForwardedForIgnored: without trusted proxies, X-Forwarded-For cannot
// dodge the sign-in rate limit or forge the audited address.
func TestForwardedForIgnored(t *testing.T) {
	env := xtest.NewEnv(t)
	ctx := context.Background()
	admin, _ := env.Admin("admin@example.org")
	c := env.Client()
	mustCSRF(t, c)
	limited := false
	for i := 0; i < 40 && !limited; i++ {
		req, _ := http.NewRequest("POST", env.URL+"/api/v1/auth/magic-link", strings.NewReader(`{"email":"u`+string(rune('a'+i%26))+`@example.org"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRF-Token", c.Cookie("ocmt_csrf"))
		req.Header.Set("X-Forwarded-For", "198.51.100."+string(rune('0'+i%10)))
		req.AddCookie(&http.Cookie{Name: "ocmt_csrf", Value: c.Cookie("ocmt_csrf")})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		limited = resp.StatusCode == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("rotating X-Forwarded-For escaped the per-IP sign-in limit")
	}
	var audit struct {
		Events []api.AuditEvent `json:"events"`
	}
	admin.JSON(ctx, "GET", "/api/v1/audit", nil, &audit)
	for _, e := range audit.Events {
		if strings.HasPrefix(e.Detail["ip"], "198.51.100.") {
			t.Fatalf("forged address audited: %+v", e)
		}
	}
}

// TestSignOutLocksVault: signing out locks the user's vault (issue 11:
// it used to stay unlocked for whoever reached the container next).
func TestSignOutLocksVault(t *testing.T) {
	env := xtest.NewEnv(t)
	c := provisioned(t, env)
	ctx := context.Background()
	var p struct {
		Salt string           `json:"salt"`
		KDF  crypto.KDFParams `json:"kdf"`
	}
	if err := c.JSON(ctx, "GET", "/api/v1/me/agent/vault/params", nil, &p); err != nil {
		t.Fatal(err)
	}
	salt, _ := base64.StdEncoding.DecodeString(p.Salt)
	k, err := crypto.DeriveKEK([]byte("a long enough password"), salt, p.KDF)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.JSON(ctx, "POST", "/api/v1/me/agent/vault/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(k[:])}, nil); err != nil {
		t.Fatal(err)
	}
	me, err := c.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	endpoint, secret := env.ContainerAccess(me.ID)
	locked := func() bool {
		req, _ := http.NewRequest("GET", endpoint+"/vault/status", nil)
		req.Header.Set(api.ContainerSecretHeader, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Locked bool `json:"locked"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		return st.Locked
	}
	if locked() {
		t.Fatal("a new vault is locked")
	}
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	xtest.Eventually(t, 30*time.Second, func() error {
		if !locked() {
			return errors.New("the vault is still unlocked after sign-out")
		}
		return nil
	})
}
