package relay

import (
	"context"

	"encoding/base64"
	"testing"
	"time"

	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/store"
)

// capEnvelope is a sealed envelope of header type typ carrying jti.
func capEnvelope(t testing.TB, from, to *user, typ string, jti capability.JTI, now time.Time) Envelope {
	t.Helper()
	v := seal(t, from, to, []byte(typ), now)
	v.Header.Type, v.Header.JTI = typ, jti.String()
	return v
}

// deliveredAck reads a deliver frame on c and acks it.
func deliveredAck(c *client) Frame {
	c.t.Helper()
	f := c.expect(FrameDeliver)
	c.write(Frame{Type: FrameAck, ID: f.Envelope.Header.ID})
	c.expect(FrameAcked)
	return f
}

// revokeFrame is signer's revoke frame for jti, dated ts.
func revokeFrame(t testing.TB, signer *user, jti capability.JTI, ts time.Time) Frame {
	t.Helper()
	r, err := capability.SignRevocation(signer.key, jti, "", ts)
	if err != nil {
		t.Fatal(err)
	}
	return Frame{Type: FrameRevoke, Revocation: &r, Issuer: signer.key.Public().Ed25519Text()}
}

// TestRevokeOnlyByIssuer (issue 8): Carol, signed in with her own key,
// cannot revoke Alice's grant to Bob: the relay refuses with not_issuer
// and Bob's next call is still delivered. Alice's own revocation is
// accepted, Bob's next call is refused, and the refusal carries Alice's
// signed revocation so that Bob's vault can check it itself.
func TestRevokeOnlyByIssuer(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob, carol := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_carolaaaaaaaaaaaaaaaaaaaaa")
	ca, cb, cc := e.connect(alice), e.connect(bob), e.connect(carol)
	jti, _ := capability.NewJTI()
	ca.send(capEnvelope(t, alice, bob, "capability.grant", jti, e.clock.Now()))
	cb.expect(FrameDeliver)

	cc.write(revokeFrame(t, carol, jti, e.clock.Now()))
	if f := cc.expectError(CodeNotIssuer); f.JTI != jti.String() {
		t.Fatalf("not_issuer frame %+v, want the jti", f)
	}
	call := capEnvelope(t, bob, alice, "capability.call", jti, e.clock.Now())
	cb.send(call)
	if f := ca.expect(FrameDeliver); f.Envelope.Header.ID != call.Header.ID {
		t.Fatalf("delivered %+v", f.Envelope.Header)
	}

	ca.write(revokeFrame(t, alice, jti, e.clock.Now()))
	ca.expect(FrameRevoked)
	call = capEnvelope(t, bob, alice, "capability.call", jti, e.clock.Now())
	cb.write(Frame{Type: FrameSend, Envelope: &call})
	f := cb.expectError(CodeCapabilityRevoked)
	if f.Revocation == nil || f.JTI != jti.String() {
		t.Fatalf("capability_revoked without the revocation: %+v", f)
	}
	rc, err := capability.VerifyStoredRevocation(*f.Revocation, alice.key.Public().Ed25519)
	if err != nil || rc.JTI != jti {
		t.Fatalf("the handed revocation does not verify as Alice's: %v", err)
	}
	if _, err := capability.VerifyStoredRevocation(*f.Revocation, carol.key.Public().Ed25519); err == nil {
		t.Fatal("Alice's revocation verifies with Carol's key")
	}

	// Revoking again is answered "revoked" and adds nothing to the Bloom
	// filter (110,000 duplicates used to trigger rebuild after rebuild).
	e.srv.revoked.mu.RLock()
	n := e.srv.revoked.n
	e.srv.revoked.mu.RUnlock()
	ca.write(revokeFrame(t, alice, jti, e.clock.Now()))
	ca.expect(FrameRevoked)
	e.srv.revoked.mu.RLock()
	n2 := e.srv.revoked.n
	e.srv.revoked.mu.RUnlock()
	if n2 != n {
		t.Fatalf("a duplicate revocation grew the filter count %d → %d", n, n2)
	}
}

// TestRevokeScopedToSigner: a revocation only stops traffic of the user
// who signed it. Carol learns a jti before its issuer ever used it (the
// first-sight race) and revokes it first: the relay has no record of the
// jti, so it accepts, but Alice's grant and Bob's calls with that jti
// still pass, and Alice can still revoke it herself.
func TestRevokeScopedToSigner(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob, carol := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_carolaaaaaaaaaaaaaaaaaaaaa")
	ca, cb, cc := e.connect(alice), e.connect(bob), e.connect(carol)
	jti, _ := capability.NewJTI()
	cc.write(revokeFrame(t, carol, jti, e.clock.Now()))
	cc.expect(FrameRevoked)

	ca.send(capEnvelope(t, alice, bob, "capability.grant", jti, e.clock.Now()))
	deliveredAck(cb)
	cb.send(capEnvelope(t, bob, alice, "capability.call", jti, e.clock.Now()))
	deliveredAck(ca)
	// Carol's own traffic with that jti is what her revocation stops.
	v := capEnvelope(t, carol, bob, "capability.grant", jti, e.clock.Now())
	cc.write(Frame{Type: FrameSend, Envelope: &v})
	cc.expectError(CodeCapabilityRevoked)

	ca.write(revokeFrame(t, alice, jti, e.clock.Now()))
	ca.expect(FrameRevoked)
	v = capEnvelope(t, bob, alice, "capability.call", jti, e.clock.Now())
	cb.write(Frame{Type: FrameSend, Envelope: &v})
	f := cb.expectError(CodeCapabilityRevoked)
	// The revocation handed to Bob is Alice's, not Carol's.
	if f.Revocation == nil {
		t.Fatal("capability_revoked without the revocation")
	}
	if _, err := capability.VerifyStoredRevocation(*f.Revocation, alice.key.Public().Ed25519); err != nil {
		t.Fatalf("handed revocation is not Alice's: %v", err)
	}
	e.restart() // the scope is in the table, not only in memory
	ca, cb = e.connect(alice), e.connect(bob)
	cc = e.connect(carol)
	v = capEnvelope(t, bob, alice, "capability.call", jti, e.clock.Now())
	cb.write(Frame{Type: FrameSend, Envelope: &v})
	cb.expectError(CodeCapabilityRevoked)
	jti2, _ := capability.NewJTI()
	cc.write(revokeFrame(t, carol, jti2, e.clock.Now()))
	cc.expect(FrameRevoked)
	ca.send(capEnvelope(t, alice, bob, "capability.grant", jti2, e.clock.Now()))
}

