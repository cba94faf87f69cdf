// Package vault is the vault role, which runs inside each user's container
// (SPEC §5): the zero-knowledge secret store (unlock in the browser, keys
// only here), sealed transcripts, the agent runtime (chat loop with tools,
// streaming from the model provider), the chat WebSocket (OpenClaw gateway
// protocol v3 subset) and the same tools over MCP.
//
// Every request must carry the per-container secret that the agent role's
// proxy injects (api.ContainerSecretHeader); the vault refuses anything else.
//
// Routes (paths inside the container; the browser reaches them below
// /api/v1/me/agent):
//
//	GET  /healthz            health
//	GET  /ws/echo            diagnostic WebSocket echo
//	     /vault/...          the vault API (SPEC §11)
//	GET  /chat               chat WebSocket (SPEC §5.5)
//	     /mcp                the agent tools over MCP (streamable HTTP)
//	POST /internal/hibernate the agent role, before a stop (hibernate.go)
//	POST /internal/resume    the agent role, after the next start
//	GET  /internal/work      the agent role, before an idle pause (work.go)
//	GET  /internal/stats     the agent role, for its metrics (stats.go)
package vault

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/metrics"
	"github.com/ocmt/ocmt/roles/web"
)

// Options configure a vault Server.
type Options struct {
	Secret    string // per-container secret; required
	Version   string
	Log       *slog.Logger
	DataDir   string           // /data in a container
	PublicURL string           // for unlock links, e.g. "https://ocmt.example.org"
	UserID    string           // owner, for the signed key record
	AutoLock  time.Duration    // 0 = DefaultAutoLock
	Now       func() time.Time // nil = time.Now
	// ProviderHTTP carries model provider requests; nil = a default client.
	ProviderHTTP *http.Client
	// RelayURL is the relay's WebSocket URL (ws(s)://…/relay/v1/connect)
	// for sharing (SPEC §7.2); "" = no relay. The vault connects while
	// unlocked.
	RelayURL string
	// AllowPrivateTargets lets shared resources (capability calls) reach
	// loopback, private and link-local addresses; off by default (SSRF
	// guard, SPEC §7.3).
	AllowPrivateTargets config.PrivateTargets
	// Metrics, if set, counts the capability calls this vault answers
	// (ocmt_capability_calls_total) and its HTTP requests, served by
	// --metrics-listen. Without it the capability calls are still counted
	// for the agent role (GET /internal/stats, stats.go).
	Metrics *metrics.Registry
}

// Server is the vault role's HTTP server.
type Server struct {
	metrics      *metrics.Registry
	secret       []byte
	version      string
	log          *slog.Logger
	started      time.Time
	dataDir      string
	publicURL    string
	userID       string
	keys         *keyring
	transcripts  *transcripts
	hub          *chatHub
	providerHTTP *http.Client
	base         context.Context
	cancel       context.CancelFunc

	// Sharing (capabilities.go, relayclient.go).
	relay        *relayClient // nil without Options.RelayURL
	calls        pendingCalls
	rates        capability.Limiter
	capSkew      atomic.Int64 // tests move the capability clock (ns)
	allowPrivate config.PrivateTargets
	// inflight counts chat runs and capability calls under way (work.go).
	inflight workTracker
	// instance and capCalls answer GET /internal/stats (stats.go).
	instance string
	capCalls capCounts
	// hibernateDeadline is the deadline of the hibernation file on the
	// volume, unix ms; 0 = none (hibernate.go).
	hibernateDeadline atomic.Int64
	// passkeys is the WebAuthn relying party and its pending ceremonies
	// (passkey.go).
	passkeys passkeyState
	// heldReceipts maps a trusted contact's user id to the newest split
	// epoch it confirmed (social.go); guarded by keys.mu, nil until used.
	heldReceipts map[string]uint32
}

