// Package management is the management role: accounts, magic-link sign-in,
// sessions, CSRF protection, the audit log, the admin API, the embedded web
// UI, and the browser-facing proxy to each user's container (through the
// agent role's api.Agent). It holds identity and metadata, never secrets.
package management

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/mail"
	"github.com/ocmt/ocmt/metrics"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
)

// Cookie names (SPEC §11).
const (
	SessionCookie = "ocmt_session"
	CSRFCookie    = "ocmt_csrf"
	CSRFHeader    = "X-CSRF-Token"
	CSRFFormField = "_csrf"
)

// Options configure a Server.
type Options struct {
	Store *store.Store
	Agent api.Agent
	// Outbox queues sign-in, invitation and share mail (its worker runs
	// elsewhere: roles.Run).
	Outbox       *mail.Outbox
	Log          *slog.Logger
	PublicURL    string // without trailing slash
	SessionTTL   time.Duration
	MagicLinkTTL time.Duration
	Version      string
	Roles        []string
	Now          func() time.Time // nil = time.Now
	// ServiceSecret, when set, opens the service-to-service directory
	// route for a separate relay role.
	ServiceSecret string
	// Metrics, if set, counts refused vault unlocks (the vault's answers
	// pass through agentProxy).
	Metrics *metrics.Registry
}

// Server is the management role.
type Server struct {
	opt     Options
	st      *store.Store
	agent   api.Agent
	log     *slog.Logger
	now     func() time.Time
	csrfKey []byte
	secure  bool
	origin  web.Origin // of PublicURL: the one origin browsers may send (web.Origin.Matches)

	signinByIP    *limiter
	signinByEmail *limiter
	verifyByIP    *limiter
	unlockByUser  *limiter
	lookupByUser  *limiter

	vaultBackupByUser *limiter // backups and restores (vaultbackup.go)

	noticeGuard *noticeGuard       // limits share mails
	signins     chan signinRequest // sign-in requests waiting for runSignins

	tied sessionRequests // requests and sockets in flight, by session
}

// New makes the management role. Sign-in requests are handled in the
// background until ctx ends.
func New(ctx context.Context, opt Options) (*Server, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	key, err := opt.Store.GetOrCreateKV(ctx, "management.csrf-key", func() []byte {
		b := make([]byte, 32)
		rand.Read(b)
		return b
	})
	if err != nil {
		return nil, err
	}
	origin, ok := web.ParseOrigin(opt.PublicURL)
	if !ok {
		return nil, fmt.Errorf("management: public URL %q is not an http(s) URL", opt.PublicURL)
	}
	s := &Server{
		opt: opt, st: opt.Store, agent: opt.Agent, log: opt.Log, now: opt.Now, csrfKey: key,
		secure: strings.HasPrefix(strings.ToLower(opt.PublicURL), "https:"), origin: origin,
		// Sign-in: 5 links per address per 15 min, 30 requests per client IP per 15 min.
		signinByEmail: newLimiter(rate.Every(3*time.Minute), 5),
		signinByIP:    newLimiter(rate.Every(30*time.Second), 30),
		verifyByIP:    newLimiter(rate.Every(6*time.Second), 20),
		unlockByUser:  newLimiter(rate.Every(3*time.Second), 20),
		lookupByUser:  newLimiter(rate.Every(6*time.Second), 30),
		noticeGuard:   newNoticeGuard(),
		signins:       make(chan signinRequest, signinQueue),
	}
	s.vaultBackupByUser = newLimiter(rate.Every(6*time.Second), 10)
	go s.runSignins(ctx)
	go s.runSessionSweep(ctx)
	return s, nil
}

