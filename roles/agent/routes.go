package agent

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/web"
)

// ServiceHeader carries the per-deployment service secret on calls from the
// management role to a separate agent role.
const ServiceHeader = api.AgentServiceHeader

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

// Routes mounts the agent role's service API on g (conventionally
// "/internal/v1/agent"), every route guarded by the service secret; a
// :user that store.ParseUserID refuses is answered with 400
// invalid_user_id (any method) before the handler runs:
//
//	GET  /containers                         → {"containers":[AgentStatus]}
//	GET  /containers/:user                   → AgentStatus
//	POST /containers/:user                   → 202 (provision or wake)
//	POST /containers/:user/activity          → 204 (real work happened, e.g. a relay delivery)
//	POST /containers/:user/actions/:action   → 204
//	ANY  /containers/:user/proxy/*           → the container, at path /*
func (s *Server) Routes(g *echo.Group, serviceSecret string) {
	g.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			got := c.Request().Header.Get(ServiceHeader)
			if serviceSecret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(serviceSecret)) != 1 {
				return api.Unauthorized("missing or wrong service secret")
			}
			return next(c)
		}
	})
	g.Use(web.CheckUserParam) // every :user route: 400 invalid_user_id first
	g.GET("/containers", func(c echo.Context) error {
		l, err := s.List(c.Request().Context())
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"containers": l})
	})
	g.GET("/containers/:user", func(c echo.Context) error {
		st, err := s.Status(c.Request().Context(), c.Param("user"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, st)
	})
	g.POST("/containers/:user", func(c echo.Context) error {
		if err := s.Provision(c.Request().Context(), c.Param("user")); err != nil {
			return err
		}
		return c.NoContent(http.StatusAccepted)
	})
	g.POST("/containers/:user/activity", func(c echo.Context) error {
		s.Touch(c.Param("user"))
		return c.NoContent(http.StatusNoContent)
	})
	g.POST("/containers/:user/actions/:action", func(c echo.Context) error {
		if err := s.Do(c.Request().Context(), c.Param("user"), c.Param("action")); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
	g.Any("/containers/:user/proxy/*", func(c echo.Context) error {
		r := c.Request()
		r.Header.Del(ServiceHeader)
		ctx := r.Context()
		if id := r.Header.Get(api.StreamHeader); validStreamID(id) {
			var cancel context.CancelCauseFunc
			ctx, cancel = context.WithCancelCause(ctx)
			if _, dup := s.streams.LoadOrStore(id, cancel); dup {
				cancel(nil)
				return api.Conflict("stream_exists", "a stream with this id is open")
			}
			defer func() {
				s.streams.Delete(id)
				cancel(nil)
			}()
		}
		r.Header.Del(api.StreamHeader)
		r2 := r.Clone(ctx)
		r2.URL.Path = "/" + c.Param("*")
		r2.URL.RawPath = ""
		s.Proxy(c.Param("user")).ServeHTTP(c.Response(), r2)
		return nil
	})
	g.POST("/streams/:id/close", func(c echo.Context) error {
		var req struct {
			Reason string `json:"reason"`
		}
		if err := web.Bind(c, &req); err != nil {
			return err
		}
		switch req.Reason {
		case api.CloseReasonSignedOut, api.CloseReasonExpired, api.CloseReasonEnded:
		default:
			return api.BadRequest("invalid_reason", "reason must be one of the api.CloseReason values")
		}
		v, ok := s.streams.LoadAndDelete(c.Param("id"))
		if !ok {
			return api.NotFound("no such stream")
		}
		v.(context.CancelCauseFunc)(&api.SessionEnded{Reason: req.Reason})
		return c.NoContent(http.StatusNoContent)
	})
}

// validStreamID reports whether id looks like an api.StreamHeader id: 16
// to 64 characters of [0-9a-f].
func validStreamID(id string) bool {
	if len(id) < 16 || len(id) > 64 {
		return false
	}
	return strings.Trim(id, "0123456789abcdef") == ""
}
