package management

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/mail"
	"github.com/ocmt/ocmt/ui"
)

func (s *Server) pageRoutes(e *echo.Echo) {
	e.GET("/static/*", echo.WrapHandler(ui.Assets()))
	e.GET("/", func(c echo.Context) error {
		if currentUser(c) == nil {
			return c.Redirect(http.StatusSeeOther, "/signin")
		}
		return s.render(c, http.StatusOK, "app", "My agent", nil)
	})
	e.GET("/signin", func(c echo.Context) error {
		if currentUser(c) != nil {
			return c.Redirect(http.StatusSeeOther, "/")
		}
		return s.render(c, http.StatusOK, "signin", "Sign in", map[string]string{"link-ttl": mail.DurationWords(s.opt.MagicLinkTTL)})
	})
	e.GET("/admin", func(c echo.Context) error {
		u := currentUser(c)
		if u == nil {
			return c.Redirect(http.StatusSeeOther, "/signin")
		}
		if !u.Admin {
			return s.notFoundPage(c)
		}
		return s.render(c, http.StatusOK, "admin", "Admin", nil)
	})
}

// notFoundPage renders the styled "Page not found" page with a link home.
func (s *Server) notFoundPage(c echo.Context) error {
	return s.render(c, http.StatusNotFound, "message", "Not found", map[string]string{
		"heading": "Page not found", "message": "There is nothing here.", "link-href": "/", "link-text": "Back to my agent",
	})
}

// pageErrors wraps next so that a browser navigation to an unknown path
// gets the styled "Page not found" page instead of the JSON error body.
// API clients (a path under /api/, or an Accept header without text/html)
// keep next's JSON answer.
func (s *Server) pageErrors(next echo.HTTPErrorHandler) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		var he *echo.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusNotFound && !c.Response().Committed && wantsPage(c.Request()) {
			if rerr := s.notFoundPage(c); rerr == nil {
				return
			}
		}
		next(err, c)
	}
}

// wantsPage reports whether r is a browser navigation: a GET or HEAD outside
// /api/ whose Accept header asks for HTML.
func wantsPage(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/internal/") {
		return false
	}
	return strings.Contains(r.Header.Get(echo.HeaderAccept), "text/html")
}