// New opens the vault in opt.DataDir (it need not be initialized yet).
func New(opt Options) (*Server, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.AutoLock <= 0 {
		opt.AutoLock = DefaultAutoLock
	}
	if opt.ProviderHTTP == nil {
		opt.ProviderHTTP = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 2 * time.Minute, TLSHandshakeTimeout: 10 * time.Second}}
	}
	k, err := newKeyring(opt.DataDir, opt.Now, opt.AutoLock)
	if err != nil {
		return nil, err
	}
	tr, err := newTranscripts(filepath.Join(opt.DataDir, transcriptDir))
	if err != nil {
		return nil, err
	}
	base, cancel := context.WithCancel(context.Background())
	s := &Server{
		secret: []byte(opt.Secret), version: opt.Version, log: opt.Log, started: time.Now(),
		dataDir: opt.DataDir, publicURL: opt.PublicURL, userID: opt.UserID, keys: k, transcripts: tr,
		hub: newChatHub(), providerHTTP: opt.ProviderHTTP, base: base, cancel: cancel,
		allowPrivate: opt.AllowPrivateTargets, metrics: opt.Metrics, instance: newInstanceID(),
	}
	s.loadHibernateDeadline()
	if opt.RelayURL != "" {
		s.relay = newRelayClient(s, opt.RelayURL)
		k.onOpen = s.relay.kick
	}
	return s, nil
}

// Run locks the vault when its auto-lock time passes, until ctx ends; then
// it stops every chat run and locks.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	if s.relay != nil {
		rdone := make(chan struct{})
		go func() { s.relay.run(ctx); close(rdone) }()
		defer func() { <-rdone }()
	}
	for {
		select {
		case <-ctx.Done():
			s.cancel()
			s.hub.wg.Wait()
			s.keys.mu.Lock()
			s.keys.lockLocked()
			s.keys.mu.Unlock()
			return
		case <-t.C:
			s.keys.mu.Lock()
			wasOpen := s.keys.dek != nil
			s.keys.expireLocked()
			locked := wasOpen && s.keys.dek == nil
			s.keys.mu.Unlock()
			s.dropStaleHibernation()
			if locked {
				s.log.Info("vault auto-locked")
				s.abortAllRuns()
			}
		}
	}
}

// Handler returns the vault's routes.
func (s *Server) Handler() http.Handler {
	e := web.New(s.log, false)
	web.Observe(e, s.log, s.metrics, slog.LevelDebug) // the agent proxy logs these requests
	e.Use(s.requireSecret)
	e.GET("/healthz", s.healthz)
	probes := web.Probes{Checks: []web.Check{{Name: "data_dir", Func: s.checkDataDir}}, Log: s.log}
	probes.Routes(e)
	e.GET("/ws/echo", s.echo)
	e.GET("/chat", s.chat)
	s.vaultRoutes(e.Group("/vault"))
	s.lifecycleRoutes(e.Group("/internal"))
	mcp := echo.WrapHandler(s.mcpHandler())
	e.Any("/mcp", mcp)
	e.Any("/mcp/*", mcp)
	return e
}

func (s *Server) requireSecret(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.secretOK(c.Request().Header.Get(api.ContainerSecretHeader)) {
			return api.Unauthorized("this endpoint only answers its agent proxy")
		}
		return next(c)
	}
}

// secretOK compares a header value with the container secret in constant time.
func (s *Server) secretOK(got string) bool {
	return len(s.secret) > 0 && subtle.ConstantTimeCompare([]byte(got), s.secret) == 1
}

// checkDataDir is the vault's readiness: its data directory is there.
func (s *Server) checkDataDir(ctx context.Context) error {
	_, err := os.Stat(s.dataDir)
	return err
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{
		"status": "ok", "roles": []string{"vault"}, "version": s.version,
		"uptimeSeconds": int64(time.Since(s.started).Seconds()),
	})
}

// echo is a diagnostic WebSocket that sends every message back. It proves
// the proxy path (queueing, wake, close reasons) end to end.
func (s *Server) echo(c echo.Context) error {
	conn, err := websocket.Accept(c.Response(), c.Request(), &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return nil
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	ctx := c.Request().Context()
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return nil
		}
		if err := conn.Write(ctx, typ, data); err != nil {
			return nil
		}
	}
}

func jsonMarshal(v any) ([]byte, error)   { return json.Marshal(v) }
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
func knownProvider(p string) bool         { return p == "anthropic" || p == "openai" }
func validBaseURL(u string) bool          { return baseURLOK(u) }
