package management

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	ocmail "github.com/ocmt/ocmt/mail"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/ui"
)

// newToken returns 32 random bytes, base64url (43 characters).
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenShape reports whether t looks like a token from newToken, so that
// malformed links are told apart before any lookup.
func tokenShape(t string) bool {
	if len(t) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(t)
	return err == nil
}

// validEmail accepts a bare address (no display name), at most 254 bytes.
func validEmail(e string) bool { return web.ValidEmail(e) }

func (s *Server) linkURL(token string) string {
	return s.opt.PublicURL + "/auth/verify?token=" + token
}

// magicLink handles POST /api/v1/auth/magic-link {"email"}: 202 with the
// same body whether or not the account exists and whether or not mail
// works (a different answer would tell who has an account). The request
// only validates, rate-limits and hands the address to runSignins; only
// existing accounts get a link, queued in the outbox.
func (s *Server) magicLink(c echo.Context) error {
	var req api.MagicLinkRequest
	form := strings.HasPrefix(c.Request().Header.Get("Content-Type"), "application/x-www-form-urlencoded")
	if form { // the sign-in page without JavaScript
		req.Email = c.FormValue("email")
	} else if err := bindJSON(c, &req); err != nil {
		return err
	}
	email := store.NormalizeEmail(req.Email)
	if !validEmail(email) {
		if form {
			return s.render(c, http.StatusBadRequest, "message", "Sign in", map[string]string{
				"heading": "That is not an email address", "message": "Enter the address your account uses.",
				"link-href": "/signin", "link-text": "Try again"})
		}
		return api.BadRequest("invalid_email", "enter a valid email address")
	}
	if !s.signinByIP.allow(c.RealIP()) || !s.signinByEmail.allow(email) {
		return api.TooMany("too many sign-in requests; wait a few minutes and try again")
	}
	select {
	case s.signins <- signinRequest{email: email, ip: c.RealIP()}:
	default:
		s.log.Warn("sign-in request dropped: queue full", "ip", c.RealIP())
	}
	if form {
		return s.render(c, http.StatusAccepted, "message", "Sign in", map[string]string{
			"heading": "Check your inbox", "message": "If that address has an account, a sign-in link is on its way (or on the server console)."})
	}
	return c.JSON(http.StatusAccepted, map[string]string{"status": "sent_if_account_exists"})
}

// signinQueue bounds the sign-in requests waiting for runSignins; more
// are dropped (the answer is the same 202; the rate limits make this rare).
const signinQueue = 256

// signinRequest is a sign-in request waiting for runSignins.
type signinRequest struct{ email, ip string }

// runSignins handles sign-in requests off the request path until ctx
// ends: an existing account gets a link queued in the outbox and an
// auth.link_requested audit event; an unknown address gets nothing.
func (s *Server) runSignins(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.signins:
			u, err := s.st.UserByEmail(ctx, r.email)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err == nil {
				err = s.sendLink(ctx, u.Email, store.PurposeSignIn, s.opt.MagicLinkTTL)
			}
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("sign-in link not queued", "err", err)
				}
				continue
			}
			s.audit(ctx, string(u.ID), "auth.link_requested", string(u.ID), map[string]string{"ip": r.ip})
		}
	}
}

// sendLink stores a magic link valid for ttl and queues its mail in the
// outbox, expiring with the link (it is never sent after). It does not
// wait for the mail server; errors are the database's.
func (s *Server) sendLink(ctx context.Context, email, purpose string, ttl time.Duration) error {
	tok := newToken()
	if err := s.st.CreateMagicLink(ctx, tok, email, purpose, ttl); err != nil {
		return err
	}
	link := s.linkURL(tok)
	subject, kind, what := "Sign-in link", ocmail.KindSignIn, "sign in to ocmt"
	if purpose == store.PurposeInvite {
		subject, kind, what = "Invitation link", ocmail.KindInvite, "create your ocmt account"
	}
	msg := ocmail.Message{To: email, Subject: subject, Link: link,
		Body: "Open this link to " + what + " (valid for " + ocmail.DurationWords(ttl) + ", single use):\n\n" + link +
			"\n\nIf you did not ask for it, ignore this mail.\n"}
	if _, err := s.opt.Outbox.Enqueue(ctx, kind, msg, s.now().Add(ttl)); err != nil {
		return err
	}
	return nil
}

