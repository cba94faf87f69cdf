package vault

import (
	"context"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
)

// resolved is what the management role injects for contact v.
func (v *sharingVault) resolved() map[string]any {
	s := v.subject()
	return map[string]any{"userId": v.user, "email": v.user + "@example.org", "signed": s["signed"]}
}

func (v *sharingVault) held(owner string) *heldShare {
	k := v.s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sec == nil {
		return nil
	}
	if h := k.sec.HeldShares[owner]; h != nil {
		c := *h
		return &c
	}
	return nil
}

// TestSocialEnvelopes: a split reaches each contact through the relay and
// is confirmed back; a contact keeps only what its sender may give it (a
// share naming another owner, or a drop from someone else, changes
// nothing of the owner's); a release is sealed to the request's key and
// bound to the request; a locked vault or a low-order key releases
// nothing.
func TestSocialEnvelopes(t *testing.T) {
	relayURL, dir, logs := startTestRelay(t)
	alice := newSharingVault(t, "usr_aliceaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
	bob := newSharingVault(t, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
	carol := newSharingVault(t, "usr_carolaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
	waitFor(t, "relay connections", 10*time.Second, func() bool {
		return alice.s.relay.connected() && bob.s.relay.connected() && carol.s.relay.connected()
	})
	st, body := alice.do("PUT", "/vault/ways/social", map[string]any{"threshold": 2,
		"resolved": []any{bob.resolved(), carol.resolved()}})
	if st != http.StatusOK {
		t.Fatalf("setup: %d %v", st, body)
	}
	waitFor(t, "shares held", 10*time.Second, func() bool { return bob.held(alice.user) != nil && carol.held(alice.user) != nil })
	waitFor(t, "receipts", 10*time.Second, func() bool {
		_, w := alice.do("GET", "/vault/ways", nil)
		s, _ := w["social"].(map[string]any)
		cs, _ := s["contacts"].([]any)
		for _, c := range cs {
			if c.(map[string]any)["held"] != true {
				return false
			}
		}
		return len(cs) == 2
	})
	before := bob.held(alice.user)

	// Carol tries to plant a share of Alice's at Bob, then to drop Alice's.
	bobX := bob.s.keys.id.Public().X25519
	forge := func(typ string, p *socialPayload) *api.RelayEnvelope {
		k := carol.s.keys
		k.mu.Lock()
		defer k.mu.Unlock()
		env, err := carol.s.socialEnvelopeLocked(bob.user, crypto.FormatX25519(&bobX), typ, p)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	msg, _ := (&crypto.SocialShare{Owner: alice.user, Epoch: before.Epoch + 1, Threshold: 2, Share: make([]byte, crypto.SocialShareSize)}).Marshal()
	sealed, _ := crypto.SealToX25519(&bobX, msg)
	bob.s.handleEnvelope(context.Background(), forge(envSocialShare, &socialPayload{Epoch: before.Epoch + 1, Threshold: 2, Sealed: sealed}))
	bob.s.handleEnvelope(context.Background(), forge(envSocialDrop, &socialPayload{Epoch: before.Epoch + 5}))
	if h := bob.held(carol.user); h != nil {
		t.Fatalf("bob keeps a share from carol naming alice: %+v", h)
	}
	if h := bob.held(alice.user); h == nil || h.Epoch != before.Epoch || string(h.Sealed) != string(before.Sealed) {
		t.Fatalf("alice's share at bob changed: %+v", h)
	}

	// Release: sealed to the request's key, bound to it.
	pub, priv, _ := crypto.NewSocialKeyPair()
	st, rel := bob.do("POST", "/vault/social/held/"+alice.user+"/release", map[string]string{"requestId": "rec_1", "publicKey": b64(pub[:])})
	if st != http.StatusOK {
		t.Fatalf("release: %d %v", st, rel)
	}
	c, _ := base64.StdEncoding.DecodeString(rel["sealedShare"].(string))
	plain, err := crypto.OpenSealedWith(pub, priv, c)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := crypto.UnmarshalSocialShare(plain)
	if err != nil || sh.Owner != alice.user || sh.Request != "rec_1" || sh.Epoch != before.Epoch || sh.Threshold != 2 {
		t.Fatalf("released share: %+v %v", sh, err)
	}
	if st, body := bob.do("POST", "/vault/social/held/"+alice.user+"/release", map[string]string{"requestId": "rec_1", "publicKey": b64(make([]byte, 32))}); st != http.StatusBadRequest || errCode(body) != "invalid_public_key" {
		t.Fatalf("release to a low-order key: %d %v", st, body)
	}
	if st, body := bob.do("POST", "/vault/social/held/usr_nobody/release", map[string]string{"requestId": "rec_1", "publicKey": b64(pub[:])}); st != http.StatusNotFound {
		t.Fatalf("release of a share never held: %d %v", st, body)
	}
	bob.do("POST", "/vault/lock", nil)
	if st, body := bob.do("POST", "/vault/social/held/"+alice.user+"/release", map[string]string{"requestId": "rec_1", "publicKey": b64(pub[:])}); st != http.StatusLocked {
		t.Fatalf("release while locked: %d %v", st, body)
	}

	// Removing the social way tells the contacts to drop their shares.
	if st, body := alice.do("DELETE", "/vault/ways/social", nil); st != http.StatusOK {
		t.Fatalf("delete: %d %v", st, body)
	}
	waitFor(t, "carol drops", 10*time.Second, func() bool { return carol.held(alice.user) == nil })
	if _, w := alice.do("GET", "/vault/ways", nil); w["social"] != nil {
		t.Fatalf("ways after delete: %v", w)
	}
}
