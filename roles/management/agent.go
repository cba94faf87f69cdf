package management

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
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
// container at path /*. WebSocket upgrades (web.IsWebSocket) must come from
// our own origin; other upgrades are not passed on.
// Unlock attempts are rate limited per user here too (the vault also backs
// off). Successful vault changes are audited as metadata (which provider,
// never the key), and a newly created vault's signed public keys are
// fetched into the directory.
func (s *Server) agentProxy(c echo.Context) error {
	r := c.Request()
	u := currentUser(c)
	uid := string(u.ID)
	ws := web.IsWebSocket(r)
	if ws && !s.originOK(c, "websocket") {
		return api.Forbidden("origin_refused", "WebSocket connections must come from this site")
	}
	inner := "/" + c.Param("*")
	if strings.Contains(inner, "..") || strings.Contains(inner, "//") {
		return api.BadRequest("invalid_path", "invalid path")
	}
	// Not passkey unlocks: their key is a 256-bit HKDF output and every
	// attempt needs the authenticator's signature on a fresh challenge, so
	// there is nothing to guess; the vault's backoff still counts failures.
	if r.Method == http.MethodPost && (inner == api.VaultUnlockPath || inner == api.VaultPasswordPath || inner == api.VaultRecoveryResetPath) && !s.unlockByUser.allow(uid) {
		return api.TooMany("too many unlock attempts; wait a minute")
	}
	r2 := r.Clone(r.Context())
	r2.URL = &url.URL{Path: inner, RawQuery: r.URL.RawQuery}
	r2.RequestURI = ""
	if ws { // one spelling for the hops behind: a reverse proxy wants the upgrade it asked for answered
		r2.Header.Set("Connection", "Upgrade")
		r2.Header.Set("Upgrade", "websocket")
	} else {
		web.DropUpgrade(r2.Header)
	}
	var grant *shareGrant
	if r.Method == http.MethodPost && inner == "/vault/capabilities" {
		body, g, err := s.withSubject(c, u)
		if err != nil {
			return err
		}
		grant = g
		r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		r2.Header.Del("Transfer-Encoding")
	}
	hook, err := s.socialProxyHook(c, u, r.Method, inner) // recovery.go
	if err != nil {
		return err
	}
	if hook != nil && hook.stream != nil {
		r2.Body = io.NopCloser(hook.stream)
	}
	h := s.agent.Proxy(uid)
	if r.Method == http.MethodGet && inner == "/vault/capabilities" {
		return s.withIssuerEmails(c, h, r2, "capabilities")
	}
	if r.Method == http.MethodGet && inner == "/vault/apikeys" {
		return s.withIssuerEmails(c, h, r2, "shared")
	}
	rec := &statusRecorder{ResponseWriter: c.Response(), status: http.StatusOK}
	if ws {
		h.ServeHTTP(c.Response(), r2)
		return nil
	}
	if grant != nil || hook != nil { // buffer the small answer to learn the jti (never the token)
		buf := httptest.NewRecorder()
		h.ServeHTTP(buf, r2)
		copyProxiedHeader(c.Response().Header(), buf.Header())
		rec.WriteHeader(buf.Code)
		rec.Write(buf.Body.Bytes())
		if hook != nil && hook.after != nil {
			hook.after(context.WithoutCancel(r.Context()), buf.Code, buf.Body.Bytes())
		}
		var ans struct {
			JTI string `json:"jti"`
		}
		if grant != nil && buf.Code == http.StatusCreated && json.Unmarshal(buf.Body.Bytes(), &ans) == nil && ans.JTI != "" {
			grant.JTI = ans.JTI
			ctx := context.WithoutCancel(r.Context())
			if g, ok := s.recordGrant(ctx, u.ID, *grant); ok {
				s.notifyShare(ctx, noticeShared, *u, g)
			}
		}
	} else {
		h.ServeHTTP(rec, r2)
	}
	// A passkey unlock's answer is complete: send it before the audit write
	// below, so the unlock does not wait for the database (its p95 doubled
	// otherwise). Other answers wait: callers may read what follows them
	// (published keys, audit events) right after.
	if r.Method == http.MethodPost && inner == api.VaultPasskeyUnlockPath {
		_ = http.NewResponseController(c.Response()).Flush()
	}
	ctx := context.WithoutCancel(r.Context())
	if r.Method == http.MethodPost && (inner == api.VaultUnlockPath || inner == api.VaultRecoveryResetPath || inner == api.VaultPasskeyUnlockPath) && (rec.status == http.StatusUnauthorized || rec.status == http.StatusTooManyRequests) {
		s.audit(ctx, uid, "vault.unlock_failed", uid, map[string]string{"status": fmt.Sprint(rec.status), "ip": c.RealIP(), "path": inner, "way": hook.wayName()})
		if rec.status == http.StatusUnauthorized { // wrong password or proof; 429 is the vault's backoff
			s.opt.Metrics.VaultUnlockFailed()
		}
	}
	if rec.status < 200 || rec.status > 299 {
		return nil
	}
	switch {
	case r.Method == http.MethodPost && inner == "/vault/init":
		s.audit(ctx, uid, "vault.created", uid, nil)
		if err := s.publishKeys(ctx, u.ID); err != nil {
			s.log.Error("publish keys", "user", uid, "err", err)
		}
	case r.Method == http.MethodPut && strings.HasPrefix(inner, "/vault/apikeys/"):
		s.audit(ctx, uid, "vault.provider_configured", uid, map[string]string{"provider": strings.TrimPrefix(inner, "/vault/apikeys/")})
	case r.Method == http.MethodPut && inner == "/vault/default-provider":
		s.audit(ctx, uid, "vault.chat_provider_chosen", uid, nil)
	case r.Method == http.MethodDelete && strings.HasPrefix(inner, "/vault/apikeys/"):
		s.audit(ctx, uid, "vault.provider_removed", uid, map[string]string{"provider": strings.TrimPrefix(inner, "/vault/apikeys/")})
	case grant != nil:
		s.audit(ctx, uid, "sharing.granted", string(grant.Subject), grant.auditDetail())
	case r.Method == http.MethodDelete && strings.HasPrefix(inner, "/vault/capabilities/"):
		// Audited (about the subject, like sharing.granted) and mailed only
		// by the call that revoked the grant: the vault answers 204 again
		// for one already revoked. A grant management never recorded (or
		// could not look up) is audited about the issuer alone, as it
		// cannot tell whom it was for or whether it was revoked before.
		jti := strings.TrimPrefix(inner, "/vault/capabilities/")
		g, revoked, err := s.st.RevokePeerGrant(ctx, u.ID, jti)
		switch {
		case err != nil:
			if !errors.Is(err, store.ErrNotFound) {
				s.log.Error("record revocation", "err", err)
			}
			s.audit(ctx, uid, "sharing.revoked", uid, map[string]string{"jti": jti})
		case revoked:
			s.audit(ctx, uid, "sharing.revoked", string(g.SubjectID), map[string]string{"jti": jti, "resource": g.Resource})
			s.notifyShare(ctx, noticeStopped, *u, g)
		}
	case r.Method == http.MethodPut && strings.HasPrefix(inner, "/vault/integrations/"):
		s.audit(ctx, uid, "vault.integration_configured", uid, map[string]string{"name": strings.TrimPrefix(inner, "/vault/integrations/")})
	case r.Method == http.MethodDelete && strings.HasPrefix(inner, "/vault/integrations/"):
		s.audit(ctx, uid, "vault.integration_removed", uid, map[string]string{"name": strings.TrimPrefix(inner, "/vault/integrations/")})
	case r.Method == http.MethodPost && inner == api.VaultUnlockPath:
		s.audit(ctx, uid, "vault.unlocked", uid, map[string]string{"way": hook.wayName()})
	case r.Method == http.MethodPost && inner == api.VaultLockPath:
		s.audit(ctx, uid, "vault.locked", uid, nil)
	case r.Method == http.MethodPost && inner == api.VaultPasswordPath:
		s.audit(ctx, uid, "vault.password_changed", uid, map[string]string{"signOutAll": fmt.Sprint(hook.signedOutAll())})
		s.forgetWays(ctx, u, hook)
	case r.Method == http.MethodPost && inner == api.VaultRecoveryResetPath:
		s.audit(ctx, uid, "vault.password_reset", uid, map[string]string{"ip": c.RealIP(), "way": hook.wayName(), "signOutAll": fmt.Sprint(hook.signedOutAll())})
		s.forgetWays(ctx, u, hook)
		s.mailWayChanged(ctx, *u, wayLabel(hook.wayName()), true, c.RealIP())
	case r.Method == http.MethodPut && strings.HasPrefix(inner, api.VaultWaysPath+"/"):
		kind := strings.TrimPrefix(inner, api.VaultWaysPath+"/")
		s.audit(ctx, uid, "vault.way_added", uid, map[string]string{"kind": kind})
		s.mailWayChanged(ctx, *u, wayLabel(kind), false, c.RealIP())
	case r.Method == http.MethodDelete && strings.HasPrefix(inner, api.VaultWaysPath+"/"):
		s.audit(ctx, uid, "vault.way_removed", uid, map[string]string{"kind": strings.TrimPrefix(inner, api.VaultWaysPath+"/")})
	case r.Method == http.MethodPost && inner == api.VaultPasskeyUnlockPath:
		s.audit(ctx, uid, "vault.unlocked", uid, map[string]string{"way": "passkey"})
	case r.Method == http.MethodPost && inner == api.VaultPasskeyRegisterPath:
		s.audit(ctx, uid, "vault.way_added", uid, map[string]string{"kind": "passkey"})
		s.mailWayChanged(ctx, *u, wayLabel(crypto.WrapPasskey), false, c.RealIP())
	case r.Method == http.MethodDelete && strings.HasPrefix(inner, api.VaultPasskeysPath+"/"):
		s.audit(ctx, uid, "vault.way_removed", uid, map[string]string{"kind": "passkey", "id": strings.TrimPrefix(inner, api.VaultPasskeysPath+"/")})
	}
	return nil
}

