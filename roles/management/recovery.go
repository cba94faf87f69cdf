package management

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/mail"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
)

// Social recovery, management side (issue 10, item 2; SPEC §6).
//
// Setup: the browser resolves the contacts' addresses in the directory
// (POST /api/v1/me/recovery/contacts → "resolved":[{"userId","email",
// "signed":{"record","sig"}}]) and sends them to its vault:
//
//	PUT /api/v1/me/agent/vault/ways/social {"threshold":3,"resolved":[…]}
//
// The vault verifies each record again; on its 200 management records the
// split's metadata (threshold, epoch, contact ids) so that contacts can be
// shown the owner's requests. DELETE …/vault/ways/social forgets it, and
// so does a recovery request started when the vault no longer has a
// social wrap (after "sign out all devices").
//
// Recovery, below /api/v1/me/recovery (signed-in user; JSON):
//
//	POST   /requests {"publicKey":"<b64 32-byte one-time X25519 key>"}
//	       → 201 {"id","status":"open","createdAt","expiresAt","threshold","contacts":[emails],"code"}
//	GET    /requests/{id} → {"id","status","createdAt","expiresAt","threshold","approvals","approvedBy":[emails],
//	                         "code","sealedShares":[b64…]}  (sealedShares only while open)
//	DELETE /requests/{id} → 204 (cancels; the sealed shares are deleted)
//	GET    /inbox → {"requests":[{"id","ownerEmail","createdAt","expiresAt","approved"}]}
//	POST   /inbox/{id}/approve {"code"} → 200 {"approvals","threshold"}
//
// A request lives 72 h (recoveryTTL); starting one is audited
// (recovery.requested) and mailed to the owner, so a stolen session cannot
// recover silently (each contact is mailed too, in words, without the
// code); an owner has at most one open request. "code" is the
// request's 6-digit safety code (crypto.SocialSafetyCode of its one-time
// key), shown only to the owner: a contact approves by typing the code the
// owner reads to them, so an approval is tied to the request the owner
// sees, and a contact cannot approve without talking to them (400
// wrong_code otherwise; attempts count against the caller's lookup rate
// limit). Approving makes
// the contact's own vault (which must be unlocked) open its held share and
// seal it again to the request's one-time key (POST
// /vault/social/held/{owner}/release, reachable only this way): management
// stores that sealed share and never holds a key that opens it. The
// owner's browser rebuilds the secret from ≥ threshold of them and calls
// POST …/vault/recovery/reset {"kind":"social","requestId",…}; management
// lets a "social" unlock or reset through only for an open, unexpired
// request of the caller, strips "requestId", and closes the request as
// completed when the vault accepts it. Expired, cancelled and completed
// requests refuse approvals and completion, and their sealed shares are
// deleted.

// recoveryTTL is how long a recovery request stays open.
const recoveryTTL = 72 * time.Hour

func (s *Server) recoveryRoutes(me *echo.Group) {
	me.POST("/recovery/contacts", s.resolveContacts)
	me.POST("/recovery/requests", s.startRecovery)
	me.GET("/recovery/requests/:id", s.recoveryStatus)
	me.DELETE("/recovery/requests/:id", s.cancelRecovery)
	me.GET("/recovery/inbox", s.recoveryInbox)
	me.POST("/recovery/inbox/:id/approve", s.approveRecovery)
}

// emailOf returns a user's address, or "" when unknown.
func (s *Server) emailOf(ctx context.Context, id store.UserID) string {
	if u, err := s.st.UserByID(ctx, id); err == nil {
		return u.Email
	}
	return ""
}

// errRecoveryRequestGone and friends are the answers about a request that
// cannot be used any more.
func errRecoveryExpired() error {
	return api.E(http.StatusGone, "recovery_request_expired", "this recovery request has expired; start a new one")
}

func errRecoveryClosed() error {
	return api.Conflict("recovery_request_closed", "this recovery request was completed or cancelled")
}

