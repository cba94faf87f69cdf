// Package xtest runs real ocmt servers in-process for tests: a fresh data
// directory and SQLite database, a loopback listener, the console mailer
// captured so tests can read sign-in links, and typed api.Clients.
//
// User containers need a real ocmt executable (the test binary is not one):
// Binary builds it once per test process with `go build`.
package xtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/mail"
	"github.com/ocmt/ocmt/roles"
	"github.com/ocmt/ocmt/store"
)

// Buffer is a goroutine-safe bytes.Buffer.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// InCI reports whether CI=true: then tests needing Docker or Chromium fail
// instead of skipping.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test with reason, or fails it in CI.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and %s", reason)
	}
	t.Skip(reason + " (set CI=true to make this a failure)")
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// ModuleRoot returns the repository root (where go.mod is).
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// Binary builds the ocmt executable once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ocmt-xtest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "ocmt")
		cmd := exec.Command("go", "build", "-o", buildPath, ".")
		cmd.Dir = ModuleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build ocmt: %v", buildErr)
	}
	return buildPath
}

// Env is one running ocmt server.
type Env struct {
	URL       string // base URL, e.g. "http://127.0.0.1:41234"
	Cfg       config.Config
	Out       *Buffer // console output: URL, sign-in links
	Log       *Buffer // structured log
	t         testing.TB
	cancel    context.CancelFunc
	errc      chan error
	sweep     time.Duration
	mailer    func(mail.Mailer) mail.Mailer
	bodyDL    time.Duration
	clock     func() time.Time
	mailRetry time.Duration
	public    string           // --public-url, or "" for URL
	ping      [2]time.Duration // proxy ping interval, pong timeout
	stopped   bool

	// MetricsURL is the base URL of the metrics listener
	// (Cfg.MetricsListen, e.g. "127.0.0.1:0" via WithConfig); "" = none.
	MetricsURL string
}

// Option changes an Env's configuration.
type Option func(*Env)

// WithRuntime selects the container runtime (default process).
func WithRuntime(r config.Runtime) Option { return func(e *Env) { e.Cfg.Runtime = r } }

// WithConfig lets a test change any setting.
func WithConfig(f func(*config.Config)) Option { return func(e *Env) { f(&e.Cfg) } }

// WithMailer wraps the console mailer (e.g. to make some sends fail).
func WithMailer(wrap func(mail.Mailer) mail.Mailer) Option { return func(e *Env) { e.mailer = wrap } }

// WithMailBackoff sets the mail outbox's first retry wait
// (roles.Options.MailBackoff), so tests of a mail server that is down run
// fast.
func WithMailBackoff(d time.Duration) Option { return func(e *Env) { e.mailRetry = d } }

// WithSweep sets the hibernation sweep interval.
func WithSweep(d time.Duration) Option { return func(e *Env) { e.sweep = d } }

// WithBodyDeadline sets the time a client has to send a request body
// (roles.Options.BodyDeadline), so tests of slow clients run fast.
func WithBodyDeadline(d time.Duration) Option { return func(e *Env) { e.bodyDL = d } }

// WithClock gives the management role the clock now (roles.Options.Clock),
// so tests can move sessions past their expiry.
func WithClock(now func() time.Time) Option { return func(e *Env) { e.clock = now } }

// WithProxyPing sets the agent proxy's WebSocket ping interval and pong
// timeout (roles.Options), so tests of silent peers run fast.
func WithProxyPing(interval, timeout time.Duration) Option {
	return func(e *Env) { e.ping = [2]time.Duration{interval, timeout} }
}

// WithPublicURL sets --public-url to u (e.g. the https URL of a reverse
// proxy in front of the server): links and Origin checks use u, while
// Env.URL stays the server's own http address.
func WithPublicURL(u string) Option { return func(e *Env) { e.public = u } }