// publishKeys fetches the container's signed key record and stores it in
// the directory after checking the signature and that its subject is the
// user whose container answered.
func (s *Server) publishKeys(ctx context.Context, user store.UserID) error {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/vault/identity", nil)
	rec := httptest.NewRecorder()
	s.agent.Proxy(string(user)).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return errors.New("container did not return its identity")
	}
	var sr crypto.SignedKeyRecord
	if err := json.NewDecoder(io.LimitReader(rec.Body, 16<<10)).Decode(&sr); err != nil {
		return err
	}
	kr, err := crypto.VerifyKeyRecord(sr)
	if err != nil {
		return err
	}
	if kr.Subject != string(user) {
		return errors.New("key record names another subject")
	}
	if err := s.st.PutDirectoryEntry(ctx, store.DirectoryEntry{UserID: user, Ed25519: kr.Ed25519, X25519: kr.X25519, Record: sr.Record, Sig: sr.Sig}); err != nil {
		return err
	}
	s.audit(ctx, string(user), "directory.keys_published", string(user), map[string]string{"ed25519": kr.Ed25519})
	return nil
}

// myKeys handles GET /api/v1/me/keys: the caller's published public keys.
func (s *Server) myKeys(c echo.Context) error {
	e, err := s.st.DirectoryEntry(c.Request().Context(), currentUser(c).ID)
	if errors.Is(err, store.ErrNotFound) {
		return api.NotFound("no keys published yet; create your vault first")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"ed25519": e.Ed25519, "x25519": e.X25519, "publishedAt": e.PublishedAt,
		"signed": map[string]string{"record": e.Record, "sig": e.Sig}})
}

