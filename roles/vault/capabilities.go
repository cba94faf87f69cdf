package vault

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/web"
)

// Capabilities API (SPEC §7.1, §11), below /vault:
//
//	POST   /capabilities {"subjectEmail","resource","scope":[...],"expiresIn","maxCalls"?,"approvalId"?,
//	                      "subject":{"userId","signed":{"record","sig"}}}  → 201 {"jti","token","delivered"}
//	GET    /capabilities?direction=issued|received → {"capabilities":[...]}
//	DELETE /capabilities/{jti} → 204 (issuer: revoked locally at once, then at the relay)
//	POST   /capabilities/{jti}/call {"operation","path","method"?,"body"?} → {"status","headers","body"}
//
// A call the relay refuses as revoked is 403 capability_revoked, and the
// received record is marked revoked, only when the relay shows a
// revocation of that jti signed by the token's issuer; otherwise it is
// 503 relay_refused and the record stays as it was (issue 8).
//
// "subject" is injected by the management role from its directory.
// "approvalId" approves a pending request of the agent (approvals.go): the
// share must be the same as the one asked for or narrower, and the approval
// is consumed in the same sealed update as the new record. Grants,
// calls and results travel through the relay as envelopes of type
// capability.grant, capability.call and capability.result, sealed with NaCl
// box between the two identities. The payload of a capability.grant is
// {"issuerKeys":<signed key record>,"box":"<b64 box>"} because its recipient
// does not know the issuer's X25519 key yet; every other payload is the box.
// Every sealed payload carries a copy of its envelope's header, which the
// recipient checks (envelope_binding.go). The records live in the sealed
// vault body (record "capabilities", body.go).

const (
	envGrant     = api.RelayTypeGrant
	envCall      = api.RelayTypeCall
	envResult    = "capability.result"
	callTimeout  = 30 * time.Second
	maxExpiresIn = 365 * 24 * 3600
	maxCallBody  = 32 << 10
)

// issuedCap is a capability this vault granted.
type issuedCap struct {
	JTI            string   `json:"jti"`
	SubjectUserID  string   `json:"subjectUserId"`
	SubjectEmail   string   `json:"subjectEmail,omitempty"`
	SubjectEd25519 string   `json:"subjectEd25519"`
	SubjectX25519  string   `json:"subjectX25519"`
	Resource       string   `json:"resource"`
	Scope          []string `json:"scope"`
	IssuedAt       int64    `json:"iat"`
	Exp            int64    `json:"exp"`
	MaxCalls       int      `json:"maxCalls,omitempty"`
	Calls          int      `json:"calls"`
	Revoked        bool     `json:"revoked,omitempty"`
	RevokedAt      int64    `json:"revokedAt,omitempty"`
	RelayRevoked   bool     `json:"relayRevoked,omitempty"` // the relay confirmed the revocation
	Token          string   `json:"token,omitempty"`        // kept until delivered to the subject
	Delivered      bool     `json:"delivered,omitempty"`
	// Seen maps the request id of each call counted on this capability to
	// the unix ms until which a copy of it must still be refused (its
	// freshness window; envelope_binding.go). Pruned on each call; at
	// most maxSeenPerCap entries.
	Seen map[string]int64 `json:"seen,omitempty"`
}

// receivedCap is a capability granted to this vault's owner.
type receivedCap struct {
	JTI           string   `json:"jti"`
	Token         string   `json:"token"`
	IssuerUserID  string   `json:"issuerUserId"`
	IssuerEd25519 string   `json:"issuerEd25519"`
	IssuerX25519  string   `json:"issuerX25519"`
	Resource      string   `json:"resource"`
	Scope         []string `json:"scope"`
	Exp           int64    `json:"exp"`
	MaxCalls      int      `json:"maxCalls,omitempty"`
	Calls         int      `json:"calls"`
	Revoked       bool     `json:"revoked,omitempty"`
	Exhausted     bool     `json:"exhausted,omitempty"`
	ReceivedAt    int64    `json:"receivedAt"`
	// Model and CustomServer describe a shared model provider key
	// (Resource "provider:<name>"), as the issuer told at grant time: its
	// model ("" = the provider's default) and whether it points at an
	// OpenAI-compatible server rather than the provider's own API.
	Model        string `json:"model,omitempty"`
	CustomServer bool   `json:"customServer,omitempty"`
}

// status is the capability's status as this vault knows it at now (unix
// seconds): active, revoked, expired or exhausted.
func (rc *receivedCap) status(now int64) string {
	return capStatus(rc.Revoked, now >= rc.Exp, rc.Exhausted || rc.MaxCalls > 0 && rc.Calls >= rc.MaxCalls)
}

type capState struct {
	Issued   map[string]*issuedCap   `json:"issued"`
	Received map[string]*receivedCap `json:"received"`
}

// receivedCapsLocked returns the received capabilities for reading (not
// a copy: the caller must not change them), or none while the record is
// unreadable, in which case every save is refused too, so nothing is
// lost. k.mu held, unlocked.
func (s *Server) receivedCapsLocked() map[string]*receivedCap {
	if s.keys.recordErrLocked(recCapabilities) != nil {
		return nil
	}
	return s.keys.sec.Capabilities.Received
}

