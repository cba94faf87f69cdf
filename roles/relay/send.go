package relay

import (
	"context"
	"errors"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/metrics"
	"github.com/ocmt/ocmt/store"
)

// opTimeout bounds the store and directory calls of one frame.
const opTimeout = 10 * time.Second

// handleSend checks, persists and forwards one envelope (SPEC §7.2); see
// the package documentation for the checks and their error codes, which
// are answered in that order.
func (c *conn) handleSend(f *Frame) {
	s := c.s
	e := f.Envelope
	if e == nil {
		c.sendError(CodeBadEnvelope, "", "send needs an envelope")
		return
	}
	h := &e.Header
	if !validID(h.ID) {
		c.sendError(CodeBadEnvelope, "", "header.id must be base64url of 16 bytes")
		return
	}
	id := h.ID
	switch {
	case h.From != c.user:
		c.sendError(CodeNotSender, id, "header.from must be the authenticated user")
		return
	case !validUserID(h.To):
		c.sendError(CodeBadEnvelope, id, "header.to is not a user id")
		return
	case !validType(h.Type):
		c.sendError(CodeBadEnvelope, id, "header.type must be 1-64 characters of a-z 0-9 . _ -")
		return
	case h.JTI != "" && !validID(h.JTI):
		c.sendError(CodeBadEnvelope, id, "header.jti must be base64url of 16 bytes")
		return
	case len(e.Payload) == 0:
		c.sendError(CodeBadEnvelope, id, "payload is empty")
		return
	case len(e.Payload) > s.opt.MaxPayloadBytes:
		c.sendError(CodeTooLarge, id, "payload is too large")
		return
	}
	now := s.now()
	if ts := time.UnixMilli(h.TS); h.TS <= 0 || ts.Before(now.Add(-MaxClockSkew)) || ts.After(now.Add(MaxClockSkew)) {
		c.sendError(CodeBadTimestamp, id, "header.ts must be within 5 minutes of the relay's clock")
		return
	}
	if ok, wait := s.limiter.allow(c.user, now); !ok {
		s.log.Info("relay rate limited", "from", c.user, "to", h.To, "id", id)
		c.send(&Frame{Type: FrameError, Code: CodeRateLimited, ID: id, Message: "too many envelopes; retry later",
			RetryAfterMs: (wait + time.Millisecond - 1).Milliseconds()})
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, opTimeout)
	defer cancel()
	if h.JTI != "" {
		parties := []string{h.From, h.To} // the issuer side first
		if h.Type == api.RelayTypeCall {
			parties = []string{h.To, h.From}
		}
		if c.refuseRevoked(ctx, id, h.JTI, parties...) {
			s.log.Info("relay refused revoked capability", "from", c.user, "to", h.To, "id", id, "jti", h.JTI)
			return
		}
	}
	if h.Type == api.RelayTypeCall && s.connFor(h.To) == nil && s.wakes.isUnavailable(h.To, now) {
		s.log.Info("relay refused call: recipient unavailable", "id", id, "from", h.From, "to", h.To)
		c.sendError(CodeRecipientUnavailable, id, unavailableMsg)
		return
	}
	if _, err := s.opt.Directory.Ed25519Key(ctx, h.To); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("relay directory lookup failed", "user", h.To, "err", err)
		}
		c.sendError(CodeUnknownRecipient, id, "no such recipient")
		return
	}
	rec := store.RelayEnvelope{
		ID: id, Sender: store.UserID(h.From), Recipient: store.UserID(h.To), TS: time.UnixMilli(h.TS),
		Type: h.Type, JTI: h.JTI, Payload: e.Payload, CreatedAt: now, ExpiresAt: now.Add(s.opt.EnvelopeTTL),
	}
	if err := s.st.PutEnvelope(ctx, rec); err != nil {
		if errors.Is(err, store.ErrConflict) {
			c.sendError(CodeDuplicateID, id, "an envelope with this id is already queued")
			return
		}
		s.log.Error("relay store envelope failed", "err", err)
		c.sendError(CodeInternal, id, "the relay could not store the envelope; retry")
		return
	}
	if h.JTI != "" {
		s.noteIssuer(ctx, h, now)
	}
	s.opt.Metrics.Envelopes(metrics.EnvelopeQueued, 1)
	s.enforceQueueCap(ctx, rec.Recipient)
	c.send(&Frame{Type: FrameAccepted, ID: id})
	s.log.Info("relay envelope accepted", "id", id, "from", h.From, "to", h.To, "type", h.Type,
		"size_bytes", len(e.Payload), "ts", h.TS, "jti", h.JTI)
	if rc := s.connFor(h.To); rc != nil {
		rc.push(e)
		s.nudge(h.To) // a paused container keeps its socket but cannot read it
	} else {
		s.wake(h.To)
	}
}

// handleAck deletes an envelope delivered to this user.
func (c *conn) handleAck(f *Frame) {
	if !validID(f.ID) {
		c.sendError(CodeBadFrame, "", "ack needs an envelope id")
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, opTimeout)
	defer cancel()
	if err := c.s.st.DeleteEnvelope(ctx, f.ID, store.UserID(c.user)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			c.sendError(CodeNotFound, f.ID, "no such envelope queued for you")
			return
		}
		c.s.log.Error("relay ack failed", "err", err)
		c.sendError(CodeInternal, f.ID, "the relay could not record the ack; retry")
		return
	}
	c.s.opt.Metrics.Envelopes(metrics.EnvelopeDelivered, 1)
	c.unmarkInflight(f.ID)
	c.send(&Frame{Type: FrameAcked, ID: f.ID})
	c.s.log.Info("relay envelope acked", "id", f.ID, "by", c.user)
}

// enforceQueueCap drops the recipient's oldest envelopes over
// MaxQueuedPerRecipient, logging each one's metadata. The count is a read
// (reader pool); the trim, a write transaction, runs only when needed.
func (s *Server) enforceQueueCap(ctx context.Context, recipient store.UserID) {
	n, err := s.st.CountQueued(ctx, recipient)
	if err != nil {
		s.log.Error("relay count queue failed", "to", recipient, "err", err)
		return
	}
	if n <= s.opt.MaxQueuedPerRecipient {
		return
	}
	dropped, err := s.st.TrimEnvelopes(ctx, recipient, s.opt.MaxQueuedPerRecipient)
	if err != nil {
		s.log.Error("relay trim queue failed", "to", recipient, "err", err)
	}
	s.opt.Metrics.Envelopes(metrics.EnvelopeDropped, len(dropped))
	for _, d := range dropped {
		s.log.Warn("relay queue full, dropped oldest envelope", "id", d.ID, "from", d.Sender, "to", d.Recipient,
			"type", d.Type, "ts", d.TS.UnixMilli())
	}
}