// Routes mounts every management route on e.
func (s *Server) Routes(e *echo.Echo) {
	e.Use(noStoreAPI, s.loadSession, s.csrf)
	e.HTTPErrorHandler = s.pageErrors(e.HTTPErrorHandler)
	s.pageRoutes(e)
	e.POST("/api/v1/auth/magic-link", s.magicLink)
	e.GET("/auth/verify", s.verifyPage)
	e.POST("/auth/verify", s.verify)
	e.POST("/api/v1/auth/logout", s.logout)

	me := e.Group("/api/v1/me", s.requireUser)
	me.GET("", s.me)
	me.GET("/agent", s.agentStatus)
	me.POST("/agent", s.agentProvision)
	me.GET("/keys", s.myKeys)
	me.GET("/grants", s.grants)
	me.POST("/grants/seen", s.grantsSeen)
	me.GET("/settings", s.settings)
	me.PUT("/settings", s.putSettings)
	me.Any("/agent/*", s.agentProxy)
	s.vaultBackupRoutes(me)
	s.recoveryRoutes(me)
	e.GET("/api/v1/audit", s.auditList, s.requireUser)
	e.GET("/api/v1/directory", s.directoryLookup, s.requireUser)

	if s.opt.ServiceSecret != "" { // split deployment: a relay role reads the directory
		e.GET("/internal/v1/directory/:user", s.internalDirectory, web.CheckUserParam)
	}

	admin := e.Group("/api/v1/admin", s.requireUser, s.requireAdmin, web.CheckUserParam)
	admin.GET("/users", s.adminUsers)
	admin.POST("/users", s.adminInvite)
	admin.GET("/containers", s.adminContainers)
	admin.GET("/mail", s.adminMail)
	admin.POST("/containers/:user/:action", s.adminContainerAction)
}

// noStoreAPI keeps API answers (personal data) out of caches.
func noStoreAPI(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if strings.HasPrefix(c.Request().URL.Path, "/api/") {
			c.Response().Header().Set("Cache-Control", "no-store")
		}
		return next(c)
	}
}

// --- sessions and CSRF -----------------------------------------------------

// currentUser returns the signed-in user or nil.
func currentUser(c echo.Context) *store.User {
	u, _ := c.Get("user").(*store.User)
	return u
}

// loadSession sets "user" and "session" for a request with a live session
// cookie and ties the request to that session (tieToSession): it ends
// when the session does.
func (s *Server) loadSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ck, err := c.Cookie(SessionCookie)
		if err == nil && ck.Value != "" && len(ck.Value) < 256 {
			u, sess, err := s.st.SessionUser(c.Request().Context(), ck.Value)
			if err == nil && !s.now().Before(sess.ExpiresAt) { // expired by our clock (tests move it)
				err = store.ErrExpired
			}
			if err == nil {
				c.Set("user", &u)
				c.Set("session", ck.Value)
				return s.tieToSession(c, sess, next)
			}
			s.clearCookie(c, SessionCookie)
		}
		return next(c)
	}
}

func (s *Server) requireUser(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if currentUser(c) == nil {
			return api.Unauthorized("sign in first")
		}
		return next(c)
	}
}

func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if u := currentUser(c); u == nil || !u.Admin {
			return api.NotFound("no such route") // admins-only routes do not exist for others
		}
		return next(c)
	}
}

// csrfToken returns a token bound to the session token (or to no session):
// base64url(nonce ‖ HMAC-SHA256(key, "csrf\x00" ‖ sessionHash ‖ nonce)[:16]).
func (s *Server) csrfToken(session string) string {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(append(nonce, s.csrfMAC(session, nonce)...))
}

func (s *Server) csrfMAC(session string, nonce []byte) []byte {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("csrf\x00"))
	if session != "" {
		m.Write([]byte(store.TokenHash(session)))
	}
	m.Write(nonce)
	return m.Sum(nil)[:16]
}

func (s *Server) csrfValid(session, tok string) bool {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 32 {
		return false
	}
	return hmac.Equal(b[16:], s.csrfMAC(session, b[:16]))
}

// ensureCSRF returns the request's valid CSRF cookie value, or sets a new one.
func (s *Server) ensureCSRF(c echo.Context) string {
	session, _ := c.Get("session").(string)
	if ck, err := c.Cookie(CSRFCookie); err == nil && s.csrfValid(session, ck.Value) {
		return ck.Value
	}
	return s.setCSRF(c, session)
}

func (s *Server) setCSRF(c echo.Context, session string) string {
	tok := s.csrfToken(session)
	c.SetCookie(&http.Cookie{Name: CSRFCookie, Value: tok, Path: "/", Secure: s.secure, SameSite: http.SameSiteLaxMode})
	return tok
}

