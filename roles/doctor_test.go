package roles_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles"
	"github.com/ocmt/ocmt/version"
	"github.com/ocmt/ocmt/xtest"
)

// doctorLines runs doctor for env's data directory with public URL and
// trusted proxies, and returns its reverse proxy checks by name.
func doctorLines(t *testing.T, env *xtest.Env, public string, trusted ...string) map[string]roles.Check {
	t.Helper()
	cfg := env.Cfg
	cfg.PublicURL, cfg.TrustedProxies, cfg.Runtime = public, trusted, config.RuntimeProcess
	out := map[string]roles.Check{}
	for _, c := range roles.Doctor(context.Background(), cfg) {
		out[c.Name] = c
	}
	return out
}

// get sends a GET for path straight to env's listener with the headers
// given as name, value pairs.
func get(t *testing.T, env *xtest.Env, path string, hdr ...string) {
	t.Helper()
	req, _ := http.NewRequest("GET", env.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestDoctorProxy: with an https public URL, the server records requests
// that bypass the trusted proxies or lack X-Forwarded-Proto, and doctor
// warns about each with its fix; requests that come right, and the report
// of an earlier run, leave doctor quiet.
func TestDoctorProxy(t *testing.T) {
	const public = "https://ocmt.example.org"
	t.Run("no trusted proxies", func(t *testing.T) {
		env := xtest.NewEnv(t, xtest.WithPublicURL(public))
		get(t, env, "/signin", "X-Forwarded-Proto", "https", "X-Forwarded-For", "192.0.2.1")
		get(t, env, "/healthz") // a monitor: not counted
		env.Stop()
		got := doctorLines(t, env, public)
		if c := got["reverse proxy"]; !c.Warn || !strings.Contains(c.Detail, "--trusted-proxies is empty") {
			t.Errorf("static check: %+v", c)
		}
		c := got["proxied requests"]
		if !c.Warn || !strings.Contains(c.Detail, "1 request(s) came from a peer outside --trusted-proxies (loopback address") ||
			!strings.Contains(c.Detail, "set --trusted-proxies to the proxy's address") {
			t.Errorf("observed check: %+v", c)
		}
	})
	t.Run("no X-Forwarded-Proto", func(t *testing.T) {
		env := xtest.NewEnv(t, xtest.WithPublicURL(public), xtest.WithConfig(func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32"} }))
		get(t, env, "/signin", "X-Forwarded-For", "192.0.2.1")
		env.Stop()
		got := doctorLines(t, env, public, "127.0.0.1/32")
		if c := got["reverse proxy"]; !c.OK {
			t.Errorf("static check: %+v", c)
		}
		c := got["proxied requests"]
		if !c.Warn || !strings.Contains(c.Detail, "without X-Forwarded-Proto") || !strings.Contains(c.Detail, "X-Forwarded-Proto $scheme") ||
			strings.Contains(c.Detail, "outside --trusted-proxies") {
			t.Errorf("observed check: %+v", c)
		}
		// The next run starts with a clean report: only what it sees counts.
		env.Restart()
		get(t, env, "/signin", "X-Forwarded-Proto", "https", "X-Forwarded-For", "192.0.2.1")
		env.Stop()
		if c := doctorLines(t, env, public, "127.0.0.1/32")["proxied requests"]; !c.OK || c.Warn {
			t.Errorf("after a restart and a right request: %+v", c)
		}
	})
	t.Run("right", func(t *testing.T) {
		env := xtest.NewEnv(t, xtest.WithPublicURL(public), xtest.WithConfig(func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32"} }))
		get(t, env, "/signin", "X-Forwarded-Proto", "https", "X-Forwarded-For", "192.0.2.1")
		get(t, env, "/auth/verify?token=x", "X-Forwarded-Proto", "https", "X-Forwarded-For", "192.0.2.1")
		env.Stop()
		got := doctorLines(t, env, public, "127.0.0.1/32")
		for _, name := range []string{"reverse proxy", "proxied requests"} {
			if c := got[name]; !c.OK || c.Warn {
				t.Errorf("%s: %+v", name, c)
			}
		}
	})
	t.Run("trusting everyone", func(t *testing.T) {
		reverseProxy := func(nets ...string) roles.Check {
			cfg := config.Default()
			cfg.PublicURL, cfg.TrustedProxies, cfg.DataDir, cfg.Runtime = public, nets, t.TempDir(), config.RuntimeProcess
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			for _, c := range roles.Doctor(context.Background(), cfg) {
				if c.Name == "reverse proxy" {
					return c
				}
			}
			t.Fatal("no reverse proxy line")
			return roles.Check{}
		}
		for _, nets := range [][]string{{"0.0.0.0/0"}, {"127.0.0.1/32", "::/0"}, {"10.0.0.0/8"}} {
			if c := reverseProxy(nets...); !c.Warn || !strings.Contains(c.Detail, "trusts far more than a proxy") {
				t.Errorf("%v: %+v", nets, c)
			}
		}
		if c := reverseProxy("127.0.0.1/32", "172.17.0.0/16", "fd00::/64"); !c.OK || c.Warn {
			t.Errorf("proxy-sized nets: %+v", c)
		}
	})
	t.Run("http", func(t *testing.T) {
		env := xtest.NewEnv(t)
		get(t, env, "/signin")
		env.Stop()
		got := doctorLines(t, env, env.URL)
		if c := got["reverse proxy"]; !c.OK {
			t.Errorf("static check: %+v", c)
		}
		if c, ok := got["proxied requests"]; ok {
			t.Errorf("an http deployment got a proxied requests line: %+v", c)
		}
	})
}

// TestDoctorListenHolder: a taken --listen address is named as held by a
// running ocmt (with its version and pid) when an ocmt answers there, else
// as held by another program (with its pid).
func TestDoctorListenHolder(t *testing.T) {
	env := xtest.NewEnv(t)
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	pid := "(pid " + strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name, listen string
		want         []string
	}{
		{"ocmt", strings.TrimPrefix(env.URL, "http://"), []string{
			" is held by a running ocmt " + version.String() + " " + pid,
			"with another data directory; stop it, or give this one another --listen (a second ocmt on one host also needs its own --data-dir, --relay-port and --network)",
		}},
		{"other program", other.Addr().String(), []string{" is held by another program " + pid, "not an ocmt; stop it or pick another --listen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir, cfg.Listen, cfg.Runtime = t.TempDir(), tc.listen, config.RuntimeProcess
			var c roles.Check
			for _, c = range roles.Doctor(context.Background(), cfg) {
				if c.Name == "listen address" {
					break
				}
			}
			t.Log(c.Detail)
			if c.OK || c.Warn {
				t.Errorf("a taken address passed: %+v", c)
			}
			for _, w := range tc.want {
				if !strings.Contains(c.Detail, w) {
					t.Errorf("detail %q lacks %q", c.Detail, w)
				}
			}
		})
	}
}
