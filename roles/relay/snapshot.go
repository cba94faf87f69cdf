package relay

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"

	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/store"
)

// handleSnapshotPut stores or replaces the cached-tier snapshot of a
// `cached` capability issued by the authenticated user (SPEC §7.2), in the
// slot of (jti, issuer key): another user who picks the same jti gets a
// slot of their own and cannot take or replace this one.
func (c *conn) handleSnapshotPut(f *Frame) {
	s := c.s
	jti, err := capability.ParseJTI(f.JTI)
	if err != nil || jti.IsZero() {
		c.sendError(CodeBadFrame, "", "snapshot.put needs a jti")
		return
	}
	p, err := capability.Parse(f.Token)
	if err != nil || p.VerifySignature() != nil {
		c.sendError(CodeBadFrame, "", "snapshot.put needs the capability token, validly signed")
		return
	}
	cl := p.Claims()
	if cl.JTI != jti {
		c.sendError(CodeBadFrame, "", "the token is not the one named by jti")
		return
	}
	if cl.Tier != capability.TierCached {
		c.sendError(CodeBadFrame, "", "only cached capabilities have snapshots")
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
	if !key.Equal(cl.Issuer) {
		c.sendError(CodeNotIssuer, "", "only the capability's issuer may put its snapshot")
		return
	}
	if !s.now().Before(cl.Expires) {
		c.sendError(CodeCapabilityExpired, "", "the capability has expired")
		return
	}
	switch {
	case len(f.Blob) == 0:
		c.sendError(CodeBadFrame, "", "snapshot.put needs a blob")
		return
	case len(f.Blob) > s.opt.MaxPayloadBytes:
		c.sendError(CodeTooLarge, "", "blob is too large")
		return
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(f.Sig)
	if err != nil || !crypto.Verify(cl.Issuer, SnapshotMessage(jti, f.Blob), sig) {
		c.sendError(CodeSnapshotSignature, "", "sig is not the issuer's signature of the blob")
		return
	}
	jtiText := jti.String()
	if c.refuseRevoked(ctx, "", jtiText, c.user) {
		return
	}
	issuer := crypto.FormatEd25519(cl.Issuer)
	err = s.st.PutSnapshot(ctx, store.RelaySnapshot{
		JTI: jtiText, Issuer: issuer, Subject: crypto.FormatEd25519(cl.Subject),
		Blob: f.Blob, Sig: f.Sig, UpdatedAt: s.now(), ExpiresAt: cl.Expires,
	})
	if err != nil {
		s.log.Error("relay store snapshot failed", "err", err)
		c.sendError(CodeInternal, "", "the relay could not store the snapshot; retry")
		return
	}
	// A revocation that raced with this put deleted nothing; delete now.
	if r, err := s.revocationFor(ctx, jtiText, c.user); err != nil || r != nil {
		_ = s.st.DeleteSnapshot(ctx, jtiText, issuer)
		c.sendError(CodeCapabilityRevoked, "", "the capability has been revoked")
		return
	}
	c.send(&Frame{Type: FrameSnapshotStored, JTI: jtiText})
	s.log.Info("relay snapshot stored", "jti", jtiText, "by", c.user, "size_bytes", len(f.Blob))
}

// snapshotAccess parses f.JTI and returns it with the user's key text.
func (c *conn) snapshotAccess(ctx context.Context, f *Frame) (jti, keyText string, ok bool) {
	if !validID(f.JTI) {
		c.sendError(CodeBadFrame, "", "needs a jti")
		return "", "", false
	}
	key, err := c.userKey(ctx)
	if err != nil || len(key) != ed25519.PublicKeySize {
		c.s.log.Warn("relay directory lookup failed", "user", c.user, "err", err)
		c.sendError(CodeInternal, "", "the relay could not look up your key; retry")
		return "", "", false
	}
	return f.JTI, crypto.FormatEd25519(key), true
}

// handleSnapshotGet returns a snapshot to the capability's subject (the
// newest one for that jti and subject, or the one put by f.Issuer when
// given: each issuer has its own slot); anyone else gets not_found, as
// for a missing one.
func (c *conn) handleSnapshotGet(f *Frame) {
	ctx, cancel := context.WithTimeout(c.ctx, opTimeout)
	defer cancel()
	jti, me, ok := c.snapshotAccess(ctx, f)
	if !ok {
		return
	}
	if f.Issuer != "" {
		if _, err := crypto.ParseEd25519(f.Issuer); err != nil {
			c.sendError(CodeBadFrame, "", "issuer must be an ed25519: key")
			return
		}
	}
	sn, err := c.s.st.Snapshot(ctx, jti, me, f.Issuer)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.s.log.Error("relay get snapshot failed", "err", err)
		c.sendError(CodeInternal, "", "the relay could not read the snapshot; retry")
		return
	}
	if err != nil {
		c.send(&Frame{Type: FrameError, Code: CodeNotFound, JTI: jti, Message: "no such snapshot"})
		return
	}
	c.send(&Frame{Type: FrameSnapshot, JTI: jti, Issuer: sn.Issuer, Blob: sn.Blob, Sig: sn.Sig, TS: sn.UpdatedAt.UnixMilli()})
	c.s.log.Info("relay snapshot read", "jti", jti, "by", c.user, "size_bytes", len(sn.Blob))
}

// handleSnapshotDelete deletes a snapshot put by the authenticated user.
func (c *conn) handleSnapshotDelete(f *Frame) {
	ctx, cancel := context.WithTimeout(c.ctx, opTimeout)
	defer cancel()
	jti, me, ok := c.snapshotAccess(ctx, f)
	if !ok {
		return
	}
	if err := c.s.st.DeleteSnapshot(ctx, jti, me); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			c.send(&Frame{Type: FrameError, Code: CodeNotFound, JTI: jti, Message: "no such snapshot of yours"})
			return
		}
		c.s.log.Error("relay delete snapshot failed", "err", err)
		c.sendError(CodeInternal, "", "the relay could not delete the snapshot; retry")
		return
	}
	c.send(&Frame{Type: FrameSnapshotDeleted, JTI: jti})
	c.s.log.Info("relay snapshot deleted", "jti", jti, "by", c.user)
}