// TestRevokeRateLimited: revoke frames are limited per sender (110,000
// were accepted in 41 s), with a rate_limited error frame carrying
// retryAfterMs; another user is not affected.
func TestRevokeRateLimited(t *testing.T) {
	e := newEnv(t, nil)
	alice, carol := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_carolaaaaaaaaaaaaaaaaaaaaa")
	ca := e.connect(alice)
	limited := 0
	for i := 0; i < DefaultRevocationsPerHour+1; i++ {
		jti, _ := capability.NewJTI()
		ca.write(revokeFrame(t, alice, jti, e.clock.Now()))
		f := ca.read()
		if f.Type == FrameError {
			if f.Code != CodeRateLimited || f.RetryAfterMs <= 0 {
				t.Fatalf("revoke %d: %+v", i, f)
			}
			limited++
		}
	}
	if limited != 1 {
		t.Fatalf("%d of %d revocations refused, want 1", limited, DefaultRevocationsPerHour+1)
	}
	jti, _ := capability.NewJTI()
	cc := e.connect(carol)
	cc.write(revokeFrame(t, carol, jti, e.clock.Now()))
	cc.expect(FrameRevoked)
	e.clock.Advance(time.Hour)
	ca.write(revokeFrame(t, alice, jti, e.clock.Now()))
	ca.expect(FrameRevoked)
}

// TestSnapshotSlotPerIssuer: a snapshot slot belongs to (jti, issuer).
// Carol, who learned Alice's jti, cannot squat the slot before Alice
// (Alice's put used to be refused not_issuer), and Carol's revocation of
// the jti does not delete Alice's snapshot.
func TestSnapshotSlotPerIssuer(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob, carol := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_carolaaaaaaaaaaaaaaaaaaaaa")
	ca, cb, cc := e.connect(alice), e.connect(bob), e.connect(carol)
	now := e.clock.Now()
	jti, _ := capability.NewJTI()
	put := func(c *client, iss *user, text string) {
		t.Helper()
		tok, err := capability.Issue(iss.key, capability.Claims{
			JTI: jti, Subject: bob.key.Public().Ed25519, Audience: "ctr_" + iss.id, Resource: "calendar",
			Scope: []capability.Op{capability.OpRead}, IssuedAt: now, Expires: now.Add(24 * time.Hour), Tier: capability.TierCached,
		})
		if err != nil {
			t.Fatal(err)
		}
		bpub := bob.key.Public().X25519
		blob, _ := iss.key.SealBox(&bpub, []byte(text))
		sig := base64.RawURLEncoding.EncodeToString(iss.key.Sign(SnapshotMessage(jti, blob)))
		c.write(Frame{Type: FrameSnapshotPut, JTI: jti.String(), Token: tok, Blob: blob, Sig: sig})
		c.expect(FrameSnapshotStored)
	}
	put(cc, carol, "carol's")
	put(ca, alice, "alice's")
	cc.write(revokeFrame(t, carol, jti, now))
	cc.expect(FrameRevoked)
	cb.write(Frame{Type: FrameSnapshotGet, JTI: jti.String(), Issuer: alice.key.Public().Ed25519Text()})
	got := cb.expect(FrameSnapshot)
	apub := alice.key.Public().X25519
	if m, err := bob.key.OpenBox(&apub, got.Blob); err != nil || string(m) != "alice's" {
		t.Fatalf("Bob got %q (%v), want Alice's snapshot", m, err)
	}
	if k, _ := crypto.ParseEd25519(got.Issuer); !k.Equal(alice.key.Public().Ed25519) {
		t.Fatalf("snapshot issuer %s", got.Issuer)
	}
}

// TestRevokeLegacyRecord: a revocation stored before revocations were
// scoped (no signer user) still stops traffic to or from the user whose
// key signed it, and only that.
func TestRevokeLegacyRecord(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob, carol := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_carolaaaaaaaaaaaaaaaaaaaaa")
	jti, _ := capability.NewJTI()
	r, _ := capability.SignRevocation(alice.key, jti, "", e.clock.Now())
	if _, err := e.st.PutRevocation(context.Background(), store.RelayRevocation{JTI: jti.String(), Issuer: alice.key.Public().Ed25519Text(),
		TS: e.clock.Now(), Revocation: r.Revocation, Sig: r.Sig}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	cb, cc := e.connect(bob), e.connect(carol)
	v := capEnvelope(t, bob, alice, "capability.call", jti, e.clock.Now())
	cb.write(Frame{Type: FrameSend, Envelope: &v})
	if f := cb.expectError(CodeCapabilityRevoked); f.Revocation == nil || f.Revocation.Sig != r.Sig {
		t.Fatalf("legacy refusal %+v", f)
	}
	cc.send(capEnvelope(t, carol, bob, "capability.call", jti, e.clock.Now()))
}
