package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/web"
)

// Trusted contacts (social recovery; issue 10, item 2; SPEC §6), vault
// side. Routes below /vault:
//
//	PUT    /ways/social {"threshold":3,"resolved":[{"userId","email","signed":{"record","sig"}}]}
//	       → 200 GET /ways JSON. Unlocked. The browser gets "resolved" from the management
//	       role's directory (POST /api/v1/me/recovery/contacts); each record is verified here. 2 ≤ threshold ≤ contacts ≤ 10 (threshold
//	       0 = 3, or the number of contacts if fewer).
//	DELETE /ways/social → 200 GET /ways JSON (removes the wrap; contacts are told to drop their shares)
//	GET    /social/held → {"held":[{"owner","epoch","threshold","receivedAt"}]}  (shares kept for others; no share)
//	POST   /social/held/{owner}/release {"requestId","publicKey"} → {"sealedShare","epoch","threshold"}
//	       (the management role calls it when this vault's owner approves a recovery request;
//	       its agent proxy refuses it from browsers)
//
// Setup makes a 32-byte secret S (crypto.NewSocialSecret), splits it
// (crypto.SplitSocialSecret), seals each share to its contact's X25519
// key (crypto.SealToX25519) and sends it through the relay in an envelope
// of type social.share (sealed once more, box between the identities,
// with the owner's signed key record beside it like a capability grant).
// Only when the relay has accepted every share does it add the DEK wrap
// under crypto.SocialKEK(S) and record Ways.Social, in one atomic write;
// S and the shares are cleared either way. A new setup (a contact added
// or removed) is a new split with a new epoch; contacts no longer in it
// get a social.drop envelope, and the shares of the old split no longer
// open anything, because the old wrap is replaced. A contact's vault
// keeps the latest share per owner (heldShare) and releases it only
// sealed to a recovery request's one-time key.

const (
	envSocialShare = "social.share"
	envSocialDrop  = "social.drop"
	envSocialHeld  = "social.held"
	// socialRelayWait is how long setup waits for a relay connection.
	socialRelayWait = 10 * time.Second
)

type (
	socialSignedJSON struct {
		Record string `json:"record"`
		Sig    string `json:"sig"`
	}
	socialResolvedJSON struct {
		UserID string           `json:"userId"`
		Email  string           `json:"email"`
		Signed socialSignedJSON `json:"signed"`
	}
	// socialSetupReq is PUT /ways/social: the contacts' signed key
	// records as POST /api/v1/me/recovery/contacts on the management role
	// gave them to the browser (checked again here).
	socialSetupReq struct {
		Threshold int                  `json:"threshold"`
		Resolved  []socialResolvedJSON `json:"resolved"`
	}
	// socialOuter is an envelope payload of type social.share,
	// social.drop (owner → contact) or social.held (contact → owner): the
	// sender's signed key record and the box.
	socialOuter struct {
		OwnerKeys crypto.SignedKeyRecord `json:"ownerKeys"`
		Box       []byte                 `json:"box"`
	}
	// socialPayload is the box's content. Sealed (social.share only) is
	// the share message sealed to the recipient's key. A social.drop
	// tells the recipient to drop the owner's shares of epochs before
	// Epoch. A social.held tells the owner that the sender keeps its
	// share of split Epoch.
	socialPayload struct {
		Header    api.RelayHeader `json:"header"`
		Epoch     uint32          `json:"epoch"`
		Threshold int             `json:"threshold,omitempty"`
		Sealed    []byte          `json:"sealed,omitempty"`
	}
	releaseReq struct {
		RequestID string `json:"requestId"`
		PublicKey string `json:"publicKey"`
	}
	heldJSON struct {
		Owner      string `json:"owner"`
		Epoch      uint32 `json:"epoch"`
		Threshold  int    `json:"threshold"`
		ReceivedAt int64  `json:"receivedAt"`
	}
)

func (p *socialPayload) bind(h api.RelayHeader) { p.Header = h }

func (s *Server) socialRoutes(g *echo.Group) {
	g.PUT("/ways/social", s.putSocial)
	g.DELETE("/ways/social", s.deleteSocial)
	g.GET("/social/held", s.listHeld)
	g.POST("/social/held/:owner/release", s.releaseShare)
}

