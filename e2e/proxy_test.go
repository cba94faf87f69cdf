package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/xtest"
)

// readmeBlock returns the fenced code block that follows the line
// "<!-- proxy-test: name" in README.md: the configuration the README
// gives operators is the one these tests run.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(xtest.ModuleRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- proxy-test: "+name+" ")
	if !ok {
		t.Fatalf("README.md has no %q proxy-test marker", name)
	}
	_, rest, _ = strings.Cut(rest, "\n```")
	_, rest, _ = strings.Cut(rest, "\n") // the fence's info string
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatalf("README.md: no fenced block after the %q marker", name)
	}
	return block + "\n"
}

// substitute replaces each old with its new in s, failing the test when an
// old is missing (the README changed, so the test must change with it).
func substitute(t *testing.T, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("the README block no longer holds %q:\n%s", pairs[i], s)
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and localhost
// into dir and returns the file paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM := xtest.SelfSignedCert(t, "127.0.0.1", "localhost")
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// findBinary returns the path of a proxy's executable, or skips the test
// (fails it when CI=true) when it is not installed.
func findBinary(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	xtest.SkipOrFail(t, name+" is not installed (apt-get install "+name+"; .ci/run does)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// startProcess runs a proxy until the test ends (SIGTERM, then SIGKILL),
// its output kept for failure messages.
func startProcess(t *testing.T, out *xtest.Buffer, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
}

// proxySetup is one proxy under test: it starts the README's
// configuration listening with TLS on 127.0.0.1:port (and, if it redirects
// plain http, on 127.0.0.1:httpPort) in front of ocmt at upstream.
type proxySetup struct {
	name  string
	start func(t *testing.T, dir, port, httpPort, upstream, cert, key string, out *xtest.Buffer)
	// redirects: the README's configuration answers plain http on its own
	// port with a redirect to https (checked on httpPort).
	redirects bool
}

var nginxSetup = proxySetup{name: "nginx", redirects: true, start: func(t *testing.T, dir, port, httpPort, upstream, cert, key string, out *xtest.Buffer) {
	bin := findBinary(t, "nginx")
	site := substitute(t, readmeBlock(t, "nginx"),
		"    listen [::]:80;\n", "",
		"    listen [::]:443 ssl http2;\n", "",
		"listen 80;", "listen 127.0.0.1:"+httpPort+";",
		"listen 443 ssl http2;", "listen 127.0.0.1:"+port+" ssl http2;",
		"/etc/letsencrypt/live/ocmt.example.org/fullchain.pem", cert,
		"/etc/letsencrypt/live/ocmt.example.org/privkey.pem", key,
		"proxy_pass http://127.0.0.1:8080;", "proxy_pass http://"+upstream+";")
	user := ""
	if os.Geteuid() == 0 { // workers would run as nobody, who cannot write the temp dir
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`daemon off;
%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
%[3]s}
`, user, dir, site)
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, out, nil, bin, "-p", dir, "-c", file, "-e", filepath.Join(dir, "error.log"))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
}}

var caddySetup = proxySetup{name: "caddy", start: func(t *testing.T, dir, port, _, upstream, cert, key string, out *xtest.Buffer) {
	bin := findBinary(t, "caddy")
	site := substitute(t, readmeBlock(t, "caddy"),
		"ocmt.example.org {", "https://127.0.0.1:"+port+" {",
		"# tls /etc/ssl/ocmt.example.org.pem /etc/ssl/ocmt.example.org.key", "tls "+cert+" "+key,
		"reverse_proxy 127.0.0.1:8080", "reverse_proxy "+upstream)
	// Test-only global options: no admin endpoint, no port-80 redirect
	// listener, and every file Caddy keeps under dir.
	conf := fmt.Sprintf("{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system {\n\t\troot %s/data\n\t}\n}\n\n%s", dir, site)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, out, []string{"HOME=" + dir, "XDG_CONFIG_HOME=" + dir + "/config", "XDG_DATA_HOME=" + dir + "/data"},
		bin, "run", "--config", file, "--adapter", "caddyfile")
}}

// headerTransport adds fixed headers to every request (a client forging
// X-Forwarded-For).
type headerTransport struct {
	rt  http.RoundTripper
	hdr http.Header
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.hdr {
		r.Header[k] = v
	}
	return h.rt.RoundTrip(r)
}

// proxyClient is a browser-like client of base that trusts pool and
// connects from the loopback address local, so the proxy sees it as its
// own client address; hdr, if not nil, is sent with every request.
func proxyClient(base string, pool *x509.CertPool, local string, hdr http.Header) *api.Client {
	c := api.NewClient(base)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	var rt http.RoundTripper = &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: pool}}
	if hdr != nil {
		rt = headerTransport{rt, hdr}
	}
	c.HC.Transport = rt
	return c
}

