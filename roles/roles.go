// Package roles starts the roles a Config asks for on one listener and runs
// them until the context ends: `ocmt serve` is roles.Run.
package roles

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/datadir"
	"github.com/ocmt/ocmt/mail"
	"github.com/ocmt/ocmt/metrics"
	"github.com/ocmt/ocmt/roles/agent"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/roles/agent/process"
	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/roles/management"
	"github.com/ocmt/ocmt/roles/relay"
	"github.com/ocmt/ocmt/roles/vault"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/version"
)

// Options are the parts of a run that are not configuration.
type Options struct {
	Log *slog.Logger
	Out io.Writer // where the URL and console mail go
	// Listener, if set, is used instead of listening on cfg.Listen (tests).
	Listener net.Listener
	// SweepInterval overrides the agent's hibernation interval (tests).
	SweepInterval time.Duration
	// PingInterval and PongTimeout override the agent proxy's WebSocket
	// keep-alive (agent.Options; tests); 0 = the defaults.
	PingInterval, PongTimeout time.Duration
	// Ready, if set, is called once the server accepts connections.
	Ready func(addr string)
	// WrapMailer, if set, wraps the configured mailer (tests: a mailer
	// that fails).
	WrapMailer func(mail.Mailer) mail.Mailer
	// BodyDeadline overrides web.BodyReadTimeout, the time a client has to
	// send a request body (tests); 0 = the default.
	BodyDeadline time.Duration
	// Clock, if set, is the management role's clock (tests: session
	// expiry); nil = time.Now.
	Clock func() time.Time
	// MailBackoff overrides the mail outbox's first retry wait (tests;
	// the longest becomes 4×); 0 = mail.DefaultMinBackoff.
	MailBackoff time.Duration
	// MetricsListener, if set, is used instead of listening on
	// cfg.MetricsListen, and turns metrics on (tests).
	MetricsListener net.Listener
	// MetricsReady, if set, is called with the metrics listener's address
	// once it accepts connections.
	MetricsReady func(addr string)
}

// newMetrics returns the metrics registry of a run, or nil when metrics
// are off (no --metrics-listen): nothing is counted then.
func newMetrics(cfg config.Config, opt Options) *metrics.Registry {
	if cfg.MetricsListen == "" && opt.MetricsListener == nil {
		return nil
	}
	return metrics.New()
}

// serveMetrics serves /metrics, /livez and /readyz on the metrics listener
// (cfg.MetricsListen or opt.MetricsListener); m nil = none (nil server).
// Serve errors go to serveErr.
func serveMetrics(cfg config.Config, opt Options, m *metrics.Registry, probes web.Probes, serveErr chan<- error) (*http.Server, error) {
	if m == nil {
		return nil, nil
	}
	ln := opt.MetricsListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, &config.Error{Setting: "metrics-listen", Msg: fmt.Sprintf("cannot listen on %s: %v", cfg.MetricsListen, errors.Unwrap(err))}
		}
	}
	e := web.New(opt.Log, false)
	web.Observe(e, opt.Log, m, slog.LevelInfo)
	e.GET("/metrics", echo.WrapHandler(m.Handler()))
	probes.Routes(e)
	srv := web.NewServer(e, opt.BodyDeadline, opt.Log)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	}()
	opt.Log.Info("metrics serving", "listen", ln.Addr().String())
	if opt.MetricsReady != nil {
		opt.MetricsReady(ln.Addr().String())
	}
	return srv, nil
}