// directoryLookup handles GET /api/v1/directory?email=: another user's
// published public keys, by exact address only (no listing, no prefix
// search). Unknown addresses and users without keys get the same 404, and
// lookups are rate limited per caller, so the directory cannot be used to
// probe which addresses have accounts.
func (s *Server) directoryLookup(c echo.Context) error {
	u := currentUser(c)
	if !s.lookupByUser.allow(string(u.ID)) {
		return api.TooMany("too many directory lookups; wait a minute")
	}
	email := store.NormalizeEmail(c.QueryParam("email"))
	if !validEmail(email) {
		return api.BadRequest("invalid_email", "give one exact email address")
	}
	ctx := c.Request().Context()
	notFound := api.NotFound("nobody with published keys has that address")
	target, err := s.st.UserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	} else if err != nil {
		return err
	}
	e, err := s.st.DirectoryEntry(ctx, target.ID)
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	} else if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"userId": e.UserID, "ed25519": e.Ed25519, "x25519": e.X25519,
		"signed": map[string]string{"record": e.Record, "sig": e.Sig}})
}

// shareGrant is the metadata of one share request as management records
// and audits it (never the token), decoded from the request body with the
// vault's types; the vault validates the values and management records
// them only once the vault has issued the capability.
type shareGrant struct {
	JTI       string // set once the vault answered 201
	Subject   store.UserID
	Resource  string   // "calendar", "provider:anthropic"
	Scope     []string // operations: read, list, write, delete
	ExpiresIn int64    // seconds
	MaxCalls  int      // 0 = no limit
	Approval  bool     // the user approved a request of their agent
}