// BootstrapLink makes the first start's sign-in link (no users yet): whoever
// opens it names the first account, which becomes admin. It returns "" once
// any user exists.
func (s *Server) BootstrapLink(ctx context.Context, ttl time.Duration) (string, error) {
	n, err := s.st.UserCount(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	tok := newToken()
	if err := s.st.CreateMagicLink(ctx, tok, "", store.PurposeBootstrap, ttl); err != nil {
		return "", err
	}
	return s.linkURL(tok), nil
}

// linkProblem renders the page for a link that cannot be used.
func (s *Server) linkProblem(c echo.Context, err error) error {
	heading, msg := "This link is not valid", "The sign-in link is incomplete or malformed. Copy the whole link from the mail, or ask for a new one."
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, store.ErrExpired):
		heading, msg, status = "This link has expired", "Sign-in links are valid for "+ocmail.DurationWords(s.opt.MagicLinkTTL)+". Ask for a new one.", http.StatusGone
	case errors.Is(err, store.ErrUsed):
		heading, msg, status = "This link was already used", "Each sign-in link works once. If that was not you, ask for a new link; nobody else can reuse it.", http.StatusGone
	case errors.Is(err, store.ErrNotFound):
		heading, msg, status = "This link is not valid", "We do not know this sign-in link. Ask for a new one.", http.StatusNotFound
	case errors.Is(err, store.ErrConflict):
		heading, msg, status = "This server already has an administrator", "The first-start link is no longer valid. Ask the administrator for an invitation.", http.StatusGone
	}
	if wantsJSON(c) {
		code := map[int]string{http.StatusGone: "link_unusable", http.StatusNotFound: "link_unknown", http.StatusBadRequest: "link_malformed"}[status]
		return api.E(status, code, heading)
	}
	return s.render(c, status, "message", "Sign in", map[string]string{
		"heading": heading, "message": msg, "link-href": "/signin", "link-text": "Request a new link",
	})
}

// verifyPage handles GET /auth/verify?token=: a page with a Continue button.
// It neither consumes the token nor sets a session (mail scanners fetch
// links before people click them).
func (s *Server) verifyPage(c echo.Context) error {
	tok := c.QueryParam("token")
	if !tokenShape(tok) {
		return s.linkProblem(c, errMalformed)
	}
	l, err := s.st.PeekMagicLink(c.Request().Context(), tok)
	if err != nil {
		return s.linkProblem(c, err)
	}
	return s.render(c, http.StatusOK, "verify", "Sign in", map[string]string{
		"token": tok, "purpose": l.Purpose, "email": l.Email,
	})
}

var errMalformed = errors.New("malformed link")

// verify handles POST /auth/verify with token (form or JSON): it consumes the
// link exactly once, sets ocmt_session and starts provisioning the user's
// agent; then 303 to / (form) or 200 {"user"} (JSON).
func (s *Server) verify(c echo.Context) error {
	if !s.verifyByIP.allow(c.RealIP()) {
		return api.TooMany("too many attempts; wait a minute and try again")
	}
	var req struct {
		Token string `json:"token" form:"token"`
		Email string `json:"email" form:"email"`
	}
	if strings.HasPrefix(c.Request().Header.Get("Content-Type"), "application/json") {
		if err := bindJSON(c, &req); err != nil {
			return err
		}
	} else {
		req.Token, req.Email = c.FormValue("token"), c.FormValue("email")
	}
	if !tokenShape(req.Token) {
		return s.linkProblem(c, errMalformed)
	}
	ctx := c.Request().Context()
	l, err := s.st.PeekMagicLink(ctx, req.Token)
	if err != nil {
		return s.linkProblem(c, err)
	}
	if l.Purpose == store.PurposeBootstrap {
		req.Email = store.NormalizeEmail(req.Email)
		if !validEmail(req.Email) {
			if wantsJSON(c) {
				return api.BadRequest("invalid_email", "enter a valid email address")
			}
			return s.render(c, http.StatusBadRequest, "verify", "Sign in", map[string]string{
				"token": req.Token, "purpose": l.Purpose, "error": "Enter a valid email address.",
			})
		}
	}
	u, err := s.st.ConsumeMagicLink(ctx, req.Token, req.Email)
	if err != nil {
		return s.linkProblem(c, err)
	}
	sess := newToken()
	if _, err := s.st.CreateSession(ctx, sess, u.ID, s.opt.SessionTTL); err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: sess, Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(s.opt.SessionTTL.Seconds())})
	c.Set("session", sess)
	s.setCSRF(c, sess)
	s.audit(ctx, string(u.ID), "auth.signin", string(u.ID), map[string]string{"ip": c.RealIP(), "via": l.Purpose})
	if err := s.agent.Provision(ctx, string(u.ID)); err != nil {
		s.log.Warn("provision at sign-in failed", "user", u.ID, "err", err)
	}
	if wantsJSON(c) {
		return c.JSON(http.StatusOK, map[string]any{"user": apiUser(u)})
	}
	return c.Redirect(http.StatusSeeOther, "/")
}

