package relay

import (
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/store"
)

// revocationFor returns the revocation that stops an envelope (or
// snapshot) carrying jti between parties, or nil if none does. A
// revocation is scoped to the user who signed it (a jti is unique only per
// issuer: anyone can pick the same 16 bytes), so only a revocation by one
// of parties applies; capability traffic always has the issuer as one
// party (the sender of a grant, the recipient of a call). When several
// apply, the one by the earliest party wins: callers list the issuer side
// first. The Bloom filter clears most ids in memory; a possible hit is
// confirmed in the store. Revocations stored before the scoping (no
// signer user) apply to the party whose directory key signed them.
func (s *Server) revocationFor(ctx context.Context, jti string, parties ...string) (*store.RelayRevocation, error) {
	if !s.revoked.mayContain(jti) {
		return nil, nil
	}
	rs, err := s.st.Revocations(ctx, jti)
	if err != nil {
		return nil, err
	}
	keys := map[string]string{} // party → key text, for legacy rows
	keyOf := func(p string) string {
		k, ok := keys[p]
		if !ok {
			if pk, err := s.opt.Directory.Ed25519Key(ctx, p); err == nil && len(pk) == ed25519.PublicKeySize {
				k = crypto.FormatEd25519(pk)
			}
			keys[p] = k
		}
		return k
	}
	for _, p := range parties {
		for i := range rs {
			r := &rs[i]
			if r.IssuerUser != "" && string(r.IssuerUser) == p || r.IssuerUser == "" && r.Issuer == keyOf(p) {
				return r, nil
			}
		}
	}
	return nil, nil
}

// refuseRevoked answers capability_revoked (or internal) about envelope
// id ("" if none) and reports true if jti is revoked for parties (see
// [Server.revocationFor]) or cannot be checked. The error frame carries
// the stored signed revocation and its issuer key, so the refused side
// can verify it with the issuer key of the token it holds rather than
// trust the relay.
func (c *conn) refuseRevoked(ctx context.Context, id, jti string, parties ...string) bool {
	r, err := c.s.revocationFor(ctx, jti, parties...)
	if err != nil {
		c.s.log.Error("relay revocation lookup failed", "err", err)
		c.sendError(CodeInternal, id, "the relay could not check the capability; retry")
		return true
	}
	if r == nil {
		return false
	}
	c.send(&Frame{Type: FrameError, Code: CodeCapabilityRevoked, ID: id, JTI: jti, Issuer: r.Issuer,
		Revocation: &capability.Revocation{Revocation: r.Revocation, Sig: r.Sig}, Message: "The share has been revoked"})
	return true
}

// noteIssuer records, for an accepted envelope carrying a jti, the user
// on its issuer side: the sender of a capability.grant, the recipient of
// a capability.call (other types say nothing about who issued the jti).
func (s *Server) noteIssuer(ctx context.Context, h *Header, now time.Time) {
	var issuer string
	switch h.Type {
	case api.RelayTypeGrant:
		issuer = h.From
	case api.RelayTypeCall:
		issuer = h.To
	default:
		return
	}
	if err := s.st.NoteCapabilityIssuer(ctx, h.JTI, store.UserID(issuer), now.Add(issuerRecordTTL)); err != nil {
		s.log.Error("relay note capability issuer failed", "err", err)
	}
}

// userKey returns the authenticated user's current directory key.
func (c *conn) userKey(ctx context.Context) (ed25519.PublicKey, error) {
	return c.s.opt.Directory.Ed25519Key(ctx, c.user)
}

// handleRevoke verifies and records a signed revocation (SPEC §7.1,
// §7.2, issue 8): at most RevocationsPerHour per sender; the issuer must
// be the authenticated user's directory key, sign it, and date it within
// ±MaxClockSkew; and when the relay has seen the jti's issuer side (see
// [Server.noteIssuer]) the sender must be one of those users. The record
// is scoped to the sender (see [Server.revocationFor]), so a revocation of
// a jti the relay never saw stops only the sender's own traffic.
func (c *conn) handleRevoke(f *Frame) {
	s := c.s
	if f.Revocation == nil {
		c.sendError(CodeRevocationMalformed, "", "revoke needs a revocation")
		return
	}
	if ok, wait := s.revLimiter.allow(c.user, s.now()); !ok {
		s.log.Info("relay revocation rate limited", "user", c.user)
		c.send(&Frame{Type: FrameError, Code: CodeRateLimited, Message: "too many revocations; retry later",
			RetryAfterMs: (wait + time.Millisecond - 1).Milliseconds()})
		return
	}
	issuer, err := crypto.ParseEd25519(f.Issuer)
	if err != nil {
		c.sendError(CodeRevocationMalformed, "", "issuer must be an ed25519: key")
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, opTimeout)
	defer cancel()
	key, err := c.userKey(ctx)
	if err != nil {
		s.log.Warn("relay directory lookup failed", "user", c.user, "err", err)
		c.sendError(CodeInternal, "", "the relay could not look up your key; retry")
		return
	}
	if !key.Equal(issuer) {
		c.sendError(CodeRevocationSignature, "", "Only the person who made the share may revoke it")
		return
	}
	claims, err := capability.VerifyRevocation(*f.Revocation, issuer, s.now(), MaxClockSkew)
	if err != nil {
		code, msg := CodeRevocationMalformed, "the revocation is malformed"
		switch {
		case errors.Is(err, capability.ErrRevocationSignature):
			code, msg = CodeRevocationSignature, "the revocation is not signed by the capability's issuer"
		case errors.Is(err, capability.ErrRevocationStale):
			code, msg = CodeRevocationStale, "the revocation is older than 5 minutes"
		case errors.Is(err, capability.ErrRevocationFuture):
			code, msg = CodeRevocationFuture, "the revocation is dated more than 5 minutes ahead"
		}
		s.log.Info("relay revocation refused", "user", c.user, "code", code)
		c.sendError(code, "", msg)
		return
	}
	jti := claims.JTI.String()
	issuers, err := s.st.CapabilityIssuers(ctx, jti)
	if err != nil {
		s.log.Error("relay capability issuer lookup failed", "err", err)
		c.sendError(CodeInternal, "", "the relay could not check the capability; retry")
		return
	}
	if len(issuers) > 0 && !slices.Contains(issuers, store.UserID(c.user)) {
		s.log.Info("relay revocation refused", "user", c.user, "code", CodeNotIssuer, "jti", jti)
		c.send(&Frame{Type: FrameError, Code: CodeNotIssuer, JTI: jti, Message: "Only the person who made the share may revoke it"})
		return
	}
	added, err := s.st.PutRevocation(ctx, store.RelayRevocation{
		JTI: jti, IssuerUser: store.UserID(c.user), Issuer: crypto.FormatEd25519(issuer), TS: claims.Time, Reason: claims.Reason,
		Revocation: f.Revocation.Revocation, Sig: f.Revocation.Sig, CreatedAt: s.now(),
	})
	if err != nil {
		s.log.Error("relay store revocation failed", "err", err)
		c.sendError(CodeInternal, "", "the relay could not store the revocation; retry")
		return
	}
	if added && s.revoked.add(jti) {
		s.growBlocklist()
	}
	c.send(&Frame{Type: FrameRevoked, JTI: jti})
	s.log.Info("relay capability revoked", "jti", jti, "by", c.user, "new", added)
}

// growBlocklist rebuilds the Bloom filter at twice its size in the
// background (the old filter keeps answering meanwhile).
func (s *Server) growBlocklist() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if err := s.revoked.rebuild(s.base, s.st); err != nil {
			s.log.Error("relay blocklist rebuild failed", "err", err)
		}
	}()
}