func (s *Server) startRecovery(c echo.Context) error {
	u := currentUser(c)
	var req struct {
		PublicKey string `json:"publicKey"`
	}
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	pk, err := base64.StdEncoding.Strict().DecodeString(req.PublicKey)
	if err != nil || len(pk) != 32 {
		return api.BadRequest("invalid_public_key", "publicKey must be the standard base64 of a 32-byte X25519 key")
	}
	if err := crypto.CheckX25519Public((*[32]byte)(pk)); err != nil {
		return api.BadRequest("invalid_public_key", "publicKey is not a usable X25519 key")
	}
	if !s.lookupByUser.allow(string(u.ID)) {
		return api.TooMany("too many recovery requests; wait a minute")
	}
	ctx := c.Request().Context()
	setup, err := s.st.SocialSetupOf(ctx, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return api.E(http.StatusNotFound, "no_trusted_contacts", "you have no trusted contacts set up, so they cannot help you back in")
	} else if err != nil {
		return err
	}
	// The vault's header is the truth: after "sign out all devices" (or a
	// restore of an older backup) there may be no social wrap left.
	if has, err := s.vaultHasWrap(ctx, u.ID, crypto.WrapSocial); err != nil {
		return err
	} else if !has {
		if err := s.st.DeleteSocialSetup(ctx, u.ID); err != nil {
			s.log.Error("delete social setup", "err", err)
		}
		return api.E(http.StatusNotFound, "no_trusted_contacts", "your vault has no trusted contacts set up any more, so they cannot help you back in")
	}
	now := s.now()
	r := store.RecoveryRequest{ID: store.NewID("rec"), Owner: u.ID, PublicKey: req.PublicKey, Threshold: setup.Threshold,
		Epoch: setup.Epoch, CreatedAt: now, ExpiresAt: now.Add(recoveryTTL), Status: store.RecoveryOpen}
	if err := s.st.CreateRecoveryRequest(ctx, r); err != nil {
		return err
	}
	bg := context.WithoutCancel(ctx)
	s.audit(bg, string(u.ID), "recovery.requested", string(u.ID), map[string]string{"request": r.ID,
		"threshold": strconv.Itoa(setup.Threshold), "contacts": strconv.Itoa(len(setup.Contacts)), "ip": c.RealIP()})
	s.mailRecoveryStarted(bg, *u, r, c.RealIP())
	emails := []string{}
	for _, id := range setup.Contacts {
		emails = append(emails, s.emailOf(ctx, id))
		s.mailContactAsked(bg, *u, id, r)
	}
	return c.JSON(http.StatusCreated, map[string]any{"id": r.ID, "status": store.RecoveryOpen, "createdAt": r.CreatedAt,
		"expiresAt": r.ExpiresAt, "threshold": r.Threshold, "contacts": emails, "code": crypto.SocialSafetyCode(pk)})
}

// mailRecoveryStarted queues the mail telling the owner that a recovery
// of their vault started (never blocks, never fails the caller).
func (s *Server) mailRecoveryStarted(ctx context.Context, u store.User, r store.RecoveryRequest, ip string) {
	link := s.opt.PublicURL + "/#vault"
	var b strings.Builder
	fmt.Fprintf(&b, "Someone signed in as you started a recovery of your ocmt vault with your trusted contacts\n")
	fmt.Fprintf(&b, "on %s (from %s).\n\n", r.CreatedAt.UTC().Format("2 January 2006 at 15:04 UTC"), ip)
	fmt.Fprintf(&b, "If it was you, there is nothing to do: ask %d of your trusted contacts, in person, to approve it.\n", r.Threshold)
	fmt.Fprintf(&b, "If it was not you, sign in, cancel the request in Vault & keys, and tell your contacts not to approve it.\n")
	fmt.Fprintf(&b, "The request ends by itself on %s.\n", r.ExpiresAt.UTC().Format("2 January 2006 at 15:04 UTC"))
	id, err := s.opt.Outbox.Enqueue(ctx, mail.KindRecovery, mail.Message{To: u.Email, Subject: "A recovery of your ocmt vault was started",
		Body: b.String(), Link: link, ShowBody: true}, time.Time{})
	if err != nil {
		s.log.Error("recovery mail not queued", "user", u.ID, "err", err)
		return
	}
	s.log.Info("recovery mail queued", "mail", id, "user", u.ID)
}

