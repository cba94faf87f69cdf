package management

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
)

// agentStatus handles GET /api/v1/me/agent.
func (s *Server) agentStatus(c echo.Context) error {
	st, err := s.agent.Status(c.Request().Context(), string(currentUser(c).ID))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// agentProvision handles POST /api/v1/me/agent: 202, provisioning or waking.
func (s *Server) agentProvision(c echo.Context) error {
	u := currentUser(c)
	if err := s.agent.Provision(c.Request().Context(), string(u.ID)); err != nil {
		return err
	}
	s.audit(c.Request().Context(), string(u.ID), "agent.provision_requested", string(u.ID), nil)
	return c.NoContent(http.StatusAccepted)
}

// agentProxy handles /api/v1/me/agent/* by forwarding to the caller's own
// container at path /*. WebSocket upgrades must come from our own origin.
func (s *Server) agentProxy(c echo.Context) error {
	r := c.Request()
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		o := r.Header.Get("Origin")
		if o == "" || !s.sameOrigin(o, r) {
			return api.Forbidden("origin_refused", "WebSocket connections must come from this site")
		}
	}
	inner := "/" + c.Param("*")
	if strings.Contains(inner, "..") {
		return api.BadRequest("invalid_path", "invalid path")
	}
	r2 := r.Clone(r.Context())
	r2.URL = &url.URL{Path: inner, RawQuery: r.URL.RawQuery}
	r2.RequestURI = ""
	s.agent.Proxy(string(currentUser(c).ID)).ServeHTTP(c.Response(), r2)
	return nil
}