// loadCapsLocked returns a copy of the capability records, to change and
// pass to saveCapsLocked, or vault_state_unreadable if the record failed
// to decode. k.mu held, unlocked.
func (s *Server) loadCapsLocked() (*capState, error) {
	if err := s.keys.recordErrLocked(recCapabilities); err != nil {
		return nil, err
	}
	cs := &capState{}
	if err := deepCopy(cs, &s.keys.sec.Capabilities); err != nil {
		return nil, err
	}
	if cs.Issued == nil {
		cs.Issued = map[string]*issuedCap{}
	}
	if cs.Received == nil {
		cs.Received = map[string]*receivedCap{}
	}
	return cs, nil
}

// saveCapsLocked stores cs in the sealed vault. k.mu held, unlocked.
func (s *Server) saveCapsLocked(cs *capState) error {
	return s.keys.updateLocked(func(sec *secrets) error { sec.Capabilities = *cs; return nil })
}

// isUnlocked reports whether the vault is open (without extending auto-lock).
func (s *Server) isUnlocked() bool {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked()
	return k.dek != nil
}

// capNow is the clock of capability checks; capSkew lets tests move it.
func (s *Server) capNow() time.Time {
	return s.keys.now().Add(time.Duration(s.capSkew.Load()))
}

// signRelayAuth signs the relay's challenge, or reports the vault locked.
func (s *Server) signRelayAuth(nonce []byte) ([]byte, bool) {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked()
	if k.id == nil {
		return nil, false
	}
	return k.id.Sign(api.RelayAuthMessage(nonce, s.userID)), true
}

// sealEnvelopeLocked builds an envelope to user `to` (X25519 key text
// toX) carrying v as JSON, after binding into v a copy of the envelope's
// header (envelope_binding.go). k.mu held, unlocked.
func (s *Server) sealEnvelopeLocked(to, toX, typ, jti string, v sealedPayload) (*api.RelayEnvelope, error) {
	x, err := crypto.ParseX25519(toX)
	if err != nil {
		return nil, err
	}
	h := api.RelayHeader{ID: newRandomID(), From: s.userID, To: to, TS: time.Now().UnixMilli(), Type: typ, JTI: jti}
	v.bind(h)
	msg, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	box, err := s.keys.id.SealBox(&x, msg)
	clear(msg)
	if err != nil {
		return nil, err
	}
	return &api.RelayEnvelope{Header: h, Payload: box}, nil
}

// openLocked opens a box from the peer with X25519 key text fromX.
// k.mu held, unlocked.
func (s *Server) openBoxLocked(fromX string, box []byte, v any) error {
	x, err := crypto.ParseX25519(fromX)
	if err != nil {
		return err
	}
	msg, err := s.keys.id.OpenBox(&x, box)
	if err != nil {
		return err
	}
	defer clear(msg)
	return json.Unmarshal(msg, v)
}

// Wire types.
type (
	subjectJSON struct {
		UserID string                 `json:"userId"`
		Signed crypto.SignedKeyRecord `json:"signed"`
	}
	issueReq struct {
		SubjectEmail string       `json:"subjectEmail"`
		Resource     string       `json:"resource"`
		Scope        []string     `json:"scope"`
		ExpiresIn    int64        `json:"expiresIn"`
		MaxCalls     int          `json:"maxCalls"`
		ApprovalID   string       `json:"approvalId"` // or "": approves this pending request (approvals.go)
		Subject      *subjectJSON `json:"subject"`
	}
	grantOuter struct {
		IssuerKeys crypto.SignedKeyRecord `json:"issuerKeys"`
		Box        []byte                 `json:"box"`
	}
	grantPayload struct {
		// Header is the envelope's header, sealed (envelope_binding.go).
		Header       api.RelayHeader        `json:"header"`
		Token        string                 `json:"token"`
		IssuerUserID string                 `json:"issuerUserId"`
		IssuerKeys   crypto.SignedKeyRecord `json:"issuerKeys"`
		// Model and CustomServer describe a shared model provider key
		// (no secret): its model, "" = the provider's default, and whether
		// it is an OpenAI-compatible server. Absent for other resources.
		Model        string `json:"model,omitempty"`
		CustomServer bool   `json:"customServer,omitempty"`
	}
	callReq struct {
		Operation string          `json:"operation"`
		Method    string          `json:"method"`
		Path      string          `json:"path"`
		Body      json.RawMessage `json:"body,omitempty"`
	}
	callPayload struct {
		// Header is the envelope's header, sealed (envelope_binding.go).
		Header    api.RelayHeader `json:"header"`
		RequestID string          `json:"requestId"` // base64url of 16 random bytes, once per call
		Token     string          `json:"token"`
		Operation string          `json:"operation"`
		Method    string          `json:"method"`
		Path      string          `json:"path"`
		Body      json.RawMessage `json:"body,omitempty"`
	}
	resultError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	resultPayload struct {
		// Header is the envelope's header, sealed (envelope_binding.go).
		Header     api.RelayHeader   `json:"header"`
		RequestID  string            `json:"requestId"`
		JTI        string            `json:"jti,omitempty"` // the capability called (the header carries none)
		Status     int               `json:"status,omitempty"`
		Headers    map[string]string `json:"headers,omitempty"`
		Body       []byte            `json:"body,omitempty"`
		Error      *resultError      `json:"error,omitempty"`
		HTTPStatus int               `json:"httpStatus,omitempty"` // the status of a refusal
		// fromRelay marks a relay error frame about the call's envelope
		// (pendingCalls.failEnvelope), which nobody sealed: it never
		// changes the received capability's record.
		fromRelay bool
	}
	capJSON struct {
		JTI          string   `json:"jti"`
		Resource     string   `json:"resource"`
		Scope        []string `json:"scope"`
		ExpiresAt    int64    `json:"expiresAt"`
		MaxCalls     int      `json:"maxCalls,omitempty"`
		Calls        int      `json:"calls"`
		Status       string   `json:"status"`
		SubjectID    string   `json:"subjectUserId,omitempty"`
		SubjectEmail string   `json:"subjectEmail,omitempty"`
		IssuerID     string   `json:"issuerUserId,omitempty"`
		Delivered    *bool    `json:"delivered,omitempty"`
	}
)