// mailWayChanged tells the owner that a way into their vault was added
// or their password was reset, so that a stolen session cannot add a
// lasting way in (or take the vault over) without them hearing of it.
// what is the way ("recovery phrase", "passkey", …); reset says which.
func (s *Server) mailWayChanged(ctx context.Context, u store.User, what string, reset bool, ip string) {
	now := s.now().UTC().Format("2 January 2006 at 15:04 UTC")
	subject := "A new way into your ocmt vault was added"
	body := fmt.Sprintf("Someone signed in as you added a %s as a way into your ocmt vault on %s (from %s).\n\n", what, now, ip)
	if reset {
		subject = "The password of your ocmt vault was reset"
		body = fmt.Sprintf("Someone signed in as you set a new password for your ocmt vault with your %s on %s (from %s); the old password no longer opens it.\n\n", what, now, ip)
	}
	body += "If it was you, there is nothing to do.\n" +
		"If it was not you, sign in now: in Vault & keys, remove what you do not recognise under Ways back in, " +
		"change your password with \"Sign out all devices\", and sign out your other sessions.\n"
	id, err := s.opt.Outbox.Enqueue(ctx, mail.KindRecovery, mail.Message{To: u.Email, Subject: subject, Body: body,
		Link: s.opt.PublicURL + "/#vault", ShowBody: true}, time.Time{})
	if err != nil {
		s.log.Error("way mail not queued", "user", u.ID, "err", err)
		return
	}
	s.log.Info("way mail queued", "mail", id, "user", u.ID)
}

// mailContactAsked tells a contact that the owner asks for their help,
// at most once per owner and contact in 10 minutes (the share mails'
// guard), without a code: the owner must tell it to them.
func (s *Server) mailContactAsked(ctx context.Context, owner store.User, contact store.UserID, r store.RecoveryRequest) {
	if ok, _ := s.noticeGuard.allow(owner.ID, contact, "recovery", s.now()); !ok {
		return
	}
	to, err := s.st.UserByID(ctx, contact)
	if err != nil {
		s.log.Error("recovery contact mail recipient", "recipient", contact, "err", err)
		return
	}
	link := s.opt.PublicURL + "/#vault"
	body := fmt.Sprintf("%s asks you to help unlock their ocmt vault: they chose you as a trusted contact and lost their password.\n\n"+
		"Only approve if they asked you in person (or on a call you trust). They will read you a 6-digit code to type in\n"+
		"Vault & keys → \"Someone asks for your help\". If they did not ask you, do not approve, and tell them.\n"+
		"The request ends by itself on %s.\n", owner.Email, r.ExpiresAt.UTC().Format("2 January 2006 at 15:04 UTC"))
	id, err := s.opt.Outbox.Enqueue(ctx, mail.KindRecovery, mail.Message{To: to.Email, Subject: owner.Email + " asks you to help unlock their ocmt vault",
		Body: body, Link: link, ShowBody: true}, time.Time{})
	if err != nil {
		s.log.Error("recovery contact mail not queued", "recipient", contact, "err", err)
		return
	}
	s.log.Info("recovery contact mail queued", "mail", id, "owner", owner.ID, "recipient", contact)
}

// ownRequest loads request id of the signed-in owner; another user's is
// the same 404 as a missing one.
func (s *Server) ownRequest(c echo.Context) (store.RecoveryRequest, error) {
	r, err := s.st.RecoveryRequestByID(c.Request().Context(), c.Param("id"))
	if errors.Is(err, store.ErrNotFound) || err == nil && r.Owner != currentUser(c).ID {
		return r, api.NotFound("no such recovery request")
	}
	return r, err
}