// socialEnvelopeLocked seals p to user `to` as an envelope of type typ
// with the owner's key record beside the box. k.mu held, unlocked.
func (s *Server) socialEnvelopeLocked(to, toX, typ string, p *socialPayload) (*api.RelayEnvelope, error) {
	signed, err := s.ownKeyRecord()
	if err != nil {
		return nil, err
	}
	env, err := s.sealEnvelopeLocked(to, toX, typ, "", p)
	if err != nil {
		return nil, err
	}
	outer, err := json.Marshal(socialOuter{OwnerKeys: signed, Box: env.Payload})
	if err != nil {
		return nil, err
	}
	env.Payload = outer
	return env, nil
}

// waitRelay waits up to socialRelayWait for a relay connection.
func (s *Server) waitRelay(ctx context.Context) error {
	if s.relay == nil {
		return api.Unavailable("relay_unavailable", "this server has no relay, so trusted contacts cannot be set up", nil)
	}
	deadline := time.Now().Add(socialRelayWait)
	for !s.relay.connected() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return api.Unavailable("relay_unavailable", "the relay cannot be reached right now; try again in a minute", nil)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return nil
}

// checkSocialSetup validates req and returns the contacts with their
// verified keys.
func (s *Server) checkSocialSetup(req *socialSetupReq) ([]socialContact, int, error) {
	m := len(req.Resolved)
	if m < crypto.SocialMinThreshold || m > crypto.SocialMaxContacts {
		return nil, 0, api.BadRequest("invalid_contacts", "choose 2 to 10 trusted contacts")
	}
	k := req.Threshold
	if k == 0 {
		k = min(3, m)
	}
	if k < crypto.SocialMinThreshold || k > m {
		return nil, 0, api.BadRequest("invalid_threshold", "the number of contacts needed must be at least 2 and at most the number of contacts")
	}
	var out []socialContact
	seen := map[string]bool{}
	for _, r := range req.Resolved {
		rec, err := crypto.VerifyKeyRecord(crypto.SignedKeyRecord{Record: r.Signed.Record, Sig: r.Signed.Sig})
		if err != nil || rec.Subject != r.UserID || r.UserID == "" {
			return nil, 0, api.BadRequest("contact_unknown", "the public keys of "+r.Email+" could not be verified")
		}
		if r.UserID == s.userID {
			return nil, 0, api.BadRequest("contact_self", "you cannot be your own trusted contact")
		}
		if seen[r.UserID] {
			return nil, 0, api.BadRequest("duplicate_contact", "each trusted contact may appear only once")
		}
		seen[r.UserID] = true
		if _, err := crypto.ParseX25519(rec.X25519); err != nil {
			return nil, 0, api.BadRequest("contact_unknown", "the public keys of "+r.Email+" could not be verified")
		}
		out = append(out, socialContact{UserID: r.UserID, Email: r.Email, X25519: rec.X25519})
	}
	return out, k, nil
}

// putSocial is PUT /ways/social: a new split to the given contacts.
func (s *Server) putSocial(c echo.Context) error {
	var req socialSetupReq
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	if s.userID == "" {
		return api.E(http.StatusConflict, "no_owner", "this vault does not know its owner's user id")
	}
	contacts, threshold, err := s.checkSocialSetup(&req)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.waitRelay(ctx); err != nil {
		return err
	}
	k := s.keys
	k.mu.Lock()
	if err := k.useLocked(s.publicURL); err != nil {
		k.mu.Unlock()
		return err
	}
	var old *socialConfig
	if err := k.viewLocked(func(sec *secrets) error { old = sec.Ways.Social; return nil }, recWays, recHeldShares); err != nil {
		k.mu.Unlock()
		return err
	}
	epoch := uint32(k.wall().Unix())
	if old != nil && epoch <= old.Epoch {
		epoch = old.Epoch + 1
	}
	cfg := &socialConfig{Threshold: threshold, Epoch: epoch, SetAt: k.wall().Unix(), Contacts: contacts}
	kek, shares, drops, err := s.splitLocked(cfg, old)
	k.mu.Unlock()
	if err != nil {
		return err
	}
	defer kek.Zero()
	for i, env := range shares {
		if err := s.relay.send(ctx, env); err != nil {
			s.log.Warn("trusted contact share not sent", "contact", contacts[i].UserID, "err", err)
			return api.Unavailable("relay_unavailable", "a share could not be sent to "+contacts[i].Email+"; nothing was changed, try again", err)
		}
	}
	k.mu.Lock()
	if err := k.useLocked(s.publicURL); err != nil {
		k.mu.Unlock()
		return err
	}
	var now *socialConfig
	_ = k.viewLocked(func(sec *secrets) error { now = sec.Ways.Social; return nil }, recWays)
	if (now == nil) != (old == nil) || now != nil && now.Epoch != old.Epoch { // another setup won meanwhile
		k.mu.Unlock()
		return api.Conflict("social_changed", "your trusted contacts changed meanwhile; reload and try again")
	}
	s.applyReceiptsLocked(cfg)
	err = k.putWayLocked(crypto.WrapSocial, "", &kek, func(sec *secrets) error { sec.Ways.Social = cfg; return nil })
	var out waysJSON
	if err == nil {
		out, err = s.waysLocked()
	}
	k.mu.Unlock()
	if err != nil {
		return err
	}
	s.log.Info("trusted contacts set up", "contacts", len(contacts), "threshold", threshold, "epoch", epoch)
	s.sendDrops(ctx, drops)
	return c.JSON(http.StatusOK, out)
}

