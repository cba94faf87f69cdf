package management_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/xtest"
)

// provisioned signs in an admin on env and starts their agent.
func provisioned(t *testing.T, env *xtest.Env) *api.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, _ := env.Admin("admin@example.org")
	if err := c.ProvisionAgent(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitAgent(ctx, api.StateRunning); err != nil {
		t.Fatal(err)
	}
	return c
}

// deployModes are the two ways to run management and agent: one process
// (xtest.NewEnv) and apart, over the service API (xtest.NewSplitEnv).
var deployModes = []struct {
	name string
	new  func(testing.TB, ...xtest.Option) *xtest.Env
}{{"all", xtest.NewEnv}, {"split", xtest.NewSplitEnv}}

// rawGet sends a GET with exactly the given extra header lines (and the
// session cookie of c) on a fresh connection and returns the response
// status and body (empty for a 101).
func rawGet(t *testing.T, env *xtest.Env, c *api.Client, path string, hdr ...string) (int, string) {
	t.Helper()
	resp, body := rawGetResponse(t, env, c, path, hdr...)
	return resp.StatusCode, body
}

func rawGetResponse(t *testing.T, env *xtest.Env, c *api.Client, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	addr := strings.TrimPrefix(env.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nCookie: ocmt_session=" + c.Cookie("ocmt_session") + "\r\n"
	for _, h := range hdr {
		req += h + "\r\n"
	}
	io.WriteString(conn, req+"\r\n")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, ""
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestAgentProxyUpgrades: a request is a WebSocket upgrade when Connection
// lists "upgrade" and Upgrade lists "websocket", in any case and among other
// tokens; every such request must come from our own origin and is bridged
// as a WebSocket. Other upgrades are not passed on: the answer is plain HTTP.
func TestAgentProxyUpgrades(t *testing.T) {
	for _, mode := range deployModes {
		t.Run(mode.name, func(t *testing.T) {
			env := mode.new(t)
			c := provisioned(t, env)
			ws := []string{"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"}
			for _, tc := range []struct {
				name, origin, connection, upgrade string
				want                              int
				wantBody                          string
			}{
				{"foreign origin, extra upgrade token", "https://evil.example", "Upgrade", "websocket, foo", 403, `"origin_refused"`},
				{"foreign origin, token list and casing", "https://evil.example", "keep-alive, UPGRADE", "foo, WebSocket", 403, `"origin_refused"`},
				{"no origin, extra upgrade token", "", "Upgrade", "websocket, foo", 403, `"origin_refused"`},
				{"same origin, mixed case", env.URL, "Upgrade", "WebSocket", 101, ""},
				{"same origin, extra upgrade token", env.URL, "keep-alive, Upgrade", "foo, websocket", 101, ""},
			} {
				h := append([]string{"Connection: " + tc.connection, "Upgrade: " + tc.upgrade}, ws...)
				if tc.origin != "" {
					h = append(h, "Origin: "+tc.origin)
				}
				st, body := rawGet(t, env, c, "/api/v1/me/agent/ws/echo", h...)
				if st != tc.want || !strings.Contains(body, tc.wantBody) {
					t.Errorf("%s: %d %s, want %d %s", tc.name, st, body, tc.want, tc.wantBody)
				}
			}
			// Another protocol: answered as plain HTTP by the container.
			st, body := rawGet(t, env, c, "/api/v1/me/agent/healthz", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA")
			if st != http.StatusOK || !strings.Contains(body, `"vault"`) {
				t.Errorf("h2c upgrade: %d %s, want the container's plain 200", st, body)
			}
			if strings.Contains(env.Log.String(), "proxy upstream failed") {
				t.Errorf("the proxy logged an upstream failure:\n%s", env.Log.String())
			}
		})
	}
}

// TestAgentProxyHeadersOnce: a proxied answer carries each header once, with
// the management role's values (security headers, Cache-Control, request
// id); the id of the server that produced the answer comes as
// X-Upstream-Request-Id. This holds for plain answers, for answers the
// management role buffers, and for WebSocket upgrades, in one process and
// with the agent role on its own.
func TestAgentProxyHeadersOnce(t *testing.T) {
	for _, mode := range deployModes {
		t.Run(mode.name, func(t *testing.T) {
			env := mode.new(t)
			c := provisioned(t, env)
			ctx := context.Background()
			check := func(name string, status int, h http.Header, upstream bool) {
				t.Helper()
				for k, v := range h {
					if len(v) != 1 && k != "Set-Cookie" {
						t.Errorf("%s (%d): %s sent %d times: %q", name, status, k, len(v), v)
					}
				}
				for k, want := range map[string]string{"Content-Security-Policy": web.CSP, "X-Frame-Options": "DENY",
					"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cross-Origin-Opener-Policy": "same-origin"} {
					if got := h.Get(k); got != want {
						t.Errorf("%s (%d): %s = %q, want the management role's %q", name, status, k, got, want)
					}
				}
				if status != http.StatusSwitchingProtocols && h.Get("Cache-Control") != "no-store" {
					t.Errorf("%s (%d): Cache-Control = %q", name, status, h.Values("Cache-Control"))
				}
				rid, up := h.Get("X-Request-Id"), h.Get(api.UpstreamRequestIDHeader)
				if rid == "" || upstream && (up == "" || up == rid) {
					t.Errorf("%s (%d): X-Request-Id %q, %s %q", name, status, rid, api.UpstreamRequestIDHeader, up)
				}
			}
			for _, tc := range []struct{ method, path, body string }{
				{"GET", "/api/v1/me/agent/vault/status", ""},
				{"GET", "/api/v1/me/agent/healthz", ""},
				{"POST", "/api/v1/me/agent/mcp", `{"jsonrpc":"2.0","id":1,"method":"ping"}`},
				{"GET", "/api/v1/me/agent/vault/capabilities", ""}, // buffered by the management role
				{"GET", "/api/v1/me/agent/no-such-route", ""},
			} {
				var body any
				if tc.body != "" {
					body = json.RawMessage(tc.body)
				}
				r, err := c.Do(ctx, tc.method, tc.path, body)
				if err != nil {
					t.Fatal(err)
				}
				check(tc.method+" "+tc.path, r.Status, r.Header, true)
			}
			resp, _ := rawGetResponse(t, env, c, "/api/v1/me/agent/ws/echo", "Connection: Upgrade", "Upgrade: websocket",
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", "Origin: "+env.URL)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %s", resp.Status)
			}
			check("upgrade", resp.StatusCode, resp.Header, mode.name == "split")
		})
	}
}

// TestAgentProxyLogsStatus: a proxied answer is logged (and counted) with
// the status and size the container sent, not as 499 (client gone), so that
// failed unlocks and resets show in the request log.
func TestAgentProxyLogsStatus(t *testing.T) {
	env := xtest.NewEnv(t)
	c := provisioned(t, env)
	ctx := context.Background()
	for _, p := range []string{"/api/v1/me/agent/vault/status", "/api/v1/me/agent/no-such-route", "/api/v1/me/agent/vault/capabilities"} {
		if _, err := c.Do(ctx, "GET", p, nil); err != nil {
			t.Fatal(err)
		}
	}
	var lines []string
	for _, l := range strings.Split(env.Log.String(), "\n") {
		if strings.Contains(l, "msg=\"http request\"") && strings.Contains(l, "route=/api/v1/me/agent/*") {
			lines = append(lines, l)
		}
	}
	seen := map[string]bool{}
	for _, l := range lines {
		for _, st := range []string{"status=200", "status=404", "status=423", "status=499"} {
			if strings.Contains(l, st+" ") {
				seen[st] = true
			}
		}
		if strings.Contains(l, "bytes=0 ") && !strings.Contains(l, "status=499") {
			t.Errorf("proxied answer logged without its size: %s", l)
		}
	}
	if seen["status=499"] || !seen["status=200"] || !seen["status=404"] {
		t.Fatalf("proxied requests logged with statuses %v:\n%s", seen, strings.Join(lines, "\n"))
	}
}