var grantableOps = map[string]capability.Op{"read": capability.OpRead, "list": capability.OpList, "write": capability.OpWrite, "delete": capability.OpDelete}

// maxCallsLimit is the largest call budget a share may carry.
const maxCallsLimit = 1_000_000

// errUnknownResource answers a resource that is neither an integration nor a
// provider key of this vault: no_provider_key for a known provider whose
// key the vault lacks, else unknown_resource.
func errUnknownResource(resource string) error {
	if p, ok := strings.CutPrefix(resource, providerResourcePrefix); ok && knownProvider(p) {
		return api.BadRequest("no_provider_key", "there is no "+p+" key in your vault to share; add one first")
	}
	return api.BadRequest("unknown_resource", "resource must be one of your integrations, or provider:<name> for a model provider key")
}

// parseScope checks a share's scope: one or more distinct operations among
// read, list, write, delete. Errors are invalid_scope.
func parseScope(ops []string) ([]capability.Op, error) {
	if len(ops) == 0 {
		return nil, api.BadRequest("invalid_scope", "scope must list at least one of read, list, write, delete")
	}
	var scope []capability.Op
	seen := map[string]bool{}
	for _, o := range ops {
		op, ok := grantableOps[o]
		if !ok || seen[o] {
			return nil, api.BadRequest("invalid_scope", "scope must list distinct operations among read, list, write, delete")
		}
		seen[o] = true
		scope = append(scope, op)
	}
	return scope, nil
}

// parseScopeFor is parseScope plus what the resource needs: a model
// provider key is used by POSTing model requests, so its share must allow
// write ("change"); a share without it could never be used. Errors are
// invalid_scope and scope_unusable.
func parseScopeFor(resource string, ops []string) ([]capability.Op, error) {
	scope, err := parseScope(ops)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(resource, providerResourcePrefix) && !slices.Contains(scope, capability.OpWrite) {
		return nil, api.BadRequest("scope_unusable", "a model provider key is shared with the write (change) permission: every model request is a POST")
	}
	return scope, nil
}

// checkShareLimits checks a share's duration (seconds, 1 s to 365 days) and
// call budget (0 = none, else 1 to maxCallsLimit).
func checkShareLimits(expiresIn int64, maxCalls int) error {
	if expiresIn < 1 || expiresIn > maxExpiresIn {
		return api.BadRequest("invalid_expiry", "expiresIn must be 1 second to 365 days")
	}
	if maxCalls < 0 || maxCalls > maxCallsLimit {
		return api.BadRequest("invalid_max_calls", "maxCalls must be 1 to 1000000, or absent")
	}
	return nil
}

func (s *Server) capabilityRoutes(g *echo.Group) {
	g.POST("/capabilities", s.issueCapability)
	g.GET("/capabilities", s.listCapabilities)
	g.DELETE("/capabilities/:jti", s.revokeCapability)
	g.POST("/capabilities/:jti/call", s.callCapability)
}