// logout handles POST /api/v1/auth/logout: the session is deleted, and its
// requests and sockets still open are ended (sockets close with
// api.StatusSessionEnded, "signed out").
func (s *Server) logout(c echo.Context) error {
	if sess, ok := c.Get("session").(string); ok {
		ctx := context.WithoutCancel(c.Request().Context()) // ending the session ends this request's context too
		if err := s.st.DeleteSession(ctx, sess); err != nil {
			return err
		}
		if u := currentUser(c); u != nil {
			s.audit(ctx, string(u.ID), "auth.signout", string(u.ID), nil)
			s.lockVaultAfterSignOut(u.ID)
		}
		s.endSession(store.TokenHash(sess), api.CloseReasonSignedOut)
	}
	s.clearCookie(c, SessionCookie)
	s.setCSRF(c, "")
	return c.NoContent(http.StatusNoContent)
}

// lockVaultAfterSignOut locks the user's vault (POST /vault/lock in their
// container, which also drops a hibernation key) after they sign out, in
// the background so that signing out answers at once. A user without a
// container is left alone; a paused or stopped one is woken for it, since
// its vault would otherwise come back unlocked. Signing out on one device
// locks the vault for the user's other sessions too.
func (s *Server) lockVaultAfterSignOut(uid store.UserID) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		st, err := s.agent.Status(ctx, string(uid))
		if err != nil || st.State == api.StateNone {
			return
		}
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, api.VaultLockPath, nil)
		rec := httptest.NewRecorder()
		s.agent.Proxy(string(uid)).ServeHTTP(rec, req)
		if rec.Code/100 != 2 {
			s.log.Warn("vault not locked after sign-out", "user", uid, "status", rec.Code)
			return
		}
		s.log.Info("vault locked after sign-out", "user", uid)
	}()
}

func (s *Server) me(c echo.Context) error {
	return c.JSON(http.StatusOK, apiUser(*currentUser(c)))
}

func apiUser(u store.User) api.User {
	return api.User{ID: string(u.ID), Email: u.Email, Admin: u.Admin, CreatedAt: u.CreatedAt}
}

func wantsJSON(c echo.Context) bool {
	r := c.Request()
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") ||
		strings.Contains(r.Header.Get("Accept"), "application/json")
}

// bindJSON decodes a JSON body, answering 400 without quoting the input.
func bindJSON(c echo.Context, v any) error {
	if !strings.HasPrefix(c.Request().Header.Get("Content-Type"), "application/json") {
		return api.E(http.StatusUnsupportedMediaType, "unsupported_media_type", "send JSON (Content-Type: application/json)")
	}
	return web.Bind(c, v)
}

func (s *Server) render(c echo.Context, status int, page, title string, data map[string]string) error {
	p := ui.Page{Title: title, CSRF: s.ensureCSRF(c), Data: data}
	if u := currentUser(c); u != nil {
		p.User = &ui.User{ID: string(u.ID), Email: u.Email, Admin: u.Admin}
	}
	return ui.Render(c.Response(), status, page, p)
}