// splitLocked makes the secret of cfg's split, its KEK and one sealed
// social.share envelope per contact (in cfg.Contacts order), plus the
// social.drop envelopes for old's contacts that are not in cfg. The secret
// and the plain shares are cleared before it returns. k.mu held, unlocked.
func (s *Server) splitLocked(cfg *socialConfig, old *socialConfig) (crypto.KEK, []*api.RelayEnvelope, []*api.RelayEnvelope, error) {
	secret, err := crypto.NewSocialSecret()
	if err != nil {
		return crypto.KEK{}, nil, nil, err
	}
	defer clear(secret)
	parts, err := crypto.SplitSocialSecret(secret, len(cfg.Contacts), cfg.Threshold)
	if err != nil {
		return crypto.KEK{}, nil, nil, api.BadRequest("invalid_threshold", "the number of contacts needed must be at least 2 and at most the number of contacts")
	}
	defer func() {
		for _, p := range parts {
			clear(p)
		}
	}()
	var envs []*api.RelayEnvelope
	for i, ct := range cfg.Contacts {
		x, err := crypto.ParseX25519(ct.X25519)
		if err != nil {
			return crypto.KEK{}, nil, nil, err
		}
		msg, err := (&crypto.SocialShare{Owner: s.userID, Epoch: cfg.Epoch, Threshold: cfg.Threshold, Share: parts[i]}).Marshal()
		if err != nil {
			return crypto.KEK{}, nil, nil, err
		}
		sealed, err := crypto.SealToX25519(&x, msg)
		clear(msg)
		if err != nil {
			return crypto.KEK{}, nil, nil, api.BadRequest("contact_unknown", "the key of "+ct.Email+" is not usable")
		}
		env, err := s.socialEnvelopeLocked(ct.UserID, ct.X25519, envSocialShare, &socialPayload{Epoch: cfg.Epoch, Threshold: cfg.Threshold, Sealed: sealed})
		if err != nil {
			return crypto.KEK{}, nil, nil, err
		}
		envs = append(envs, env)
	}
	var drops []*api.RelayEnvelope
	if old != nil {
		drops = s.dropEnvelopesLocked(old.Contacts, cfg.Contacts, cfg.Epoch)
	}
	kek, err := crypto.SocialKEK(secret)
	return kek, envs, drops, err
}

// dropEnvelopesLocked returns a social.drop (epochs before epoch) for each
// of contacts that is not in keep. k.mu held, unlocked.
func (s *Server) dropEnvelopesLocked(contacts, keep []socialContact, epoch uint32) []*api.RelayEnvelope {
	var out []*api.RelayEnvelope
	for _, ct := range contacts {
		if slices.ContainsFunc(keep, func(o socialContact) bool { return o.UserID == ct.UserID }) {
			continue
		}
		env, err := s.socialEnvelopeLocked(ct.UserID, ct.X25519, envSocialDrop, &socialPayload{Epoch: epoch})
		if err != nil {
			s.log.Warn("trusted contact drop not sealed", "contact", ct.UserID, "err", err)
			continue
		}
		out = append(out, env)
	}
	return out
}

// sendDrops sends the drop envelopes, best effort: a contact who misses
// one keeps a share that opens nothing any more.
func (s *Server) sendDrops(ctx context.Context, drops []*api.RelayEnvelope) {
	for _, env := range drops {
		if err := s.relay.send(context.WithoutCancel(ctx), env); err != nil {
			s.log.Warn("trusted contact drop not sent", "contact", env.Header.To, "err", err)
		}
	}
}