// auditDetail is the sharing.granted audit detail: plain values (scope
// comma-separated; maxCalls and approval only when set).
func (g shareGrant) auditDetail() map[string]string {
	d := map[string]string{"jti": g.JTI, "subject": string(g.Subject), "resource": g.Resource,
		"scope": strings.Join(g.Scope, ","), "expiresIn": strconv.FormatInt(g.ExpiresIn, 10)}
	if g.MaxCalls > 0 {
		d["maxCalls"] = strconv.Itoa(g.MaxCalls)
	}
	if g.Approval {
		d["approval"] = "true"
	}
	return d
}

// withSubject reads a capability request ({"subjectEmail",...}), looks the
// subject up in the directory and returns the body with "subject" set to
// the directory's verified record, which the vault checks again. It also
// returns the grant's metadata for recording and the audit log.
func (s *Server) withSubject(c echo.Context, u *store.User) ([]byte, *shareGrant, error) {
	var req map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, 64<<10)).Decode(&req); err != nil {
		return nil, nil, api.BadRequest("invalid_json", "request body is not valid JSON of the expected shape")
	}
	var email string
	_ = json.Unmarshal(req["subjectEmail"], &email)
	email = store.NormalizeEmail(email)
	if !validEmail(email) {
		return nil, nil, api.BadRequest("invalid_email", "subjectEmail must be one exact email address")
	}
	if !s.lookupByUser.allow(string(u.ID)) {
		return nil, nil, api.TooMany("too many sharing requests; wait a minute")
	}
	ctx := c.Request().Context()
	unknown := api.E(http.StatusBadRequest, "subject_unknown", "nobody with a vault has that address; ask them to sign in and create their vault first")
	target, err := s.st.UserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, unknown
	} else if err != nil {
		return nil, nil, err
	}
	if target.ID == u.ID {
		return nil, nil, api.BadRequest("subject_self", "you cannot share with yourself")
	}
	e, err := s.st.DirectoryEntry(ctx, target.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, unknown
	} else if err != nil {
		return nil, nil, err
	}
	sub, _ := json.Marshal(map[string]any{"userId": target.ID, "signed": map[string]string{"record": e.Record, "sig": e.Sig}})
	req["subject"] = sub
	body, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	// Values of another type are left zero here; the vault refuses them.
	grant := &shareGrant{Subject: target.ID}
	_ = json.Unmarshal(req["resource"], &grant.Resource)
	_ = json.Unmarshal(req["scope"], &grant.Scope)
	_ = json.Unmarshal(req["expiresIn"], &grant.ExpiresIn)
	_ = json.Unmarshal(req["maxCalls"], &grant.MaxCalls)
	var approvalID string
	grant.Approval = json.Unmarshal(req["approvalId"], &approvalID) == nil && approvalID != ""
	return body, grant, nil
}

