package management

import (
	"net/http"

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
			return s.render(c, http.StatusNotFound, "message", "Not found", map[string]string{
				"heading": "Page not found", "message": "There is nothing here.", "link-href": "/", "link-text": "Back to my agent",
			})
		}
		return s.render(c, http.StatusOK, "admin", "Admin", nil)
	})
}