func (s *Server) recoveryStatus(c echo.Context) error {
	r, err := s.ownRequest(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	status := r.Effective(s.now())
	by, sealed := []string{}, []string{}
	for _, a := range r.Approvals {
		by = append(by, s.emailOf(ctx, a.Contact))
		if status == store.RecoveryOpen && len(a.SealedShare) > 0 {
			sealed = append(sealed, base64.StdEncoding.EncodeToString(a.SealedShare))
		}
	}
	pk, _ := base64.StdEncoding.DecodeString(r.PublicKey)
	return c.JSON(http.StatusOK, map[string]any{"id": r.ID, "status": status, "createdAt": r.CreatedAt, "expiresAt": r.ExpiresAt,
		"threshold": r.Threshold, "approvals": len(r.Approvals), "approvedBy": by, "code": crypto.SocialSafetyCode(pk), "sealedShares": sealed})
}

func (s *Server) cancelRecovery(c echo.Context) error {
	r, err := s.ownRequest(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	switch err := s.st.CloseRecoveryRequest(ctx, r.ID, store.RecoveryCancelled); {
	case err == nil:
		s.audit(context.WithoutCancel(ctx), string(r.Owner), "recovery.cancelled", string(r.Owner), map[string]string{"request": r.ID})
	case errors.Is(err, store.ErrExpired), errors.Is(err, store.ErrConflict):
	default:
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) recoveryInbox(c echo.Context) error {
	u := currentUser(c)
	ctx := c.Request().Context()
	rs, err := s.st.RecoveryRequestsFor(ctx, u.ID)
	if err != nil {
		return err
	}
	out := []map[string]any{}
	for _, r := range rs {
		approved := false
		for _, a := range r.Approvals {
			approved = approved || a.Contact == u.ID
		}
		out = append(out, map[string]any{"id": r.ID, "ownerEmail": s.emailOf(ctx, r.Owner), "createdAt": r.CreatedAt,
			"expiresAt": r.ExpiresAt, "approved": approved})
	}
	return c.JSON(http.StatusOK, map[string]any{"requests": out})
}

func (s *Server) approveRecovery(c echo.Context) error {
	u := currentUser(c)
	ctx := c.Request().Context()
	var in struct {
		Code string `json:"code"`
	}
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, 4<<10)).Decode(&in); err != nil {
		return api.BadRequest("invalid_json", `send {"code":"<the 6 digits they read to you>"}`)
	}
	if !s.lookupByUser.allow(string(u.ID)) {
		return api.TooMany("too many approvals; wait a minute")
	}
	notFound := api.NotFound("no such recovery request")
	r, err := s.st.RecoveryRequestByID(ctx, c.Param("id"))
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	} else if err != nil {
		return err
	}
	setup, err := s.st.SocialSetupOf(ctx, r.Owner)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	isContact := false
	for _, id := range setup.Contacts {
		isContact = isContact || id == u.ID
	}
	if !isContact {
		return notFound // only the owner's contacts may see it
	}
	switch r.Effective(s.now()) {
	case store.RecoveryOpen:
	case store.RecoveryExpired:
		return errRecoveryExpired()
	default:
		return errRecoveryClosed()
	}
	for _, a := range r.Approvals {
		if a.Contact == u.ID {
			return api.Conflict("already_approved", "you already approved this request")
		}
	}
	pk, _ := base64.StdEncoding.DecodeString(r.PublicKey)
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(in.Code)), []byte(crypto.SocialSafetyCode(pk))) != 1 {
		s.audit(context.WithoutCancel(ctx), string(u.ID), "recovery.wrong_code", string(r.Owner), map[string]string{"request": r.ID})
		return api.BadRequest("wrong_code", "this is not the code shown to "+s.emailOf(ctx, r.Owner)+"; ask them to read it to you again")
	}
	// The contact's own vault releases its share, sealed to the request's key.
	body, _ := json.Marshal(map[string]string{"requestId": r.ID, "publicKey": r.PublicKey})
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/vault/social/held/"+string(r.Owner)+"/release", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.agent.Proxy(string(u.ID)).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		// Pass the vault's refusal on (vault_locked with its unlockUrl,
		// no_held_share, …): it carries no secret.
		copyProxiedHeader(c.Response().Header(), rec.Header())
		c.Response().WriteHeader(rec.Code)
		_, err := c.Response().Write(rec.Body.Bytes())
		return err
	}
	var ans struct {
		SealedShare []byte `json:"sealedShare"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || len(ans.SealedShare) == 0 || len(ans.SealedShare) > 4<<10 {
		return api.Unavailable("vault_answer", "your vault gave an unexpected answer; try again", err)
	}
	switch err := s.st.AddRecoveryApproval(ctx, r.ID, u.ID, ans.SealedShare); {
	case errors.Is(err, store.ErrExpired):
		return errRecoveryExpired()
	case errors.Is(err, store.ErrConflict):
		return errRecoveryClosed()
	case errors.Is(err, store.ErrUsed):
		return api.Conflict("already_approved", "you already approved this request")
	case err != nil:
		return err
	}
	s.audit(context.WithoutCancel(ctx), string(u.ID), "recovery.approved", string(r.Owner), map[string]string{"request": r.ID})
	return c.JSON(http.StatusOK, map[string]any{"approvals": len(r.Approvals) + 1, "threshold": r.Threshold})
}

// socialHook is what agentProxy does around one social-recovery call to
// the owner's vault: the request body goes on byte for byte (stream, when
// management had to peek at it), and after runs with the vault's buffered
// answer. Management never rewrites what the browser sends its vault.
type socialHook struct {
	stream     io.Reader // the original body, of its original length, when peeked at; nil = untouched
	after      func(ctx context.Context, status int, answer []byte)
	way        string // unlock, reset and password calls: the way in named by the body (for the audit)
	signOutAll bool   // and whether it asks to remove every other way
}

// vaultHasWrap reports whether the user's vault header has a wrap of the
// given kind (GET /vault/ways, which answers locked too, lists them).
func (s *Server) vaultHasWrap(ctx context.Context, uid store.UserID, kind string) (bool, error) {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, api.VaultWaysPath, nil)
	rec := httptest.NewRecorder()
	s.agent.Proxy(string(uid)).ServeHTTP(rec, req)
	var ways struct {
		Wraps []struct {
			Kind string `json:"kind"`
		} `json:"wraps"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ways) != nil {
		return false, api.Unavailable("vault_unreachable", "your vault could not be asked which ways in it has; try again", fmt.Errorf("GET %s: %d", api.VaultWaysPath, rec.Code))
	}
	for _, w := range ways.Wraps {
		if w.Kind == kind {
			return true, nil
		}
	}
	return false, nil
}