// dialCheck is a readiness check that a TCP listener at *addr accepts
// connections ("" = not up yet).
func dialCheck(addr *atomic.Pointer[string]) func(context.Context) error {
	return func(ctx context.Context) error {
		a := addr.Load()
		if a == nil || *a == "" {
			return errors.New("listener not started")
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", *a)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// newMailer returns the SMTP mailer of cfg, or the console mailer when no
// SMTP host is set. It warns loudly when certificate checks are off, and
// when mail to a server off this machine goes in clear (--smtp-tls=none):
// sign-in mail carries live links.
func newMailer(cfg config.Config, out io.Writer, log *slog.Logger) (mail.Mailer, error) {
	if cfg.SMTPHost == "" {
		return &mail.Console{W: out}, nil
	}
	m := &mail.SMTP{Host: cfg.SMTPHost, Port: cfg.SMTPPort, Username: cfg.SMTPUsername,
		Password: cfg.SMTPPassword, TLS: cfg.SMTPTLS, From: cfg.MailFrom, InsecureSkipVerify: cfg.SMTPTLSInsecure}
	if cfg.SMTPCAFile != "" {
		pool, err := mail.LoadCAFile(cfg.SMTPCAFile)
		if err != nil {
			return nil, &config.Error{Setting: "smtp-ca-file", Msg: err.Error()}
		}
		m.RootCAs = pool
	}
	if cfg.SMTPTLSInsecure && cfg.SMTPTLS != mail.TLSNone {
		log.Warn("SMTP SERVER CERTIFICATE IS NOT VERIFIED (--smtp-tls-insecure): anyone between ocmt and the mail server can read sign-in links and sign in as your users; for tests only")
	}
	if cfg.SMTPTLS == mail.TLSNone && !loopbackHost(cfg.SMTPHost) {
		log.Warn("MAIL GOES TO "+cfg.SMTPHost+" IN CLEAR (--smtp-tls=none): anyone on the way can read sign-in links and sign in as your users; use starttls or tls unless the server is on this machine", "smtp_host", cfg.SMTPHost)
	}
	return m, nil
}

// loopbackHost reports whether host ("localhost", an IP address) is this
// machine's loopback.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run runs the roles of cfg until ctx ends, then shuts down gracefully:
// in-flight requests finish (up to 15 s), background work stops and the
// database is closed. cfg must have passed Validate, and cfg.DataDir must
// exist (config.CheckDataDir). Every role but vault first locks the data
// directory (package datadir) and returns a *datadir.InUseError, having
// touched nothing, if another ocmt holds it.
func Run(ctx context.Context, cfg config.Config, opt Options) error {
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opt.Out == nil {
		opt.Out = os.Stdout
	}
	if cfg.Role == config.RoleVault {
		return runVault(ctx, cfg, opt)
	}
	log := opt.Log
	// One ocmt per data directory, checked before the store opens and any
	// container is touched (see package datadir).
	listen := cfg.Listen
	if opt.Listener != nil {
		listen = opt.Listener.Addr().String()
	}
	lock, err := datadir.Lock(cfg.DataDir, datadir.Holder{PID: os.Getpid(), Listen: listen})
	if err != nil {
		return err
	}
	defer lock.Close()
	st, err := store.Open(ctx, filepath.Join(cfg.DataDir, store.FileName), nil)
	if err != nil {
		return err
	}
	defer st.Close()

	m := newMetrics(cfg, opt)
	e := web.New(log, cfg.Secure(), cfg.TrustedProxyNets()...)
	stopWatch, err := watchProxy(ctx, cfg, st, e, log)
	if err != nil {
		return err
	}
	defer stopWatch() // before st.Close: it writes the report a last time
	web.Observe(e, log, m, slog.LevelInfo)
	var roleNames []string
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	done := make(chan struct{})
	var ag *agent.Server
	var drv runtime.Driver
	var rl *relay.Server

	if cfg.Has(config.RoleAgent) {
		roleNames = append(roleNames, string(config.RoleAgent))
		deployment, err := st.GetOrCreateKV(ctx, deploymentKey, func() []byte { return []byte(store.NewID("dep")) })
		if err != nil {
			return err
		}
		drv, err = selectDriver(ctx, cfg, log, string(deployment))
		if err != nil {
			return err
		}
		bin, err := agentBinary(cfg)
		if err != nil {
			drv.Close()
			return err
		}
		ag, err = agent.New(ctx, agent.Options{
			Driver: drv, Store: st, Log: log, Version: version.String(), Binary: bin, PublicURL: cfg.PublicURL,
			DataDir: filepath.Join(cfg.DataDir, "users"), MemoryMiB: cfg.MemoryMiB, NanoCPUs: cfg.NanoCPUs,
			PidsLimit: cfg.PidsLimit, IdlePauseAfter: cfg.IdlePauseAfter, PausedStopAfter: cfg.PausedStopAfter,
			WakeTimeout: cfg.WakeTimeout, SweepInterval: opt.SweepInterval, AllowPrivateTargets: cfg.AllowPrivateTargets,
			HibernateUnlocked: cfg.HibernateUnlocked, VaultAutoLock: cfg.VaultAutoLock,
			PingInterval: opt.PingInterval, PongTimeout: opt.PongTimeout, Metrics: m,
		})
		if err != nil {
			drv.Close()
			return err
		}
		defer ag.Close()
		go func() { ag.Run(bg); close(done) }()
		if cfg.Role == config.RoleAgent {
			ag.Routes(e.Group("/internal/v1/agent"), cfg.ServiceSecret)
			ag.SetRelayURL(cfg.RelayURL) // a separate relay role, if any
		}
	} else {
		close(done)
	}
	if cfg.Has(config.RoleRelay) {
		roleNames = append(roleNames, string(config.RoleRelay))
		var waker relay.Waker
		var dir relay.Directory = relayDirectory{st}
		if ag != nil {
			waker = relayWaker{ag}
		}
		if cfg.Role == config.RoleRelay { // on its own: directory and wake over HTTP
			if dir, err = api.NewDirectoryClient(cfg.ManagementURL, cfg.ServiceSecret); err != nil {
				return err
			}
			if cfg.AgentURL != "" {
				ac, err := api.NewAgentClient(cfg.AgentURL, cfg.ServiceSecret)
				if err != nil {
					return err
				}
				waker = remoteWaker{ac}
			}
		}
		rl, err = relay.New(relay.Options{Store: st, Directory: dir, Waker: waker, Log: log, Metrics: m})
		if err != nil {
			return err
		}
		defer rl.Close()
		rl.Routes(e.Group("/relay/v1"))
	}
	var mg *management.Server
	var outbox *mail.Outbox // the management role's mail queue; a prometheus.Collector
	if cfg.Has(config.RoleManagement) {
		roleNames = append(roleNames, string(config.RoleManagement))
		var agentAPI api.Agent = ag
		if ag == nil {
			if agentAPI, err = api.NewAgentClient(cfg.AgentURL, cfg.ServiceSecret); err != nil {
				return err
			}
		}
		mailer, err := newMailer(cfg, opt.Out, log)
		if err != nil {
			return err
		}
		if opt.WrapMailer != nil {
			mailer = opt.WrapMailer(mailer)
		}
		outbox = mail.NewOutbox(mail.OutboxOptions{Store: st, Mailer: mailer, Log: log, Now: opt.Clock,
			MinBackoff: opt.MailBackoff, MaxBackoff: 4 * opt.MailBackoff})
		if err := m.Register(outbox); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		mailDone := make(chan struct{})
		go func() { outbox.Run(bg); close(mailDone) }()
		defer func() { stopBG(); <-mailDone }() // before the store closes
		mgSecret := ""
		if cfg.Role == config.RoleManagement {
			mgSecret = cfg.ServiceSecret
		}
		mg, err = management.New(ctx, management.Options{
			Store: st, Agent: agentAPI, Outbox: outbox, Log: log, PublicURL: cfg.PublicURL, ServiceSecret: mgSecret,
			SessionTTL: cfg.SessionTTL, MagicLinkTTL: cfg.MagicLinkTTL, Version: version.String(), Now: opt.Clock,
			Metrics: m,
		})
		if err != nil {
			return err
		}
		mg.Routes(e)
	}
	health := api.Health{Status: "ok", Roles: roleNames, Version: version.String()}
	healthz := func(c echo.Context) error {
		if err := st.Ping(c.Request().Context()); err != nil {
			return api.Unavailable("store_unavailable", "database unavailable", err)
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusOK, health)
	}
	e.GET("/healthz", healthz)
	e.HEAD("/healthz", healthz)
	var relayAddr atomic.Pointer[string] // where vaults reach the relay, once it listens
	probes := web.Probes{Log: log, Checks: readyChecks(st, drv, rl, &relayAddr)}
	probes.Routes(e)

	ln := opt.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return &config.Error{Setting: "listen", Msg: fmt.Sprintf("cannot listen on %s: %v", cfg.Listen, errors.Unwrap(err))}
		}
	}
	if addr := ln.Addr().String(); addr != listen { // e.g. port 0
		if err := lock.SetListen(addr); err != nil {
			log.Warn("cannot record the listen address in the data directory lock", "err", err)
		}
	}
	srv := web.NewServer(e, opt.BodyDeadline, log)
	serveErr := make(chan error, 3)
	go func() { serveErr <- srv.Serve(ln) }()
	mainAddr := ln.Addr().String()
	relayAddr.Store(&mainAddr) // split relay role, or process runtime: vaults use the main listener
	if rl != nil && ag != nil {
		relaySrv, err := startContainerRelay(ctx, cfg, drv, rl, ag, ln.Addr().String(), opt.BodyDeadline, log, m, serveErr)
		if err != nil {
			_ = web.Shutdown(srv, time.Second)
			return err
		}
		if relaySrv != nil {
			defer web.Shutdown(relaySrv, 5*time.Second)
			a := relaySrv.Addr
			relayAddr.Store(&a)
		}
	}
	metricsSrv, err := serveMetrics(cfg, opt, m, probes, serveErr)
	if err != nil {
		_ = web.Shutdown(srv, time.Second)
		return err
	}
	if metricsSrv != nil {
		defer web.Shutdown(metricsSrv, 5*time.Second)
	}

	if ag != nil {
		ag.ApplyConfig() // after SetRelayURL: the relay URL is part of a container's configuration
	}

	log.Info("ocmt serving", "roles", strings.Join(roleNames, ","), "listen", ln.Addr().String(), "version", version.String())
	fmt.Fprintf(opt.Out, "ocmt is running at %s\n", cfg.PublicURL)
	if mg != nil {
		if link, err := mg.BootstrapLink(ctx, time.Hour); err != nil {
			return err
		} else if link != "" {
			fmt.Fprintf(opt.Out, "No users yet. Open this one-time link to create the admin account (valid for %s):\n%s\n", mail.DurationWords(time.Hour), link)
		}
	}
	if opt.Ready != nil {
		opt.Ready(ln.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("shutting down")
	if err := web.Shutdown(srv, 15*time.Second); err != nil {
		log.Warn("shutdown", "err", err)
	}
	stopBG()
	<-done
	return nil
}

func runVault(ctx context.Context, cfg config.Config, opt Options) error {
	m := newMetrics(cfg, opt)
	v, err := vault.New(vault.Options{Secret: cfg.VaultSecret, Version: version.String(), Log: opt.Log,
		DataDir: cfg.DataDir, PublicURL: cfg.PublicURL, UserID: cfg.VaultUser, AutoLock: cfg.VaultAutoLock,
		RelayURL: cfg.RelayURL, AllowPrivateTargets: cfg.AllowPrivateTargets, Metrics: m})
	if err != nil {
		return err
	}
	ln := opt.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return &config.Error{Setting: "listen", Msg: fmt.Sprintf("cannot listen on %s: %v", cfg.Listen, errors.Unwrap(err))}
		}
	}
	srv := web.NewServer(v.Handler(), opt.BodyDeadline, opt.Log)
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	metricsSrv, err := serveMetrics(cfg, opt, m, web.Probes{}, serveErr)
	if err != nil {
		_ = web.Shutdown(srv, time.Second)
		return err
	}
	if metricsSrv != nil {
		defer web.Shutdown(metricsSrv, 5*time.Second)
	}
	vctx, stopVault := context.WithCancel(context.Background())
	vdone := make(chan struct{})
	go func() { v.Run(vctx); close(vdone) }()
	opt.Log.Info("vault serving", "listen", ln.Addr().String())
	if opt.Ready != nil {
		opt.Ready(ln.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		stopVault()
		<-vdone
		return fmt.Errorf("serve: %w", err)
	}
	err = web.Shutdown(srv, 10*time.Second)
	stopVault()
	<-vdone
	return err
}

// deploymentKey is the store KV key of the deployment id, "dep_…", made on
// the agent role's first start; it labels this deployment's engine objects
// (runtime.LabelDeployment).
const deploymentKey = "deployment.id"

// readyChecks are the readiness checks of a run: the database always, the
// container engine (drv; nil without the agent role), the relay listener
// with the relay role (addr: where vaults reach it).
func readyChecks(st *store.Store, drv runtime.Driver, rl *relay.Server, addr *atomic.Pointer[string]) []web.Check {
	checks := []web.Check{{Name: "database", Func: st.Ping}}
	if drv != nil {
		checks = append(checks, web.Check{Name: "engine", Func: drv.Ping})
	}
	if rl != nil {
		checks = append(checks, web.Check{Name: "relay", Func: dialCheck(addr)})
	}
	return checks
}

// agentBinary is the ocmt executable put in images and run by the process driver.
func agentBinary(cfg config.Config) (string, error) {
	if cfg.AgentBinary != "" {
		if _, err := os.Stat(cfg.AgentBinary); err != nil {
			return "", &config.Error{Setting: "agent-binary", Msg: "no such file: " + cfg.AgentBinary}
		}
		return cfg.AgentBinary, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable: %w", err)
	}
	return exe, nil
}

// selectDriver picks the runtime: docker if asked or if an engine answers in
// auto mode; process otherwise, with a loud warning.
func selectDriver(ctx context.Context, cfg config.Config, log *slog.Logger, deployment string) (runtime.Driver, error) {
	if cfg.Runtime == config.RuntimeProcess {
		log.Warn("RUNTIME IS PROCESS: user agents run as plain child processes, NOT isolated containers")
		return process.New(log), nil
	}
	bin, err := agentBinary(cfg)
	if err != nil {
		return nil, err
	}
	d, err := docker.New(ctx, docker.Options{Binary: bin, Image: cfg.AgentImage, Network: cfg.Network, Version: version.String(), Logger: log, Deployment: deployment})
	if err == nil {
		log.Info("container runtime: docker")
		return d, nil
	}
	if cfg.Runtime == config.RuntimeDocker {
		fix := "start Docker or use --runtime=process"
		if docker.IsPermission(err) { // err says how to get access
			fix = "or use --runtime=process"
		}
		return nil, &config.Error{Setting: "runtime", Msg: "docker was asked for but no engine answers (" + err.Error() + "); " + fix}
	}
	if docker.IsPermission(err) {
		log.Warn("THE DOCKER SOCKET REFUSES THIS USER: falling back to the process runtime; user agents are NOT isolated in containers. "+
			"To fix: "+docker.PermissionFix+"; then restart ocmt.", "docker_error", err.Error())
		return process.New(log), nil
	}
	log.Warn("NO CONTAINER ENGINE ANSWERED: falling back to the process runtime; user agents are NOT isolated in containers. Start Docker and restart ocmt for real isolation.", "docker_error", err.Error())
	return process.New(log), nil
}

// watchProxy clears the reverse proxy report of an earlier run and, when
// the public URL is https, watches e's requests for a missing or
// misconfigured proxy (web.ProxyWatch), writing what it sees under
// web.ProxyReportKey for `ocmt doctor`. stop ends the watch after a last
// write and waits for it.
func watchProxy(ctx context.Context, cfg config.Config, st *store.Store, e *echo.Echo, log *slog.Logger) (stop func(), err error) {
	if err := st.DeleteKV(ctx, web.ProxyReportKey); err != nil {
		return nil, err
	}
	if !cfg.Secure() {
		return func() {}, nil
	}
	w := web.NewProxyWatch(log, cfg.PublicURL, cfg.TrustedProxyNets(), nil)
	e.Use(w.Middleware)
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(wctx, 0, func(ctx context.Context, b []byte) error { return st.PutKV(ctx, web.ProxyReportKey, b) })
	}()
	return func() { cancel(); <-done }, nil
}

// VerifyAudit opens the database in dataDir and checks the audit chain.
func VerifyAudit(ctx context.Context, dataDir string) (int64, error) {
	path := filepath.Join(dataDir, store.FileName)
	if _, err := os.Stat(path); err != nil {
		return 0, &config.Error{Setting: "data-dir", Msg: "no database at " + path}
	}
	st, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return st.VerifyAudit(ctx)
}

// relayDirectory serves the relay's key lookups from the management
// directory in the same database ("all" mode).
type relayDirectory struct{ st *store.Store }

func (d relayDirectory) Ed25519Key(ctx context.Context, userID string) (ed25519.PublicKey, error) {
	e, err := d.st.DirectoryEntry(ctx, store.UserID(userID))
	if err != nil {
		return nil, err
	}
	return crypto.ParseEd25519(e.Ed25519)
}

// relayWaker lets the relay wake a hibernated recipient through the agent role.
type relayWaker struct{ ag *agent.Server }

func (w relayWaker) Wake(ctx context.Context, userID string) error {
	w.ag.Touch(userID) // a relay delivery is real work (SPEC §4)
	_, err := w.ag.WakeChecked(ctx, userID)
	return err
}

// startContainerRelay makes the relay reachable from user containers and
// tells the agent role its URL. With the docker runtime, containers reach
// only the agent network's gateway, so the relay routes alone get a second
// listener there (the management port stays out of their reach). With the
// process runtime, vaults are local processes and use the main listener.
func startContainerRelay(ctx context.Context, cfg config.Config, drv runtime.Driver, rl *relay.Server, ag *agent.Server, mainAddr string, bodyDeadline time.Duration, log *slog.Logger, m *metrics.Registry, serveErr chan<- error) (*http.Server, error) {
	d, ok := drv.(*docker.Driver)
	if !ok {
		ag.SetRelayURL("ws://" + mainAddr + "/relay/v1/connect")
		return nil, nil
	}
	gw, err := d.Gateway(ctx)
	if err != nil {
		return nil, fmt.Errorf("relay listener: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, fmt.Sprint(cfg.RelayPort)))
	if err != nil {
		return nil, &config.Error{Setting: "relay-port", Msg: fmt.Sprintf("cannot listen on %s:%d for containers: %v", gw, cfg.RelayPort, errors.Unwrap(err))}
	}
	e := web.New(log, false)
	web.Observe(e, log, m, slog.LevelInfo)
	rl.Routes(e.Group("/relay/v1"))
	srv := web.NewServer(e, bodyDeadline, log)
	srv.Addr = ln.Addr().String() // for the readiness check
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	}()
	url := "ws://" + ln.Addr().String() + "/relay/v1/connect"
	ag.SetRelayURL(url)
	log.Info("relay listening for containers", "addr", ln.Addr().String())
	return srv, nil
}

// remoteWaker wakes recipients through a separate agent role.
type remoteWaker struct{ ac *api.AgentClient }

func (w remoteWaker) Wake(ctx context.Context, userID string) error {
	if err := w.ac.Touch(ctx, userID); err != nil { // a relay delivery is real work (SPEC §4)
		return err
	}
	return w.ac.Provision(ctx, userID) // provisions or wakes
}
