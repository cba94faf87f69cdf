package management_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/xtest"
)

// TestOriginRule: WebSocket upgrades and state-changing requests are let
// through only from the public URL's origin — same scheme, host and port —
// and every refusal is logged as one metadata line (never a cookie or
// token). Proxy headers from --trusted-proxies do not change the rule.
func TestOriginRule(t *testing.T) {
	for _, mode := range []struct {
		name    string
		trusted bool
	}{{"direct", false}, {"behind trusted proxy", true}} {
		t.Run(mode.name, func(t *testing.T) {
			var opts []xtest.Option
			if mode.trusted {
				opts = append(opts, xtest.WithConfig(func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} }))
			}
			env := xtest.NewEnv(t, opts...)
			c := provisioned(t, env)
			u, _ := url.Parse(env.URL)
			port := u.Port()
			var proxyHdr []string
			if mode.trusted { // a proxy that says the browser came over https to this host
				proxyHdr = []string{"X-Forwarded-Proto: https", "X-Forwarded-Host: 127.0.0.1:" + port, "X-Forwarded-For: 198.51.100.7"}
			}
			cases := []struct {
				name, origin string
				ok           bool
			}{
				{"same origin", env.URL, true},
				{"same origin, scheme in capitals", "HTTP://127.0.0.1:" + port, true},
				{"wrong scheme", "https://127.0.0.1:" + port, false},
				{"wrong port", "http://127.0.0.1:1", false},
				{"wrong host", "http://localhost:" + port, false},
				{"foreign", "https://evil.example", false},
				{"with a path", env.URL + "/x", false},
			}
			ws := []string{"Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"}
			for _, tc := range cases {
				st, body := rawGet(t, env, c, "/api/v1/me/agent/ws/echo", append(append([]string{"Origin: " + tc.origin}, ws...), proxyHdr...)...)
				if tc.ok && st != http.StatusSwitchingProtocols || !tc.ok && (st != http.StatusForbidden || !strings.Contains(body, `"origin_refused"`)) {
					t.Errorf("WebSocket, %s (%s): %d %s", tc.name, tc.origin, st, body)
				}
				// The same rule for a state-changing request (the CSRF check).
				req, _ := http.NewRequest("PUT", env.URL+"/api/v1/me/settings", strings.NewReader(`{"shareMail":true}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-CSRF-Token", c.Cookie("ocmt_csrf"))
				req.Header.Set("Origin", tc.origin)
				for _, h := range proxyHdr {
					k, v, _ := strings.Cut(h, ": ")
					req.Header.Set(k, v)
				}
				req.AddCookie(&http.Cookie{Name: "ocmt_session", Value: c.Cookie("ocmt_session")})
				req.AddCookie(&http.Cookie{Name: "ocmt_csrf", Value: c.Cookie("ocmt_csrf")})
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if want := map[bool]int{true: http.StatusOK, false: http.StatusForbidden}[tc.ok]; resp.StatusCode != want {
					t.Errorf("PUT settings, %s (%s): %d, want %d", tc.name, tc.origin, resp.StatusCode, want)
				}
			}
			log := env.Log.String()
			for _, tc := range cases {
				line := ""
				for _, l := range strings.Split(log, "\n") {
					if strings.Contains(l, "origin refused") && strings.Contains(l, `origin=`+tc.origin+" ") || strings.Contains(l, `origin="`+tc.origin+`"`) {
						line += l + "\n"
					}
				}
				if tc.ok && line != "" {
					t.Errorf("%s: logged as refused:\n%s", tc.name, line)
				}
				if !tc.ok && (!strings.Contains(line, "kind=websocket") || !strings.Contains(line, "kind=csrf")) {
					t.Errorf("%s (%s): no refusal logged for both kinds:\n%s", tc.name, tc.origin, line)
				}
			}
			for _, secret := range []string{c.Cookie("ocmt_session"), c.Cookie("ocmt_csrf")} {
				if strings.Contains(log, secret) {
					t.Errorf("the log holds a cookie value")
				}
			}
		})
	}
}
