package management

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/store"
)

func (s *Server) adminUsers(c echo.Context) error {
	us, err := s.st.Users(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]api.User, 0, len(us))
	for _, u := range us {
		out = append(out, apiUser(u))
	}
	return c.JSON(http.StatusOK, map[string]any{"users": out})
}

// adminInvite handles POST /api/v1/admin/users {"email"}: mails an
// invitation link that creates the account when used. 202.
func (s *Server) adminInvite(c echo.Context) error {
	var req api.InviteRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	email := store.NormalizeEmail(req.Email)
	if !validEmail(email) {
		return api.BadRequest("invalid_email", "enter a valid email address")
	}
	ctx := c.Request().Context()
	purpose, target, status := store.PurposeInvite, "", "invited"
	if u, err := s.st.UserByEmail(ctx, email); err == nil {
		purpose, target, status = store.PurposeSignIn, string(u.ID), "signin_link_sent"
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := s.sendLink(ctx, email, purpose, s.opt.MagicLinkTTL); err != nil {
		return err
	}
	admin := currentUser(c)
	s.audit(ctx, string(admin.ID), "admin.invite", target, map[string]string{"email": email})
	return c.JSON(http.StatusAccepted, map[string]string{"status": status})
}

// adminMail handles GET /api/v1/admin/mail: api.AdminMail (never a body
// or a link).
func (s *Server) adminMail(c echo.Context) error {
	ctx := c.Request().Context()
	rows, err := s.st.OutboxList(ctx, 200)
	if err != nil {
		return err
	}
	counts, err := s.st.MailCounts(ctx)
	if err != nil {
		return err
	}
	out := api.AdminMail{Mail: make([]api.AdminMailItem, 0, len(rows)),
		Counts: api.MailCounts{Queued: counts[store.MailQueued], Sent: counts[store.MailSent], Failed: counts[store.MailFailed]}}
	for _, m := range rows {
		it := api.AdminMailItem{ID: m.ID, To: m.To, Subject: m.Subject, Kind: m.Kind, State: m.State, Attempts: m.Attempts,
			LastError: m.LastError, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt}
		if m.State == store.MailQueued {
			it.NextAttemptAt = m.NextAt
		}
		out.Mail = append(out.Mail, it)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) adminContainers(c echo.Context) error {
	ctx := c.Request().Context()
	list, err := s.agent.List(ctx)
	if err != nil {
		return err
	}
	us, err := s.st.Users(ctx)
	if err != nil {
		return err
	}
	emails := map[string]string{}
	for _, u := range us {
		emails[string(u.ID)] = u.Email
	}
	out := make([]api.AdminContainer, 0, len(list))
	for _, st := range list {
		st.Progress = nil
		out = append(out, api.AdminContainer{AgentStatus: st, Email: emails[st.UserID]})
	}
	return c.JSON(http.StatusOK, map[string]any{"containers": out})
}

func (s *Server) adminContainerAction(c echo.Context) error {
	ctx := c.Request().Context()
	uid, action := c.Param("user"), c.Param("action")
	switch action {
	case api.ActionPause, api.ActionStop, api.ActionWake, api.ActionRepair:
	default:
		return api.BadRequest("invalid_action", "unknown action; accepted: pause, stop, wake, repair")
	}
	if _, err := s.st.UserByID(ctx, store.UserID(uid)); errors.Is(err, store.ErrNotFound) {
		return api.NotFound("no such user")
	} else if err != nil {
		return err
	}
	if err := s.agent.Do(ctx, uid, action); err != nil {
		return err
	}
	s.audit(ctx, "admin:"+string(currentUser(c).ID), "admin.container_"+action, uid, nil)
	return c.NoContent(http.StatusNoContent)
}

// auditList handles GET /api/v1/audit: the caller's events (admins: all),
// newest first. Query: action (exact or "prefix."), limit, before (seq).
func (s *Server) auditList(c echo.Context) error {
	u := currentUser(c)
	f := store.AuditFilter{Action: c.QueryParam("action")}
	if !u.Admin || c.QueryParam("mine") == "1" {
		f.About = u.ID
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return api.BadRequest("invalid_limit", "limit must be a positive integer")
		}
		f.Limit = n
	}
	if v := c.QueryParam("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return api.BadRequest("invalid_before", "before must be a positive integer")
		}
		f.Before = n
	}
	evs, err := s.st.AuditEvents(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := make([]api.AuditEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, api.AuditEvent{Seq: e.Seq, TS: e.TS, Actor: e.Actor, Action: e.Action, Target: e.Target, Detail: e.Detail})
	}
	return c.JSON(http.StatusOK, map[string]any{"events": out})
}