// deleteSocial is DELETE /ways/social.
func (s *Server) deleteSocial(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	if err := k.useLocked(s.publicURL); err != nil {
		k.mu.Unlock()
		return err
	}
	var old *socialConfig
	if err := k.viewLocked(func(sec *secrets) error { old = sec.Ways.Social; return nil }, recWays); err != nil {
		k.mu.Unlock()
		return err
	}
	if old == nil && !k.file.HasWrap(crypto.WrapSocial, "") {
		k.mu.Unlock()
		return api.NotFound("you have no trusted contacts set up")
	}
	err := k.removeWayLocked(crypto.WrapSocial, "", func(sec *secrets) error { sec.Ways.Social = nil; return nil })
	var drops []*api.RelayEnvelope
	var out waysJSON
	if err == nil {
		if old != nil {
			drops = s.dropEnvelopesLocked(old.Contacts, nil, max(uint32(k.wall().Unix()), old.Epoch+1))
		}
		out, err = s.waysLocked()
	}
	k.mu.Unlock()
	if err != nil {
		return err
	}
	s.log.Info("trusted contacts removed")
	if s.relay != nil {
		s.sendDrops(c.Request().Context(), drops)
	}
	return c.JSON(http.StatusOK, out)
}

// listHeld is GET /social/held.
func (s *Server) listHeld(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	out := []heldJSON{}
	err := k.viewLocked(func(sec *secrets) error {
		for _, h := range sec.HeldShares {
			out = append(out, heldJSON{Owner: h.Owner, Epoch: h.Epoch, Threshold: h.Threshold, ReceivedAt: h.ReceivedAt})
		}
		return nil
	}, recHeldShares)
	if err != nil {
		return err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Owner < out[j].Owner })
	return c.JSON(http.StatusOK, map[string]any{"held": out})
}