// wayLabel names a way into the vault in words, for mail.
func wayLabel(kind string) string {
	switch kind {
	case crypto.WrapPhrase:
		return "recovery phrase"
	case crypto.WrapBackupKey:
		return "backup key"
	case crypto.WrapSocial:
		return "set of trusted contacts"
	case crypto.WrapPasskey:
		return "passkey"
	}
	return "way in (" + kind + ")"
}

// wayName is the way in for the audit ("" for other calls); nil-safe.
func (h *socialHook) wayName() string {
	if h == nil {
		return ""
	}
	return h.way
}

// signedOutAll reports whether the call asked to remove every other way.
func (h *socialHook) signedOutAll() bool { return h != nil && h.signOutAll }

// forgetWays drops the trusted-contacts setup after a password change or
// reset that signed out all devices (the vault removed its social wrap),
// so that contacts are not asked to help with a split that opens nothing.
func (s *Server) forgetWays(ctx context.Context, u *store.User, h *socialHook) {
	if !h.signedOutAll() {
		return
	}
	if _, err := s.st.SocialSetupOf(ctx, u.ID); err != nil {
		return // none (or unreadable: the next request start checks the vault)
	}
	if err := s.st.DeleteSocialSetup(ctx, u.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("delete social setup", "err", err)
		return
	}
	s.audit(ctx, string(u.ID), "recovery.social_removed", string(u.ID), map[string]string{"why": "sign out all devices"})
}