func (s *Server) issueCapability(c echo.Context) error {
	var req issueReq
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	if req.Subject == nil || req.Subject.UserID == "" {
		return api.BadRequest("subject_unknown", "no account with this email has a vault yet")
	}
	rec, err := crypto.VerifyKeyRecord(req.Subject.Signed)
	if err != nil || rec.Subject != req.Subject.UserID {
		return api.BadRequest("subject_unknown", "the subject's public keys could not be verified")
	}
	if req.Subject.UserID == s.userID {
		return api.BadRequest("invalid_subject", "you cannot share with yourself")
	}
	subEd, err := crypto.ParseEd25519(rec.Ed25519)
	if err != nil {
		return api.BadRequest("subject_unknown", "the subject's public keys could not be verified")
	}
	scope, err := parseScopeFor(req.Resource, req.Scope)
	if err != nil {
		return err
	}
	if err := checkShareLimits(req.ExpiresIn, req.MaxCalls); err != nil {
		return err
	}
	if s.userID == "" {
		return api.E(http.StatusConflict, "no_owner", "this vault does not know its owner's user id")
	}
	k := s.keys
	k.mu.Lock()
	if err := k.useLocked(s.publicURL); err != nil {
		k.mu.Unlock()
		return err
	}
	if _, ok := k.resourceLocked(req.Resource); !ok {
		k.mu.Unlock()
		return errUnknownResource(req.Resource)
	}
	var approvals []*approval // what stays pending once req.ApprovalID is consumed
	if req.ApprovalID != "" {
		if approvals, err = s.takeApprovalLocked(req); err != nil {
			k.mu.Unlock()
			return err
		}
	}
	now := k.now()
	tok, err := capability.Issue(k.id, capability.Claims{Subject: subEd, Audience: s.userID, Resource: req.Resource,
		Scope: scope, IssuedAt: now, Expires: now.Add(time.Duration(req.ExpiresIn) * time.Second), MaxCalls: req.MaxCalls})
	if err != nil {
		k.mu.Unlock()
		return api.BadRequest("invalid_capability", "The share could not be made")
	}
	p, _ := capability.Parse(tok)
	cl := p.Claims()
	jti := cl.JTI.String()
	cs, err := s.loadCapsLocked()
	if err != nil {
		k.mu.Unlock()
		return err
	}
	ic := &issuedCap{JTI: jti, SubjectUserID: req.Subject.UserID, SubjectEmail: req.SubjectEmail, SubjectEd25519: rec.Ed25519,
		SubjectX25519: rec.X25519, Resource: req.Resource, Scope: req.Scope, IssuedAt: cl.IssuedAt.Unix(), Exp: cl.Expires.Unix(),
		MaxCalls: req.MaxCalls, Token: tok}
	cs.Issued[jti] = ic
	err = k.updateLocked(func(sec *secrets) error { // one sealed write: no approval can issue twice
		sec.Capabilities = *cs
		if req.ApprovalID != "" {
			sec.Approvals = approvals
		}
		return nil
	})
	if err != nil {
		k.mu.Unlock()
		return err
	}
	env, err := s.grantEnvelopeLocked(ic)
	k.mu.Unlock()
	s.log.Info("capability issued", "jti", jti, "subject", req.Subject.UserID, "resource", req.Resource, "scope", req.Scope, "exp", ic.Exp,
		"approved", req.ApprovalID != "")
	delivered := false
	if err == nil {
		delivered = s.sendGrant(c.Request().Context(), jti, env)
	}
	return c.JSON(http.StatusCreated, map[string]any{"jti": jti, "token": tok, "delivered": delivered})
}

// grantEnvelopeLocked seals the capability.grant for ic. k.mu held, unlocked.
func (s *Server) grantEnvelopeLocked(ic *issuedCap) (*api.RelayEnvelope, error) {
	signed, err := s.ownKeyRecord()
	if err != nil {
		return nil, err
	}
	g := grantPayload{Token: ic.Token, IssuerUserID: s.userID, IssuerKeys: signed}
	if p, ok := strings.CutPrefix(ic.Resource, providerResourcePrefix); ok {
		if key, ok := s.keys.sec.APIKeys[p]; ok {
			g.Model, g.CustomServer = key.Model, key.BaseURL != "" && p == "openai"
		}
	}
	env, err := s.sealEnvelopeLocked(ic.SubjectUserID, ic.SubjectX25519, envGrant, ic.JTI, &g)
	if err != nil {
		return nil, err
	}
	outer, err := json.Marshal(grantOuter{IssuerKeys: signed, Box: env.Payload})
	if err != nil {
		return nil, err
	}
	env.Payload = outer
	return env, nil
}

func (s *Server) ownKeyRecord() (crypto.SignedKeyRecord, error) {
	var sr crypto.SignedKeyRecord
	b, err := readFileSmall(s.dataDir, identityFileName)
	if err != nil {
		return sr, err
	}
	err = json.Unmarshal(b, &sr)
	return sr, err
}

// sendGrant sends a grant; on success the record forgets the token.
func (s *Server) sendGrant(ctx context.Context, jti string, env *api.RelayEnvelope) bool {
	if s.relay == nil {
		return false
	}
	if err := s.relay.send(ctx, env); err != nil {
		s.log.Warn("capability grant not delivered yet", "jti", jti, "err", err)
		return false
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dek == nil {
		return true
	}
	cs, err := s.loadCapsLocked()
	if err != nil {
		return false // keep the grant queued; the state cannot be saved
	}
	if ic := cs.Issued[jti]; ic != nil {
		ic.Delivered, ic.Token = true, ""
		s.saveCapsLocked(cs)
	}
	return true
}

func (s *Server) listCapabilities(c echo.Context) error {
	dir := c.QueryParam("direction")
	if dir == "" {
		dir = "issued"
	}
	out, err := s.listCaps(dir)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"capabilities": out})
}