// releaseShare is POST /social/held/{owner}/release: this vault opens the
// share it keeps for owner and seals it again, bound to the request, to
// the request's one-time public key. The share is in the clear only in
// this function's memory, and cleared before it returns.
func (s *Server) releaseShare(c echo.Context) error {
	owner := c.Param("owner")
	var req releaseReq
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	pk, err := base64.StdEncoding.Strict().DecodeString(req.PublicKey)
	if err != nil || len(pk) != 32 {
		return api.BadRequest("invalid_public_key", "publicKey must be the standard base64 of a 32-byte X25519 key")
	}
	if req.RequestID == "" || len(req.RequestID) > 100 {
		return api.BadRequest("invalid_request", "requestId is required")
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	var h heldShare
	found := false
	if err := k.viewLocked(func(sec *secrets) error {
		if p := sec.HeldShares[owner]; p != nil {
			h, found = *p, true
		}
		return nil
	}, recHeldShares); err != nil {
		return err
	}
	if !found {
		return api.NotFound("you hold no recovery share for this person")
	}
	msg, err := k.id.OpenSealed(h.Sealed)
	if err != nil {
		return api.Conflict("held_share_unreadable", "the recovery share you hold for this person cannot be opened")
	}
	share, err := crypto.UnmarshalSocialShare(msg)
	clear(msg)
	if err != nil || share.Owner != owner {
		return api.Conflict("held_share_unreadable", "the recovery share you hold for this person cannot be opened")
	}
	defer share.Zero()
	share.Request = req.RequestID
	out, err := share.Marshal()
	if err != nil {
		return api.BadRequest("invalid_request", "requestId is too long")
	}
	sealed, err := crypto.SealToX25519((*[32]byte)(pk), out)
	clear(out)
	if err != nil {
		return api.BadRequest("invalid_public_key", "publicKey is not a usable X25519 key")
	}
	s.log.Info("recovery share released", "owner", owner, "request", req.RequestID, "epoch", share.Epoch)
	return c.JSON(http.StatusOK, map[string]any{"sealedShare": sealed, "epoch": share.Epoch, "threshold": share.Threshold})
}

// receiveSocial handles a delivered social.share or social.drop.
func (s *Server) receiveSocial(env *api.RelayEnvelope) {
	from, typ := env.Header.From, env.Header.Type
	var outer socialOuter
	if err := json.Unmarshal(env.Payload, &outer); err != nil {
		s.log.Warn("trusted contact envelope dropped: malformed", "type", typ, "from", from)
		return
	}
	rec, err := crypto.VerifyKeyRecord(outer.OwnerKeys)
	if err != nil || rec.Subject != from {
		s.log.Warn("trusted contact envelope dropped: owner keys do not verify", "type", typ, "from", from)
		return
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dek == nil {
		return
	}
	var p socialPayload
	if err := s.openBoxLocked(rec.X25519, outer.Box, &p); err != nil {
		s.log.Warn("trusted contact envelope dropped: cannot open", "type", typ, "from", from)
		return
	}
	defer clear(p.Sealed)
	if code := checkSealedHeader(env, &p.Header, typ, s.userID); code != "" {
		s.log.Warn("trusted contact envelope dropped", "code", code, "type", typ, "from", from)
		return
	}
	if typ == envSocialHeld {
		s.noteHeldLocked(from, p.Epoch)
		return
	}
	var cur *heldShare
	if err := k.viewLocked(func(sec *secrets) error { cur = sec.HeldShares[from]; return nil }, recHeldShares); err != nil {
		s.log.Error("trusted contact envelope not processed", "type", typ, "from", from, "err", err)
		return
	}
	if typ == envSocialDrop {
		if cur == nil || cur.Epoch >= p.Epoch {
			return
		}
		if err := k.updateLocked(func(sec *secrets) error { delete(sec.HeldShares, from); return nil }); err != nil {
			s.log.Error("held share not dropped", "owner", from, "err", err)
			return
		}
		s.log.Info("held recovery share dropped", "owner", from)
		return
	}
	// Check that the share is for us, from this owner, of this split.
	msg, err := k.id.OpenSealed(p.Sealed)
	if err != nil {
		s.log.Warn("trusted contact share dropped: not sealed to this vault", "from", from)
		return
	}
	sh, err := crypto.UnmarshalSocialShare(msg)
	clear(msg)
	if err != nil || sh.Owner != from || sh.Epoch != p.Epoch || sh.Threshold != p.Threshold || sh.Request != "" {
		s.log.Warn("trusted contact share dropped: does not match", "from", from)
		return
	}
	sh.Zero()
	if cur != nil && cur.Epoch > p.Epoch {
		return // an older split arriving late
	}
	h := &heldShare{Owner: from, OwnerX25519: rec.X25519, Epoch: p.Epoch, Threshold: p.Threshold,
		Sealed: slices.Clone(p.Sealed), ReceivedAt: k.wall().Unix()}
	if err := k.updateLocked(func(sec *secrets) error { sec.HeldShares[from] = h; return nil }); err != nil {
		s.log.Error("held recovery share not stored", "owner", from, "err", err)
		return
	}
	s.log.Info("recovery share received", "owner", from, "epoch", p.Epoch)
	// Tell the owner (best effort, after this delivery is done).
	if receipt, err := s.socialEnvelopeLocked(from, rec.X25519, envSocialHeld, &socialPayload{Epoch: p.Epoch}); err == nil && s.relay != nil {
		go func() {
			if err := s.relay.send(context.Background(), receipt); err != nil {
				s.log.Warn("held share receipt not sent", "owner", from, "err", err)
			}
		}()
	}
}

// noteHeldLocked marks contact as holding its share of split epoch, if
// that is the current split and contact is in it. A receipt can overtake
// the owner's own write of the split (the shares go out first), so it is
// also remembered in memory and applied by putSocial. k.mu held, unlocked.
func (s *Server) noteHeldLocked(contact string, epoch uint32) {
	k := s.keys
	if s.heldReceipts == nil {
		s.heldReceipts = map[string]uint32{}
	}
	if epoch > s.heldReceipts[contact] {
		s.heldReceipts[contact] = epoch
	}
	var cfg *socialConfig
	if err := k.viewLocked(func(sec *secrets) error { cfg = sec.Ways.Social; return nil }, recWays); err != nil || cfg == nil || cfg.Epoch != epoch {
		return
	}
	i := slices.IndexFunc(cfg.Contacts, func(c socialContact) bool { return c.UserID == contact })
	if i < 0 || cfg.Contacts[i].Held {
		return
	}
	if err := k.updateLocked(func(sec *secrets) error {
		if sc := sec.Ways.Social; sc != nil && sc.Epoch == epoch && i < len(sc.Contacts) && sc.Contacts[i].UserID == contact {
			sc.Contacts[i].Held = true
		}
		return nil
	}); err != nil {
		s.log.Error("held share receipt not stored", "contact", contact, "err", err)
		return
	}
	s.log.Info("trusted contact holds their share", "contact", contact, "epoch", epoch)
}

// applyReceiptsLocked marks the contacts of cfg whose receipt for its
// epoch came before cfg was written. k.mu held.
func (s *Server) applyReceiptsLocked(cfg *socialConfig) {
	for i := range cfg.Contacts {
		if s.heldReceipts[cfg.Contacts[i].UserID] == cfg.Epoch {
			cfg.Contacts[i].Held = true
		}
	}
}