// NewEnv starts ocmt (role all) on a loopback port with a fresh data
// directory; it is stopped when the test ends.
func NewEnv(t testing.TB, opts ...Option) *Env {
	t.Helper()
	e := &Env{t: t, Out: &Buffer{}, Log: &Buffer{}}
	e.Cfg = config.Default()
	e.Cfg.DataDir = t.TempDir()
	e.Cfg.Runtime = config.RuntimeProcess
	e.Cfg.Listen = "127.0.0.1:0"
	e.Cfg.AgentBinary = Binary(t)
	e.Cfg.Network = "ocmt-test"
	e.Cfg.RelayPort = 0 // tests run side by side on one network
	for _, o := range opts {
		o(e)
	}
	e.start()
	t.Cleanup(func() {
		e.Stop()
		if e.Cfg.Runtime == config.RuntimeDocker {
			e.removeContainers()
		}
	})
	return e
}

// removeContainers removes the docker containers and volumes of this env's
// users: they outlive the server by design, but a test's data dir is gone.
func (e *Env) removeContainers() {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(e.Cfg.DataDir, store.FileName), nil)
	if err != nil {
		e.t.Errorf("cleanup: %v", err)
		return
	}
	defer st.Close()
	recs, err := st.Containers(ctx)
	if err != nil {
		e.t.Errorf("cleanup: %v", err)
		return
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		e.t.Errorf("cleanup: %v", err)
		return
	}
	defer cli.Close()
	for _, r := range recs {
		cli.ContainerRemove(ctx, "ocmt-"+string(r.UserID), client.ContainerRemoveOptions{Force: true})
		cli.VolumeRemove(ctx, "ocmt-data-"+string(r.UserID), client.VolumeRemoveOptions{Force: true})
	}
}

