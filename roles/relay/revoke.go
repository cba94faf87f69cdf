package relay

import (
	"context"
	"crypto/ed25519"
	"errors"

	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/store"
)

// isRevoked reports whether capability jti is revoked: the Bloom filter
// clears most ids in memory; a possible hit is confirmed in the store.
func (s *Server) isRevoked(ctx context.Context, jti string) (bool, error) {
	if !s.revoked.mayContain(jti) {
		return false, nil
	}
	return s.st.IsRevoked(ctx, jti)
}

// userKey returns the authenticated user's current directory key.
func (c *conn) userKey(ctx context.Context) (ed25519.PublicKey, error) {
	return c.s.opt.Directory.Ed25519Key(ctx, c.user)
}

// handleRevoke verifies and records a signed revocation (SPEC §7.1,
// §7.2): the issuer must be the authenticated user's directory key, sign
// it, and date it within ±MaxClockSkew.
func (c *conn) handleRevoke(f *Frame) {
	s := c.s
	if f.Revocation == nil {
		c.sendError(CodeRevocationMalformed, "", "revoke needs a revocation")
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
		c.sendError(CodeRevocationSignature, "", "only the capability's issuer may revoke it")
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
	err = s.st.PutRevocation(ctx, store.RelayRevocation{
		JTI: jti, Issuer: crypto.FormatEd25519(issuer), TS: claims.Time, Reason: claims.Reason,
		Revocation: f.Revocation.Revocation, Sig: f.Revocation.Sig, CreatedAt: s.now(),
	})
	if err != nil {
		s.log.Error("relay store revocation failed", "err", err)
		c.sendError(CodeInternal, "", "the relay could not store the revocation; retry")
		return
	}
	if s.revoked.add(jti) {
		s.growBlocklist()
	}
	c.send(&Frame{Type: FrameRevoked, JTI: jti})
	s.log.Info("relay capability revoked", "jti", jti, "by", c.user)
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
