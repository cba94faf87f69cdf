// Package vault is the vault role, which runs inside each user's container.
// For now it serves its health and a diagnostic WebSocket echo, and refuses
// every request that does not carry the per-container secret; the
// zero-knowledge vault itself (SPEC §5) builds on this server.
package vault

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/web"
)

// Server is the vault role's HTTP server.
type Server struct {
	secret  []byte
	version string
	log     *slog.Logger
	started time.Time
}

// New returns a vault server that accepts only requests carrying secret in
// the api.ContainerSecretHeader header.
func New(secret, version string, log *slog.Logger) *Server {
	return &Server{secret: []byte(secret), version: version, log: log, started: time.Now()}
}

// Handler returns the vault's routes on a fresh echo instance.
func (s *Server) Handler() http.Handler {
	e := web.New(s.log, false)
	e.Use(s.requireSecret)
	e.GET("/healthz", s.healthz)
	e.GET("/ws/echo", s.echo)
	return e
}

func (s *Server) requireSecret(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		got := []byte(c.Request().Header.Get(api.ContainerSecretHeader))
		if subtle.ConstantTimeCompare(got, s.secret) != 1 {
			return api.Unauthorized("this endpoint only answers its agent proxy")
		}
		return next(c)
	}
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
	conn, err := websocket.Accept(c.Response(), c.Request(), nil)
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
