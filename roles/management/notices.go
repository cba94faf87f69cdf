package management

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
)

// grantsSeen handles POST /api/v1/me/grants/seen: every grant the caller
// received counts as seen (no longer "new"); grants of other users are
// untouched. 200 {"seen": <how many were new>}.
func (s *Server) grantsSeen(c echo.Context) error {
	n, err := s.st.MarkPeerGrantsSeen(c.Request().Context(), currentUser(c).ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int{"seen": n})
}

// userSettings is the body of GET and PUT /api/v1/me/settings.
type userSettings struct {
	// ShareMail: mail me when someone shares with me or stops sharing.
	// Required in a PUT.
	ShareMail *bool `json:"shareMail"`
}

// settings handles GET /api/v1/me/settings → {"shareMail":bool}.
func (s *Server) settings(c echo.Context) error {
	on, err := s.st.ShareMail(c.Request().Context(), currentUser(c).ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, userSettings{ShareMail: &on})
}

// putSettings handles PUT /api/v1/me/settings {"shareMail":bool} → the
// settings as stored. Only a real change is audited (settings.changed).
func (s *Server) putSettings(c echo.Context) error {
	var req userSettings
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if req.ShareMail == nil {
		return api.BadRequest("invalid_settings", "shareMail must be true or false")
	}
	u := currentUser(c)
	ctx := c.Request().Context()
	changed, err := s.st.SetShareMail(ctx, u.ID, *req.ShareMail)
	if err != nil {
		return err
	}
	if changed { // a PUT of the value already set is no change to audit
		s.audit(ctx, string(u.ID), "settings.changed", string(u.ID), map[string]string{"shareMail": strconv.FormatBool(*req.ShareMail)})
	}
	return c.JSON(http.StatusOK, req)
}