func (e *Env) start() {
	t := e.t
	t.Helper()
	ln, err := net.Listen("tcp", e.Cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Cfg
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = "http://" + ln.Addr().String()
	if e.URL != "" { // restart: keep the same public URL (links stay valid)
		cfg.PublicURL = e.URL
	}
	direct := cfg.PublicURL
	if e.public != "" {
		cfg.PublicURL = e.public
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e.URL = direct
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.errc, e.stopped = cancel, make(chan error, 1), false
	ready := make(chan struct{})
	log := slog.New(slog.NewTextHandler(io.MultiWriter(e.Log, logSink()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() {
		e.errc <- roles.Run(ctx, cfg, roles.Options{Log: log, Out: e.Out, Listener: ln, SweepInterval: e.sweep,
			WrapMailer: e.mailer, BodyDeadline: e.bodyDL, Clock: e.clock, MailBackoff: e.mailRetry, PingInterval: e.ping[0], PongTimeout: e.ping[1],
			MetricsReady: func(a string) { e.MetricsURL = "http://" + a },
			Ready:        func(string) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-e.errc:
		t.Fatalf("ocmt did not start: %v\nlog:\n%s", err, e.Log.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("ocmt did not start within 3 minutes\nlog:\n%s", e.Log.String())
	}
}

func logSink() io.Writer {
	if os.Getenv("OCMT_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// Stop shuts the server down gracefully and waits for it.
func (e *Env) Stop() {
	if e.stopped {
		return
	}
	e.stopped = true
	e.cancel()
	select {
	case err := <-e.errc:
		if err != nil {
			e.t.Errorf("ocmt exited with error: %v", err)
		}
	case <-time.After(time.Minute):
		e.t.Errorf("ocmt did not stop within a minute")
	}
}

// Restart stops the server and starts it again on the same data directory
// and public URL.
func (e *Env) Restart() {
	e.t.Helper()
	e.Stop()
	e.Cfg.Listen = strings.TrimPrefix(e.URL, "http://")
	e.start()
}

var linkRE = regexp.MustCompile(`(https?://\S+/auth/verify\?token=[A-Za-z0-9_-]+)`)

// LinkFor waits (up to 5 s) for a new sign-in link mailed to email and
// returns its token. Links already taken are not returned again.
func (e *Env) LinkFor(email string) string {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		lines := strings.Split(e.Out.String(), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			l := lines[i]
			if email == "" && strings.HasPrefix(l, "http") || email != "" && strings.Contains(l, " for "+email+": ") {
				if m := linkRE.FindStringSubmatch(l); m != nil {
					tok := m[1][strings.LastIndex(m[1], "=")+1:]
					if !e.taken(tok) {
						return tok
					}
				}
				if email != "" {
					break
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("no sign-in link for %q in output:\n%s", email, e.Out.String())
	return ""
}

// Mail is a notice printed by the console mailer (mail.Message.ShowBody).
type Mail struct {
	To, Subject, Body string
}

// Mails returns the notices mailed to email so far, oldest first (sign-in
// links are not notices; see LinkFor).
func (e *Env) Mails(email string) []Mail {
	var out []Mail
	var cur *Mail
	for _, l := range strings.Split(e.Out.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, "ocmt: mail to "); ok {
			to, subject, _ := strings.Cut(rest, ": ")
			out = append(out, Mail{To: to, Subject: subject})
			cur = &out[len(out)-1]
			continue
		}
		if body, ok := strings.CutPrefix(l, "ocmt: |"); ok && cur != nil {
			cur.Body += strings.TrimPrefix(body, " ") + "\n"
			continue
		}
		cur = nil
	}
	mine := out[:0]
	for _, m := range out {
		if m.To == email {
			mine = append(mine, m)
		}
	}
	return mine
}

var (
	takenMu sync.Mutex
	taken   = map[string]bool{}
)

func (e *Env) taken(tok string) bool {
	takenMu.Lock()
	defer takenMu.Unlock()
	if taken[tok] {
		return true
	}
	taken[tok] = true
	return false
}

// BootstrapToken returns the first start's admin link token.
func (e *Env) BootstrapToken() string { e.t.Helper(); return e.LinkFor("") }

// Client returns a fresh client (no cookies).
func (e *Env) Client() *api.Client { return api.NewClient(e.URL) }

// Admin signs in the first user (admin) through the bootstrap link.
func (e *Env) Admin(email string) (*api.Client, api.User) {
	e.t.Helper()
	c := e.Client()
	u, err := c.Verify(context.Background(), e.BootstrapToken(), email)
	if err != nil {
		e.t.Fatalf("bootstrap sign-in: %v", err)
	}
	return c, u
}

// Invite has admin invite email and signs that user in.
func (e *Env) Invite(admin *api.Client, email string) (*api.Client, api.User) {
	e.t.Helper()
	ctx := context.Background()
	if err := admin.JSON(ctx, "POST", "/api/v1/admin/users", api.InviteRequest{Email: email}, nil); err != nil {
		e.t.Fatalf("invite %s: %v", email, err)
	}
	c := e.Client()
	u, err := c.Verify(ctx, e.LinkFor(email), "")
	if err != nil {
		e.t.Fatalf("sign in %s: %v", email, err)
	}
	return c, u
}

// Eventually retries f every 50 ms until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not within %s: %v", timeout, err)
}

// ContainerAccess returns the base URL of a user's vault and the
// per-container secret the proxy would inject, read from the database like
// the agent role does. Tests use it to measure the proxy against a direct
// connection.
func (e *Env) ContainerAccess(userID string) (endpoint, secret string) {
	e.t.Helper()
	ctx := context.Background()
	st, err := store.OpenReadOnly(ctx, filepath.Join(e.Cfg.DataDir, store.FileName))
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	rec, err := st.ContainerByUser(ctx, store.UserID(userID))
	if err != nil {
		e.t.Fatal(err)
	}
	key, err := st.GetKV(ctx, "agent.container-secret-key")
	if err != nil {
		e.t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("ocmt container secret v1\x00"))
	m.Write([]byte(userID))
	return rec.Endpoint, hex.EncodeToString(m.Sum(nil))
}

// NewSplitEnv runs the management, agent and relay roles as three servers
// (each with its own data directory and database, talking over HTTP with a
// shared service secret), process runtime. The returned Env is the
// management role's: its URL is what browsers use and its Out gets the
// sign-in links. Everything stops when the test ends.
func NewSplitEnv(t testing.TB, opts ...Option) *Env {
	t.Helper()
	secret := make([]byte, 16)
	for i := range secret {
		secret[i] = "abcdef0123456789"[i%16]
	}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	mln, aln, rln := listen(), listen(), listen()
	murl, aurl := "http://"+mln.Addr().String(), "http://"+aln.Addr().String()
	base := func(role config.Role, ln net.Listener) config.Config {
		c := config.Default()
		c.Role, c.DataDir, c.Runtime, c.Listen = role, t.TempDir(), config.RuntimeProcess, ln.Addr().String()
		c.ServiceSecret, c.AgentBinary, c.PublicURL = string(secret), Binary(t), murl
		return c
	}
	agentCfg := base(config.RoleAgent, aln)
	agentCfg.RelayURL = "ws://" + rln.Addr().String() + "/relay/v1/connect"
	relayCfg := base(config.RoleRelay, rln)
	relayCfg.ManagementURL, relayCfg.AgentURL = murl, aurl
	mgmtCfg := base(config.RoleManagement, mln)
	mgmtCfg.AgentURL = aurl

	e := &Env{t: t, Out: &Buffer{}, Log: &Buffer{}, URL: murl, Cfg: mgmtCfg}
	for _, o := range opts {
		o(e)
	}
	agentCfg.AllowPrivateTargets = e.Cfg.AllowPrivateTargets
	start := func(cfg config.Config, ln net.Listener, out io.Writer) {
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		ready := make(chan struct{})
		log := slog.New(slog.NewTextHandler(io.MultiWriter(e.Log, logSink()), &slog.HandlerOptions{Level: slog.LevelDebug}))
		var clock func() time.Time
		if cfg.Role == config.RoleManagement {
			clock = e.clock
		}
		go func() {
			errc <- roles.Run(ctx, cfg, roles.Options{Log: log.With("role", string(cfg.Role)), Out: out, Listener: ln,
				BodyDeadline: e.bodyDL, Clock: clock, Ready: func(string) { close(ready) }})
		}()
		select {
		case <-ready:
		case err := <-errc:
			t.Fatalf("%s role did not start: %v\nlog:\n%s", cfg.Role, err, e.Log.String())
		}
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("%s role exited with error: %v", cfg.Role, err)
				}
			case <-time.After(time.Minute):
				t.Errorf("%s role did not stop", cfg.Role)
			}
		})
	}
	start(agentCfg, aln, io.Discard)
	start(relayCfg, rln, io.Discard)
	start(e.Cfg, mln, e.Out)
	e.stopped = true // Stop/Restart are for NewEnv's single process
	return e
}

// PublishKeys puts id's public keys in the directory as userID's, as if
// the user had published them from a client of their own (the normal path
// is the vault's identity, which tests cannot sign with). Tests use it to
// act as a signed-in user on the relay with a key they hold.
func (e *Env) PublishKeys(userID string, id *crypto.Identity) {
	e.t.Helper()
	ctx := context.Background()
	sr, err := id.SignKeyRecord(crypto.KeyRecord{Subject: userID})
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(e.Cfg.DataDir, store.FileName), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	pub := id.Public()
	if err := st.PutDirectoryEntry(ctx, store.DirectoryEntry{UserID: store.UserID(userID), Ed25519: pub.Ed25519Text(),
		X25519: pub.X25519Text(), Record: sr.Record, Sig: sr.Sig}); err != nil {
		e.t.Fatal(err)
	}
}

// RelayURL is the WebSocket URL of the relay role of an all-in-one Env
// with the process runtime (the main listener's /relay/v1/connect).
func (e *Env) RelayURL() string {
	return "ws" + strings.TrimPrefix(e.URL, "http") + "/relay/v1/connect"
}

// DialChat opens the chat WebSocket (SPEC §5.5) of c's container through
// the management role, with this deployment's Origin, and closes it when
// the test ends. The caller does the protocol's handshake.
func (e *Env) DialChat(c *api.Client) *websocket.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, strings.Replace(e.URL, "http", "ws", 1)+"/api/v1/me/agent/chat",
		&websocket.DialOptions{HTTPClient: c.HC, HTTPHeader: http.Header{"Origin": {e.URL}}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial chat: %v (status %d)", err, status)
	}
	e.t.Cleanup(func() { ws.CloseNow() })
	return ws
}