// listCaps lists the issued or received capabilities (no tokens, no
// secrets), soonest expiry first. Shared by the API and the agent tools.
func (s *Server) listCaps(dir string) ([]capJSON, error) {
	if dir != "issued" && dir != "received" {
		return nil, api.BadRequest("invalid_direction", "direction must be issued or received")
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return nil, err
	}
	cs, err := s.loadCapsLocked()
	if err != nil {
		return nil, err
	}
	now := s.capNow().Unix()
	out := []capJSON{}
	if dir == "issued" {
		for _, ic := range cs.Issued {
			d := ic.Delivered
			out = append(out, capJSON{JTI: ic.JTI, Resource: ic.Resource, Scope: ic.Scope, ExpiresAt: ic.Exp, MaxCalls: ic.MaxCalls,
				Calls: ic.Calls, Status: capStatus(ic.Revoked, now >= ic.Exp, ic.MaxCalls > 0 && ic.Calls >= ic.MaxCalls),
				SubjectID: ic.SubjectUserID, SubjectEmail: ic.SubjectEmail, Delivered: &d})
		}
	} else {
		for _, rc := range cs.Received {
			out = append(out, capJSON{JTI: rc.JTI, Resource: rc.Resource, Scope: rc.Scope, ExpiresAt: rc.Exp, MaxCalls: rc.MaxCalls,
				Calls: rc.Calls, Status: rc.status(now), IssuerID: rc.IssuerUserID})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].ExpiresAt < out[j].ExpiresAt || out[i].ExpiresAt == out[j].ExpiresAt && out[i].JTI < out[j].JTI
	})
	return out, nil
}

func capStatus(revoked, expired, exhausted bool) string {
	switch {
	case revoked:
		return "revoked"
	case expired:
		return "expired"
	case exhausted:
		return "exhausted"
	}
	return "active"
}

