// Package relay is the relay role: the zero-knowledge store-and-forward
// service between containers (SPEC §7.2). So far it only reports its health;
// envelopes, revocation and wake-on-request come with the sharing work.
package relay

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Server is the relay role.
type Server struct{}

// New returns a relay server.
func New() *Server { return &Server{} }

// Routes mounts the relay's routes on g (conventionally "/relay/v1").
func (s *Server) Routes(g *echo.Group) {
	g.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
}