// maxUnlockBody bounds the unlock, reset and password bodies management
// reads (a few hundred bytes in practice).
const maxUnlockBody = 64 << 10

// socialProxyHook returns the hook for a proxied vault call, nil for calls
// it has nothing to do with, or an error to answer instead of proxying.
func (s *Server) socialProxyHook(c echo.Context, u *store.User, method, inner string) (*socialHook, error) {
	switch {
	case method == http.MethodPost && strings.HasPrefix(inner, "/vault/social/held/"):
		return nil, api.Forbidden("use_recovery_inbox", "approve recovery requests from your recovery inbox")
	case method == http.MethodPut && inner == "/vault/ways/social":
		return s.socialSetupHook(u), nil
	case method == http.MethodDelete && inner == "/vault/ways/social":
		return &socialHook{after: func(ctx context.Context, status int, _ []byte) {
			if status/100 == 2 {
				if err := s.st.DeleteSocialSetup(ctx, u.ID); err != nil {
					s.log.Error("delete social setup", "err", err)
				}
				s.audit(ctx, string(u.ID), "recovery.social_removed", string(u.ID), nil)
			}
		}}, nil
	case method == http.MethodPost && (inner == api.VaultUnlockPath || inner == api.VaultRecoveryResetPath || inner == api.VaultPasswordPath):
		return s.socialUnlockHook(c, u, inner)
	}
	return nil, nil
}

// resolveContacts is POST /api/v1/me/recovery/contacts {"contacts":[email,…]}
// → {"resolved":[{"userId","email","signed":{"record","sig"}}]}: the
// directory's signed key records of the people the caller wants as
// trusted contacts, which the browser passes to its vault in PUT
// /vault/ways/social (the vault checks every signature and subject
// again). Errors: 400 invalid_contacts, invalid_email, contact_unknown
// (no such user, or no vault yet), contact_self, duplicate_contact; 429.
func (s *Server) resolveContacts(c echo.Context) error {
	u := currentUser(c)
	var req struct {
		Contacts []string `json:"contacts"`
	}
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	emails := req.Contacts
	if len(emails) < crypto.SocialMinThreshold || len(emails) > crypto.SocialMaxContacts {
		return api.BadRequest("invalid_contacts", "contacts must list 2 to 10 email addresses")
	}
	if !s.lookupByUser.allow(string(u.ID)) {
		return api.TooMany("too many changes; wait a minute")
	}
	ctx := c.Request().Context()
	type signed struct {
		Record string `json:"record"`
		Sig    string `json:"sig"`
	}
	type resolved struct {
		UserID string `json:"userId"`
		Email  string `json:"email"`
		Signed signed `json:"signed"`
	}
	var out []resolved
	seen := map[store.UserID]bool{}
	for _, raw := range emails {
		email := store.NormalizeEmail(raw)
		if !validEmail(email) {
			return api.BadRequest("invalid_email", "each contact must be one exact email address")
		}
		unknown := &api.Error{Status: http.StatusBadRequest, Code: "contact_unknown",
			Msg: "nobody with a vault has the address " + email + "; ask them to sign in and create their vault first", Extra: map[string]any{"email": email}}
		target, err := s.st.UserByEmail(ctx, email)
		if errors.Is(err, store.ErrNotFound) {
			return unknown
		} else if err != nil {
			return err
		}
		if target.ID == u.ID {
			return api.BadRequest("contact_self", "you cannot be your own trusted contact")
		}
		if seen[target.ID] {
			return api.BadRequest("duplicate_contact", "each trusted contact may appear only once")
		}
		seen[target.ID] = true
		e, err := s.st.DirectoryEntry(ctx, target.ID)
		if errors.Is(err, store.ErrNotFound) {
			return unknown
		} else if err != nil {
			return err
		}
		out = append(out, resolved{UserID: string(target.ID), Email: email, Signed: signed{Record: e.Record, Sig: e.Sig}})
	}
	return c.JSON(http.StatusOK, map[string]any{"resolved": out})
}