func (s *Server) revokeCapability(c echo.Context) error {
	if err := s.revokeCap(c.Request().Context(), c.Param("jti")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// revokeCap revokes an issued capability: locally at once, then at the
// relay. Shared by the API and the agent tools.
func (s *Server) revokeCap(ctx context.Context, jti string) error {
	j, err := capability.ParseJTI(jti)
	if err != nil {
		return api.NotFound("No such share")
	}
	k := s.keys
	k.mu.Lock()
	if err := k.useLocked(s.publicURL); err != nil {
		k.mu.Unlock()
		return err
	}
	cs, err := s.loadCapsLocked()
	if err != nil {
		k.mu.Unlock()
		return err
	}
	ic := cs.Issued[jti]
	if ic == nil {
		k.mu.Unlock()
		return api.NotFound("No such share")
	}
	if !ic.Revoked {
		ic.Revoked, ic.RevokedAt, ic.Token = true, time.Now().Unix(), ""
		if err := s.saveCapsLocked(cs); err != nil {
			k.mu.Unlock()
			return err
		}
	}
	frame, err := s.revokeFrameLocked(j)
	k.mu.Unlock()
	s.log.Info("capability revoked", "jti", jti)
	if err == nil {
		s.sendRevocation(ctx, jti, frame)
	}
	return nil
}

// revokeFrameLocked signs a fresh revocation of j. k.mu held, unlocked.
func (s *Server) revokeFrameLocked(j capability.JTI) (*api.RelayFrame, error) {
	r, err := capability.SignRevocation(s.keys.id, j, "revoked by issuer", time.Now())
	if err != nil {
		return nil, err
	}
	return &api.RelayFrame{Type: api.RelayFrameRevoke, Issuer: s.keys.id.Public().Ed25519Text(), Revocation: &r}, nil
}

func (s *Server) sendRevocation(ctx context.Context, jti string, f *api.RelayFrame) {
	if s.relay == nil {
		return
	}
	if err := s.relay.revoke(ctx, f); err != nil {
		s.log.Warn("revocation not confirmed by the relay yet", "jti", jti, "err", err)
		return
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dek == nil {
		return
	}
	cs, err := s.loadCapsLocked()
	if err != nil {
		return
	}
	if ic := cs.Issued[jti]; ic != nil && !ic.RelayRevoked {
		ic.RelayRevoked = true
		s.saveCapsLocked(cs)
	}
}

// relayResync runs after each relay connection: it sends grants and
// revocations that could not reach the relay before.
func (s *Server) relayResync(ctx context.Context) {
	type pending struct {
		jti   string
		grant *api.RelayEnvelope
		rev   *api.RelayFrame
	}
	var todo []pending
	k := s.keys
	k.mu.Lock()
	if k.dek == nil {
		k.mu.Unlock()
		return
	}
	cs, err := s.loadCapsLocked()
	if err != nil {
		k.mu.Unlock()
		return
	}
	now := time.Now().Unix()
	for jti, ic := range cs.Issued {
		switch {
		case ic.Revoked && !ic.RelayRevoked && now < ic.Exp:
			if j, err := capability.ParseJTI(jti); err == nil {
				if f, err := s.revokeFrameLocked(j); err == nil {
					todo = append(todo, pending{jti: jti, rev: f})
				}
			}
		case !ic.Revoked && !ic.Delivered && ic.Token != "" && now < ic.Exp:
			if env, err := s.grantEnvelopeLocked(ic); err == nil {
				todo = append(todo, pending{jti: jti, grant: env})
			}
		}
	}
	k.mu.Unlock()
	for _, p := range todo {
		if ctx.Err() != nil {
			return
		}
		if p.rev != nil {
			s.sendRevocation(ctx, p.jti, p.rev)
		} else {
			s.sendGrant(ctx, p.jti, p.grant)
		}
	}
}

// handleEnvelope processes one delivered envelope. It returns false if it
// could not (vault locked), so that the envelope stays queued.
func (s *Server) handleEnvelope(ctx context.Context, env *api.RelayEnvelope) bool {
	if !s.isUnlocked() {
		return false
	}
	switch env.Header.Type {
	case envGrant:
		s.receiveGrant(env)
	case envCall:
		s.executeCall(ctx, env)
	case envResult:
		s.receiveResult(env)
	case envSocialShare, envSocialDrop, envSocialHeld:
		s.receiveSocial(env) // social.go
	default:
		s.log.Info("relay envelope of unknown type dropped", "type", env.Header.Type, "from", env.Header.From)
	}
	return true
}

func (s *Server) receiveGrant(env *api.RelayEnvelope) {
	from := env.Header.From
	var outer grantOuter
	if err := json.Unmarshal(env.Payload, &outer); err != nil {
		s.log.Warn("capability grant dropped: malformed", "from", from)
		return
	}
	rec, err := crypto.VerifyKeyRecord(outer.IssuerKeys)
	if err != nil || rec.Subject != from {
		s.log.Warn("capability grant dropped: issuer keys do not verify", "from", from)
		return
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dek == nil {
		return
	}
	var g grantPayload
	if err := s.openBoxLocked(rec.X25519, outer.Box, &g); err != nil {
		s.log.Warn("capability grant dropped: cannot open", "from", from)
		return
	}
	if code := checkSealedHeader(env, &g.Header, envGrant, s.userID); code != "" {
		s.log.Warn("capability grant dropped", "code", code, "from", from)
		return
	}
	if g.IssuerUserID != from || g.IssuerKeys != outer.IssuerKeys {
		s.log.Warn("capability grant dropped: issuer mismatch", "from", from)
		return
	}
	p, err := capability.Parse(g.Token)
	if err != nil || p.VerifySignature() != nil {
		s.log.Warn("capability grant dropped: bad token", "from", from)
		return
	}
	cl := p.Claims()
	if crypto.FormatEd25519(cl.Issuer) != rec.Ed25519 || !cl.Subject.Equal(k.id.Public().Ed25519) || cl.Audience != from ||
		env.Header.JTI != cl.JTI.String() {
		s.log.Warn("capability grant dropped: token does not match", "from", from)
		return
	}
	cs, err := s.loadCapsLocked()
	if err != nil {
		return
	}
	jti := cl.JTI.String()
	if _, dup := cs.Received[jti]; dup {
		return
	}
	scope := make([]string, len(cl.Scope))
	for i, o := range cl.Scope {
		scope[i] = string(o)
	}
	cs.Received[jti] = &receivedCap{JTI: jti, Token: g.Token, IssuerUserID: from, IssuerEd25519: rec.Ed25519, IssuerX25519: rec.X25519,
		Resource: cl.Resource, Scope: scope, Exp: cl.Expires.Unix(), MaxCalls: cl.MaxCalls, ReceivedAt: time.Now().Unix()}
	if _, ok := sharedProviderName(cl.Resource); ok && len(g.Model) <= 200 {
		cs.Received[jti].Model, cs.Received[jti].CustomServer = g.Model, g.CustomServer
	}
	if err := s.saveCapsLocked(cs); err != nil {
		s.log.Error("capability grant not stored", "jti", jti, "err", err)
		return
	}
	s.log.Info("capability received", "jti", jti, "issuer", from, "resource", cl.Resource)
}

// codeRecipientUnavailable is the relay's error code for a call to a
// recipient that did not connect after a wake (roles/relay).
const codeRecipientUnavailable = "recipient_unavailable"

// codeRelayRefused is a call's answer (503) when the relay refused it as
// revoked (or exhausted) without proof: the share is not marked revoked,
// and a later call may work.
const codeRelayRefused = "relay_refused"

// errRelayRefused is the temporary refusal of codeRelayRefused.
func errRelayRefused() error {
	return api.Unavailable(codeRelayRefused,
		"the relay refused this call, but showed no revocation signed by the owner; try again later", nil)
}

// verifiedRevocation reports whether r is a revocation of jti signed by
// issuer (the "ed25519:…" key of the token this vault holds), however old:
// the only relay answer that marks a received share revoked for good
// (issue 8). A nil r is not verified.
func verifiedRevocation(r *capability.Revocation, jti, issuer string) bool {
	if r == nil {
		return false
	}
	key, err := crypto.ParseEd25519(issuer)
	if err != nil {
		return false
	}
	c, err := capability.VerifyStoredRevocation(*r, key)
	return err == nil && c.JTI.String() == jti
}

// errIssuerUnavailable is a call's answer when the issuer's vault is locked
// or its container could not be started.
func errIssuerUnavailable() error {
	return api.Unavailable("issuer_unavailable",
		"the owner's vault is locked or their agent is not running; the call will work once they unlock it", nil)
}

// pendingCalls correlates capability.result envelopes with waiting calls.
type pendingCalls struct {
	mu sync.Mutex
	m  map[string]pendingCall
}

type pendingCall struct {
	issuer   string
	jti      string // the capability called
	envelope string // the call's envelope id, which relay error frames name
	sent     time.Time
	ch       chan resultPayload
}

// add registers a call by its request id on capability jti of user issuer;
// envelopeID is the id of the envelope that carries it.
func (p *pendingCalls) add(id, issuer, jti, envelopeID string) chan resultPayload {
	ch := make(chan resultPayload, 1)
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]pendingCall{}
	}
	p.m[id] = pendingCall{issuer: issuer, jti: jti, envelope: envelopeID, sent: time.Now(), ch: ch}
	p.mu.Unlock()
	return ch
}

// failEnvelope answers the call carried by envelope id with a relay error
// (e.g. recipient_unavailable after the envelope was accepted). It reports
// whether such a call was waiting.
func (p *pendingCalls) failEnvelope(envelopeID, code, msg string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, pc := range p.m {
		if pc.envelope == envelopeID {
			delete(p.m, id)
			if code == capability.ErrRevoked.Code() || code == capability.ErrBudgetExhausted.Code() {
				// The relay's word alone marks nothing for good.
				code, msg = codeRelayRefused, "the relay refused this call; try again later"
			}
			pc.ch <- resultPayload{RequestID: id, Error: &resultError{Code: code, Message: msg}, HTTPStatus: http.StatusServiceUnavailable, fromRelay: true}
			return true
		}
	}
	return false
}

// take removes and returns the call waiting for result res from user
// from: the one with res's request id, on res's capability, to that
// issuer, if res was sealed between the call's sending and now (each
// ±envClockSkew: the issuer's clock may differ).
func (p *pendingCalls) take(res *resultPayload, from string) (chan resultPayload, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc, ok := p.m[res.RequestID]
	if !ok || pc.issuer != from || pc.jti != res.JTI {
		return nil, false
	}
	if ts := time.UnixMilli(res.Header.TS); ts.Before(pc.sent.Add(-envClockSkew)) || ts.After(time.Now().Add(envClockSkew)) {
		return nil, false
	}
	delete(p.m, res.RequestID)
	return pc.ch, true
}

func (p *pendingCalls) drop(id string) {
	p.mu.Lock()
	delete(p.m, id)
	p.mu.Unlock()
}

func (s *Server) callCapability(c echo.Context) error {
	var req callReq
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	out, err := s.callCap(c.Request().Context(), c.Param("jti"), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// callCap calls a received capability through the relay and waits for the
// issuer's answer {"status","body","headers"?}; refusals are *api.Error.
// Shared by the API and the agent tools; bodies are limited to maxCallBody.
func (s *Server) callCap(ctx context.Context, jti string, req callReq) (map[string]any, error) {
	if len(req.Body) > maxCallBody {
		return nil, api.E(http.StatusRequestEntityTooLarge, "too_large", "body too large")
	}
	res, err := s.sendCall(ctx, jti, req)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"status": res.Status, "body": string(res.Body)}
	if len(res.Headers) > 0 {
		out["headers"] = res.Headers
	}
	return out, nil
}

// sendCall validates req, sends it as a capability.call through the relay
// and waits for the issuer's result (at most callWait of its resource). The body is
// bounded only by the relay's envelope limit (relayMaxPayloadRaw, sealed):
// a larger call is refused with 413 too_large before it is sent. Refusals
// and failures are *api.Error; ctx.Err() when ctx ends first.
func (s *Server) sendCall(ctx context.Context, jti string, req callReq) (resultPayload, error) {
	var none resultPayload
	if _, ok := grantableOps[req.Operation]; !ok {
		return none, api.BadRequest("invalid_operation", "operation must be read, list, write or delete")
	}
	if req.Method == "" {
		req.Method = map[string]string{"read": "GET", "list": "GET", "write": "POST", "delete": "DELETE"}[req.Operation]
	}
	if _, ok := methodOps[req.Method]; !ok {
		return none, api.BadRequest("invalid_method", "method must be GET, POST, PUT, PATCH or DELETE")
	}
	if err := checkCallPath(req.Path); err != nil {
		return none, err
	}
	if s.relay == nil {
		return none, api.Unavailable("relay_unavailable", "sharing is not available: no relay configured", nil)
	}
	k := s.keys
	k.mu.Lock()
	if err := k.useLocked(s.publicURL); err != nil {
		k.mu.Unlock()
		return none, err
	}
	cs, err := s.loadCapsLocked()
	if err != nil {
		k.mu.Unlock()
		return none, err
	}
	rc := cs.Received[jti]
	if rc == nil {
		k.mu.Unlock()
		return none, api.NotFound("No such share")
	}
	reqID := newRandomID()
	env, err := s.sealEnvelopeLocked(rc.IssuerUserID, rc.IssuerX25519, envCall, jti, &callPayload{RequestID: reqID,
		Token: rc.Token, Operation: req.Operation, Method: req.Method, Path: req.Path, Body: req.Body})
	issuer, issuerKey, resource := rc.IssuerUserID, rc.IssuerEd25519, rc.Resource
	k.mu.Unlock()
	if err != nil {
		return none, err
	}
	if len(env.Payload) > relayMaxPayloadRaw {
		return none, api.E(http.StatusRequestEntityTooLarge, "too_large", "the request is too large to send through the relay")
	}
	ch := s.calls.add(reqID, issuer, jti, env.Header.ID)
	defer s.calls.drop(reqID)
	if err := s.relay.send(ctx, env); err != nil {
		var rr *relayRefusal
		if errors.As(err, &rr) && rr.code == capability.ErrRevoked.Code() {
			if !verifiedRevocation(rr.rev, jti, issuerKey) {
				s.log.Warn("relay refused a call as revoked without the issuer's revocation", "jti", jti)
				return none, errRelayRefused()
			}
			s.noteResult(jti, capability.ErrRevoked.Code(), false)
			return none, api.Forbidden(capability.ErrRevoked.Code(), "This share has been revoked")
		}
		if errors.As(err, &rr) && rr.code == "rate_limited" {
			return none, api.TooMany("too many shared-resource calls; try again later")
		}
		if errors.As(err, &rr) && rr.code == codeRecipientUnavailable {
			return none, errIssuerUnavailable()
		}
		if errors.As(err, &rr) && rr.code == "too_large" {
			return none, api.E(http.StatusRequestEntityTooLarge, "too_large", "the request is too large to send through the relay")
		}
		return none, api.Unavailable("relay_unavailable", "the relay cannot be reached right now", err)
	}
	t := time.NewTimer(callWait(resource))
	defer t.Stop()
	select {
	case res := <-ch:
		if res.Error != nil && res.Error.Code == codeRecipientUnavailable {
			return none, errIssuerUnavailable()
		}
		if res.Error != nil {
			if !res.fromRelay {
				s.noteResult(jti, res.Error.Code, false)
			}
			st := res.HTTPStatus
			if st < 400 || st > 599 {
				st = http.StatusForbidden
			}
			return none, api.E(st, res.Error.Code, res.Error.Message)
		}
		s.noteResult(jti, "", true)
		return res, nil
	case <-t.C:
		return none, api.E(http.StatusGatewayTimeout, "timeout", "the owner's vault did not answer in time")
	case <-ctx.Done():
		return none, ctx.Err()
	}
}

// noteResult updates a received capability after a call's outcome.
func (s *Server) noteResult(jti, code string, ok bool) {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dek == nil {
		return
	}
	cs, err := s.loadCapsLocked()
	if err != nil {
		return
	}
	rc := cs.Received[jti]
	if rc == nil {
		return
	}
	switch {
	case ok:
		rc.Calls++
	case code == capability.ErrRevoked.Code():
		rc.Revoked = true
	case code == capability.ErrBudgetExhausted.Code():
		rc.Exhausted = true
	default:
		return
	}
	s.saveCapsLocked(cs)
}

// receiveResult hands a capability.result to the call waiting for it
// (pendingCalls.take), if its sealed header binds it to this envelope
// (envelope_binding.go); anything else is dropped.
func (s *Server) receiveResult(env *api.RelayEnvelope) {
	from := env.Header.From
	k := s.keys
	k.mu.Lock()
	if k.dek == nil {
		k.mu.Unlock()
		return
	}
	// The sender's key: that of a capability received from it (one key
	// per user, unless it changed between grants: try each).
	var res resultPayload
	err := errors.New("unknown sender")
	tried := map[string]bool{}
	cs, lerr := s.loadCapsLocked()
	if lerr != nil {
		k.mu.Unlock()
		s.log.Error("capability result dropped: vault state unreadable", "from", from)
		return
	}
	for _, rc := range cs.Received {
		if rc.IssuerUserID != from || tried[rc.IssuerX25519] {
			continue
		}
		tried[rc.IssuerX25519] = true
		res = resultPayload{}
		if err = s.openBoxLocked(rc.IssuerX25519, env.Payload, &res); err == nil {
			break
		}
	}
	k.mu.Unlock()
	if err != nil {
		s.log.Warn("capability result dropped: cannot open", "from", from)
		return
	}
	if code := checkSealedHeader(env, &res.Header, envResult, s.userID); code != "" {
		s.log.Warn("capability result dropped", "code", code, "from", from)
		return
	}
	if ch, ok := s.calls.take(&res, from); ok {
		ch <- res
		return
	}
	s.log.Info("capability result dropped: no call waits for it", "from", from)
}

// parseEd parses a key text, or returns nil (which Authorize refuses).
func parseEd(s string) ed25519.PublicKey {
	k, err := crypto.ParseEd25519(s)
	if err != nil {
		return nil
	}
	return k
}