// csrf refuses state-changing requests whose CSRF token (header, or form
// field for HTML forms) does not equal the ocmt_csrf cookie or is not bound
// to the caller's session, and any whose Origin is foreign.
func (s *Server) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return next(c)
		}
		// Browsers send "Origin: null" on form posts from pages with
		// Referrer-Policy: no-referrer; the token check below decides then.
		if o := r.Header.Get("Origin"); o != "" && o != "null" && !s.originOK(c, "csrf") {
			return s.formError(c, api.Forbidden("csrf_failed", "cross-origin request refused"))
		}
		ck, err := c.Cookie(CSRFCookie)
		if err != nil || ck.Value == "" {
			return s.formError(c, api.Forbidden("csrf_failed", "missing CSRF cookie; reload the page"))
		}
		got := r.Header.Get(CSRFHeader)
		if got == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			got = c.FormValue(CSRFFormField)
		}
		session, _ := c.Get("session").(string)
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(ck.Value)) != 1 || !s.csrfValid(session, got) {
			return s.formError(c, api.Forbidden("csrf_failed", "missing or invalid CSRF token; reload the page"))
		}
		return next(c)
	}
}

// formError answers an HTML form post with a page instead of JSON.
func (s *Server) formError(c echo.Context, e *api.Error) error {
	if !strings.HasPrefix(c.Request().Header.Get("Content-Type"), "application/x-www-form-urlencoded") || wantsJSON(c) {
		return e
	}
	return s.render(c, e.Status, "message", "Error", map[string]string{
		"heading": "That did not work", "message": e.Msg + ".", "link-href": "/signin", "link-text": "Start again",
	})
}

// originOK reports whether the request's Origin header names the public
// URL's origin (web.Origin.Matches: scheme, host and port; the request's
// Host and X-Forwarded-* headers play no part). A refusal is logged as one
// line of metadata: kind ("csrf", "websocket"), method, path, the Origin
// sent (cut to 100 bytes), client IP and request id; never cookies or
// tokens.
func (s *Server) originOK(c echo.Context, kind string) bool {
	r := c.Request()
	o := r.Header.Get("Origin")
	if s.origin.Matches(o) {
		return true
	}
	if len(o) > 100 {
		o = o[:100]
	}
	s.log.Warn("origin refused", "kind", kind, "method", r.Method, "path", r.URL.Path, "origin", o,
		"want", s.origin.String(), "ip", c.RealIP(), "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
	return false
}

func (s *Server) clearCookie(c echo.Context, name string) {
	c.SetCookie(&http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: name == SessionCookie, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

func (s *Server) audit(ctx context.Context, actor, action, target string, detail map[string]string) {
	if _, err := s.st.Audit(ctx, actor, action, target, detail); err != nil {
		s.log.Error("audit", "action", action, "err", err)
	}
}

// --- rate limits -----------------------------------------------------------

// limiter is a token bucket per key (client IP, email), forgetting keys idle
// for an hour.
type limiter struct {
	mu    sync.Mutex
	every rate.Limit
	burst int
	m     map[string]*entry
	sweep time.Time
}

type entry struct {
	l    *rate.Limiter
	seen time.Time
}

// maxLimiterKeys bounds the memory of one limiter.
const maxLimiterKeys = 50_000

func newLimiter(every rate.Limit, burst int) *limiter {
	return &limiter{every: every, burst: burst, m: map[string]*entry{}}
}

func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.sweep) > 10*time.Minute || len(l.m) >= maxLimiterKeys {
		for k, e := range l.m {
			if now.Sub(e.seen) > time.Hour || len(l.m) >= maxLimiterKeys && now.Sub(e.seen) > time.Minute {
				delete(l.m, k)
			}
		}
		l.sweep = now
		if len(l.m) >= maxLimiterKeys { // still full: refuse new keys rather than grow
			return false
		}
	}
	e := l.m[key]
	if e == nil {
		e = &entry{l: rate.NewLimiter(l.every, l.burst)}
		l.m[key] = e
	}
	e.seen = now
	return e.l.Allow()
}