// withIssuerEmails answers a GET from the container (GET
// /vault/capabilities, list "capabilities"; GET /vault/apikeys, list
// "shared"), adding to each entry of the named top-level list that has an
// issuerUserId the issuer's email as issuerEmail (identity is the
// management role's business; the vault knows only user ids). Other fields
// pass through unchanged, and so does any answer that is not a 200 JSON
// object.
func (s *Server) withIssuerEmails(c echo.Context, h http.Handler, r *http.Request, list string) error {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var body map[string]json.RawMessage
	var items []map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil || json.Unmarshal(body[list], &items) != nil || items == nil {
		copyProxiedHeader(c.Response().Header(), rec.Header())
		c.Response().WriteHeader(rec.Code)
		_, err := c.Response().Write(rec.Body.Bytes())
		return err
	}
	ctx := c.Request().Context()
	for _, it := range items {
		if id, ok := it["issuerUserId"].(string); ok && id != "" {
			if u, err := s.st.UserByID(ctx, store.UserID(id)); err == nil {
				it["issuerEmail"] = u.Email
			}
		}
	}
	b, err := json.Marshal(items)
	if err != nil {
		return err
	}
	body[list] = b
	return c.JSON(http.StatusOK, body)
}

// recordGrant stores the peer-grant metadata of a new capability and
// returns it; ok is false if it could not be stored.
func (s *Server) recordGrant(ctx context.Context, issuer store.UserID, sg shareGrant) (g store.PeerGrant, ok bool) {
	g = store.PeerGrant{JTI: sg.JTI, IssuerID: issuer, SubjectID: sg.Subject, Resource: sg.Resource, Scope: sg.Scope,
		MaxCalls: sg.MaxCalls, ExpiresAt: s.now().Add(time.Duration(sg.ExpiresIn) * time.Second)}
	if err := s.st.PutPeerGrant(ctx, g); err != nil {
		s.log.Error("record grant", "err", err)
		return g, false
	}
	return g, true
}

// grants handles GET /api/v1/me/grants: the caller's shares as the
// management role knows them (metadata only): {"issued":[…],"received":[…]}.
// maxCalls is left out for a share without a call limit. A received entry
// that is active and that the caller has not yet seen in the app carries
// "new": true (see store.PeerGrant.New).
func (s *Server) grants(c echo.Context) error {
	u := currentUser(c)
	ctx := c.Request().Context()
	now := s.now()
	out := map[string]any{}
	for _, issued := range []bool{true, false} {
		gs, err := s.st.PeerGrants(ctx, u.ID, issued)
		if err != nil {
			return err
		}
		list := []map[string]any{}
		for _, g := range gs {
			other := g.SubjectID
			if !issued {
				other = g.IssuerID
			}
			email := ""
			if ou, err := s.st.UserByID(ctx, other); err == nil {
				email = ou.Email
			}
			item := map[string]any{"jti": g.JTI, "resource": g.Resource, "scope": g.Scope, "expiresAt": g.ExpiresAt,
				"status": g.Status(now), "createdAt": g.CreatedAt}
			if g.MaxCalls > 0 { // like the vault's lists: no maxCalls = no limit
				item["maxCalls"] = g.MaxCalls
			}
			if issued {
				item["subjectEmail"] = email
			} else {
				item["issuerEmail"] = email
				if g.New(now) {
					item["new"] = true // active and not yet seen in the app (POST /grants/seen)
				}
			}
			list = append(list, item)
		}
		key := "received"
		if issued {
			key = "issued"
		}
		out[key] = list
	}
	return c.JSON(http.StatusOK, out)
}

// internalDirectory handles GET /internal/v1/directory/{user} for a relay
// role running on its own: the user's Ed25519 key, behind the service
// secret (compared in constant time).
func (s *Server) internalDirectory(c echo.Context) error {
	got := c.Request().Header.Get(api.AgentServiceHeader)
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.opt.ServiceSecret)) != 1 {
		return api.Unauthorized("missing or wrong service secret")
	}
	e, err := s.st.DirectoryEntry(c.Request().Context(), store.UserID(c.Param("user")))
	if errors.Is(err, store.ErrNotFound) {
		return api.NotFound("no keys for this user")
	} else if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.DirectoryKey{UserID: string(e.UserID), Ed25519: e.Ed25519})
}

// copyProxiedHeader copies the headers of a buffered proxied answer to dst,
// ours winning (api.MergeProxiedHeader).
func copyProxiedHeader(dst, src http.Header) {
	api.MergeProxiedHeader(dst, src)
	for k, v := range src {
		dst[k] = v
	}
}

// statusRecorder passes a response through while noting its status.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := r.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}