// socialSetupHook records the split once the vault has made it (the
// request goes to the vault as the browser sent it).
func (s *Server) socialSetupHook(u *store.User) *socialHook {
	return &socialHook{after: func(ctx context.Context, status int, answer []byte) {
		if status != http.StatusOK {
			return
		}
		var ans struct {
			Social struct {
				Threshold int   `json:"threshold"`
				Epoch     int64 `json:"epoch"`
				Contacts  []struct {
					UserID string `json:"userId"`
				} `json:"contacts"`
			} `json:"social"`
		}
		if err := json.Unmarshal(answer, &ans); err != nil {
			s.log.Error("social setup answer", "err", err)
			return
		}
		ss := store.SocialSetup{Owner: u.ID, Threshold: ans.Social.Threshold, Epoch: ans.Social.Epoch}
		for _, ct := range ans.Social.Contacts {
			ss.Contacts = append(ss.Contacts, store.UserID(ct.UserID))
		}
		if err := s.st.PutSocialSetup(ctx, ss); err != nil {
			s.log.Error("record social setup", "err", err)
			return
		}
		s.audit(ctx, string(u.ID), "recovery.social_configured", string(u.ID), map[string]string{
			"threshold": strconv.Itoa(ss.Threshold), "contacts": strconv.Itoa(len(ss.Contacts)), "epoch": strconv.FormatInt(ss.Epoch, 10)})
	}}
}

// socialUnlockHook lets a "social" unlock or reset through only with the
// id of an open, unexpired request of the caller ("requestId", which the
// vault accepts and ignores), and completes the request when the vault
// accepts it.
// Other kinds pass untouched.
func (s *Server) socialUnlockHook(c echo.Context, u *store.User, inner string) (*socialHook, error) {
	// The body is read whole (it is small) and decoded with the decoder
	// the vault uses, so that both see the same "kind" whatever the
	// spelling (encoding/json matches names case-insensitively and keeps
	// the last of repeated names).
	raw, err := io.ReadAll(io.LimitReader(c.Request().Body, maxUnlockBody+1))
	if err != nil {
		return nil, api.BadRequest("invalid_json", "request body could not be read")
	}
	if len(raw) > maxUnlockBody {
		return nil, api.E(http.StatusRequestEntityTooLarge, "too_large", "the request body is too large")
	}
	var meta struct {
		Kind       string `json:"kind"`
		RequestID  string `json:"requestId"`
		SignOutAll bool   `json:"signOutAll"`
	}
	_ = json.Unmarshal(raw, &meta) // a body the vault cannot read either is refused there
	passOn := &socialHook{stream: bytes.NewReader(raw), way: meta.Kind, signOutAll: meta.SignOutAll}
	if meta.Kind == "" {
		passOn.way = crypto.WrapPassword
	}
	if !strings.EqualFold(meta.Kind, crypto.WrapSocial) {
		return passOn, nil
	}
	id := meta.RequestID
	ctx := c.Request().Context()
	r, err := s.st.RecoveryRequestByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && r.Owner != u.ID {
		return nil, api.BadRequest("no_recovery_request", "a recovery with your trusted contacts needs the id of your open recovery request")
	} else if err != nil {
		return nil, err
	}
	switch r.Effective(s.now()) {
	case store.RecoveryOpen:
	case store.RecoveryExpired:
		return nil, errRecoveryExpired()
	default:
		return nil, errRecoveryClosed()
	}
	passOn.after = func(ctx context.Context, status int, _ []byte) {
		if status/100 != 2 {
			return
		}
		if err := s.st.CloseRecoveryRequest(ctx, r.ID, store.RecoveryCompleted); err != nil {
			s.log.Error("complete recovery request", "request", r.ID, "err", err)
		}
		s.audit(ctx, string(u.ID), "recovery.completed", string(u.ID), map[string]string{"request": r.ID, "via": strings.TrimPrefix(inner, "/vault/")})
	}
	return passOn, nil
}