func TestBehindNginx(t *testing.T) { runBehindProxy(t, nginxSetup) }
func TestBehindCaddy(t *testing.T) { runBehindProxy(t, caddySetup) }

// runBehindProxy runs ocmt behind the README's configuration of a real
// proxy with a self-signed certificate, and uses it only through the proxy
// over https, from distinct client addresses: sign-in by mailed link, the
// chat WebSocket (and the Origin rule), per-client sign-in rate limits that
// a client cannot dodge by forging X-Forwarded-For, and the client address
// in the audit log. Afterwards doctor has nothing to say about the proxy.
func runBehindProxy(t *testing.T, p proxySetup) {
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir)
	port, httpPort := freePort(t), freePort(t)
	public := "https://127.0.0.1:" + port
	env := xtest.NewEnv(t, xtest.WithPublicURL(public),
		xtest.WithConfig(func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32"} }))
	out := &xtest.Buffer{}
	p.start(t, dir, port, httpPort, strings.TrimPrefix(env.URL, "http://"), cert, key, out)
	ctx := context.Background()

	probe := proxyClient(public, pool, "127.0.0.9", nil)
	var health *api.Response
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := probe.Do(ctx, "GET", "/healthz", nil)
		if err == nil && r.Status == http.StatusOK {
			health = r
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer on %s: %v %v\n%s", p.name, public, r, err, out.String())
		}
	}
	if !strings.HasPrefix(health.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS through %s: %v", p.name, health.Header)
	}

	// Sign-in: the first start's link points at the public URL, and the
	// session cookie is Secure.
	alice := proxyClient(public, pool, "127.0.0.2", nil)
	if !strings.Contains(env.Out.String(), public+"/auth/verify?token=") {
		t.Fatalf("the bootstrap link does not use the public URL:\n%s", env.Out.String())
	}
	r, err := alice.Do(ctx, "POST", "/auth/verify", map[string]string{"token": env.BootstrapToken(), "email": "alice@example.org"})
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("bootstrap sign-in through %s: %v %v\n%s", p.name, r, err, out.String())
	}
	if sc := strings.Join(r.Header.Values("Set-Cookie"), "\n"); !strings.Contains(sc, "ocmt_session=") || !strings.Contains(sc, "; Secure") {
		t.Errorf("session cookie not Secure: %s", sc)
	}
	if err := alice.JSON(ctx, "POST", "/api/v1/admin/users", api.InviteRequest{Email: "bob@example.org"}, nil); err != nil {
		t.Fatal(err)
	}
	bob := proxyClient(public, pool, "127.0.0.3", nil)
	if _, err := bob.Verify(ctx, env.LinkFor("bob@example.org"), ""); err != nil {
		t.Fatalf("bob's invitation: %v", err)
	}
	if err := bob.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.RequestLink(ctx, "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if u, err := bob.Verify(ctx, env.LinkFor("bob@example.org"), ""); err != nil || u.Email != "bob@example.org" {
		t.Fatalf("bob's sign-in by link: %v %v", u, err)
	}
	if u, err := bob.Me(ctx); err != nil || u.Email != "bob@example.org" {
		t.Fatalf("bob's session: %v %v", u, err)
	}

	// The client's address, not the proxy's, is in the audit log.
	var audit struct {
		Events []api.AuditEvent `json:"events"`
	}
	if err := alice.JSON(ctx, "GET", "/api/v1/audit?action=auth.signin", nil, &audit); err != nil {
		t.Fatal(err)
	}
	ips := map[string]bool{}
	for _, e := range audit.Events {
		ips[e.Detail["ip"]] = true
	}
	if !ips["127.0.0.2"] || !ips["127.0.0.3"] || ips["127.0.0.1"] {
		t.Errorf("sign-in audit addresses %v, want the clients' 127.0.0.2 and 127.0.0.3", ips)
	}

	// The chat WebSocket, with a streamed reply from the fake provider.
	if err := alice.ProvisionAgent(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if _, err := alice.WaitAgent(wctx, api.StateRunning); err != nil {
		t.Fatal(err)
	}
	fp := fakeprovider.New()
	defer fp.Close()
	v := vaultAPI{t: t, c: alice, env: env}
	k := v.deriveKey(e2ePassword)
	v.json("POST", "/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(k[:])}, nil)
	fp.SetKey(e2eAPIKey)
	fp.Script(fakeprovider.Reply{Text: e2eReply})
	v.json("PUT", "/apikeys/anthropic", map[string]string{"key": e2eAPIKey, "baseUrl": fp.URL()}, nil)
	wsURL := "wss://127.0.0.1:" + port + "/api/v1/me/agent/chat"
	for _, origin := range []string{"https://127.0.0.1", "http://127.0.0.1:" + port, "https://localhost:" + port} {
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		ws, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: alice.HC, HTTPHeader: http.Header{"Origin": {origin}}})
		dcancel()
		if err == nil {
			ws.CloseNow()
			t.Errorf("chat WebSocket opened with Origin %s", origin)
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("chat WebSocket with Origin %s: %v (want 403)", origin, err)
		}
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Minute)
	ws, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: alice.HC, HTTPHeader: http.Header{"Origin": {public}}})
	dcancel()
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("chat WebSocket through %s: %v (status %d)\n%s", p.name, err, status, out.String())
	}
	defer ws.CloseNow()
	deltas, final := chatConnect(t, ws).chatOnce("main", e2eQuestion)
	if final != e2eReply || deltas < 2 {
		t.Fatalf("reply %q after %d deltas", final, deltas)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// Rate limits are per client: carol's address runs out of sign-in
	// requests, forging X-Forwarded-For does not give her a fresh one, and
	// dave (another address) is not affected.
	carol := proxyClient(public, pool, "127.0.0.4", nil)
	limited := false
	for i := 0; i < 40 && !limited; i++ {
		r, err := carol.Do(ctx, "POST", "/api/v1/auth/magic-link", api.MagicLinkRequest{Email: fmt.Sprintf("nobody%d@example.org", i)})
		if err != nil {
			t.Fatal(err)
		}
		switch r.Status {
		case http.StatusAccepted:
		case http.StatusTooManyRequests:
			limited = true
		default:
			t.Fatalf("sign-in request %d: %d %s", i, r.Status, r.Body)
		}
	}
	if !limited {
		t.Fatal("40 sign-in requests from one address were never limited")
	}
	for _, forged := range []string{"198.51.100.7", "198.51.100.7, 127.0.0.1", "127.0.0.1"} {
		spoof := proxyClient(public, pool, "127.0.0.4", http.Header{"X-Forwarded-For": {forged}, "X-Real-Ip": {"198.51.100.8"}})
		r, err := spoof.Do(ctx, "POST", "/api/v1/auth/magic-link", api.MagicLinkRequest{Email: "forger@example.org"})
		if err != nil || r.Status != http.StatusTooManyRequests {
			t.Errorf("limited client forging X-Forwarded-For %q: %v %v (want 429)", forged, r, err)
		}
	}
	dave := proxyClient(public, pool, "127.0.0.5", nil)
	if r, err := dave.Do(ctx, "POST", "/api/v1/auth/magic-link", api.MagicLinkRequest{Email: "dave@example.org"}); err != nil || r.Status != http.StatusAccepted {
		t.Errorf("another client after one ran out: %v %v (want 202)", r, err)
	}

	if p.redirects {
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := hc.Get("http://127.0.0.1:" + httpPort + "/signin")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(resp.Header.Get("Location"), "https://127.0.0.1") {
			t.Errorf("plain http: %s → %q, want a redirect to https", resp.Status, resp.Header.Get("Location"))
		}
	}

	// Every request came through the proxy as it should: doctor is quiet.
	env.Stop()
	cfg := env.Cfg
	cfg.PublicURL = public
	for _, c := range roles.Doctor(ctx, cfg) {
		if (c.Name == "reverse proxy" || c.Name == "proxied requests") && (!c.OK || c.Warn) {
			t.Errorf("doctor after use through %s: %s: %s", p.name, c.Name, c.Detail)
		}
	}
	if bytes.Contains([]byte(env.Log.String()), []byte("correctly set up reverse proxy")) {
		t.Errorf("the server warned about the proxy:\n%s", env.Log.String())
	}
}
