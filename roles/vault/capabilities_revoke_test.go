package vault

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
)

// lyingRelay is a relay that refuses every capability call as revoked
// (the relay is untrusted: it may be compromised, or fooled by someone
// else's revocation). answer, set by the test, is the error frame it
// sends; late makes it first accept the call and send the error after.
type lyingRelay struct {
	mu     sync.Mutex
	answer api.RelayFrame
	late   bool
	// revokeAnswer is the answer to every revoke frame.
	revokeAnswer api.RelayFrame
}

func (l *lyingRelay) set(f api.RelayFrame, late bool) {
	l.mu.Lock()
	l.answer, l.late = f, late
	l.mu.Unlock()
}

// start serves the relay protocol's handshake (any signature is taken)
// and answers send frames; it returns the WebSocket URL.
func (l *lyingRelay) start(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := r.Context()
		nonce := make([]byte, 32)
		rand.Read(nonce)
		if writeFrame(ctx, ws, &api.RelayFrame{Type: api.RelayFrameChallenge, Nonce: base64.RawURLEncoding.EncodeToString(nonce)}) != nil {
			return
		}
		if _, err := readFrame(ctx, ws); err != nil {
			return
		}
		writeFrame(ctx, ws, &api.RelayFrame{Type: api.RelayFrameReady})
		for {
			f, err := readFrame(ctx, ws)
			if err != nil {
				return
			}
			if f.Type == api.RelayFrameRevoke {
				l.mu.Lock()
				a := l.revokeAnswer
				l.mu.Unlock()
				writeFrame(ctx, ws, &a)
				continue
			}
			if f.Type != api.RelayFrameSend || f.Envelope == nil {
				continue
			}
			l.mu.Lock()
			a, late := l.answer, l.late
			l.mu.Unlock()
			a.Type, a.ID = api.RelayFrameError, f.Envelope.Header.ID
			if late {
				writeFrame(ctx, ws, &api.RelayFrame{Type: api.RelayFrameAccepted, ID: a.ID})
			}
			writeFrame(ctx, ws, &a)
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestRelayRevocationMustVerify (issue 8): a recipient's vault marks a
// received share revoked for good only when the relay shows a revocation
// of that jti signed by the token's issuer. A bare capability_revoked, one
// signed by someone else, one of another jti, or a late relay error is a
// temporary refusal (503 relay_refused) and the share stays active; the
// issuer's own revocation, even an old one, revokes it.
func TestRelayRevocationMustVerify(t *testing.T) {
	lr := &lyingRelay{}
	url := lr.start(t)
	dir := &mapDir{keys: map[string]ed25519.PublicKey{}}
	bob := newSharingVault(t, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", url, dir, &syncBuf{})
	waitFor(t, "relay connection", 5*time.Second, bob.s.relay.connected)

	alice, _ := crypto.NewIdentity()
	carol, _ := crypto.NewIdentity()
	jti, _ := capability.NewJTI()
	now := time.Now()
	tok, err := capability.Issue(alice, capability.Claims{JTI: jti, Subject: bob.s.keys.id.Public().Ed25519, Audience: "usr_aliceaaaaaaaaaaaaaaaaaaaaa",
		Resource: "calendar", Scope: []capability.Op{capability.OpRead}, IssuedAt: now, Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	k := bob.s.keys
	k.mu.Lock()
	cs := bob.s.capsForTest()
	cs.Received[jti.String()] = &receivedCap{JTI: jti.String(), Token: tok, IssuerUserID: "usr_aliceaaaaaaaaaaaaaaaaaaaaa",
		IssuerEd25519: alice.Public().Ed25519Text(), IssuerX25519: alice.Public().X25519Text(), Resource: "calendar",
		Scope: []string{"read"}, Exp: now.Add(time.Hour).Unix(), ReceivedAt: now.Unix()}
	if err := bob.s.saveCapsLocked(cs); err != nil {
		t.Fatal(err)
	}
	k.mu.Unlock()

	status := func() string {
		_, l := bob.do("GET", "/vault/capabilities?direction=received", nil)
		return l["capabilities"].([]any)[0].(map[string]any)["status"].(string)
	}
	call := func() (int, map[string]any) {
		return bob.do("POST", "/vault/capabilities/"+jti.String()+"/call", map[string]any{"operation": "read", "path": "/events"})
	}
	sign := func(by *crypto.Identity, j capability.JTI, ts time.Time) *capability.Revocation {
		r, err := capability.SignRevocation(by, j, "", ts)
		if err != nil {
			t.Fatal(err)
		}
		return &r
	}
	other, _ := capability.NewJTI()
	revoked := api.RelayFrame{Code: "capability_revoked", JTI: jti.String()}
	for _, c := range []struct {
		name string
		rev  *capability.Revocation
		late bool
	}{
		{"no revocation shown", nil, false},
		{"signed by Carol", sign(carol, jti, now), false},
		{"Alice's revocation of another jti", sign(alice, other, now), false},
		{"late error after accepted", sign(carol, jti, now), true},
		{"malformed", &capability.Revocation{Revocation: "e30", Sig: "x"}, false},
	} {
		f := revoked
		f.Revocation = c.rev
		lr.set(f, c.late)
		st, body := call()
		if st != http.StatusServiceUnavailable || errCode(body) != "relay_refused" {
			t.Fatalf("%s: %d %v, want 503 relay_refused", c.name, st, body)
		}
		if s := status(); s != "active" {
			t.Fatalf("%s: the share is %s for good", c.name, s)
		}
	}
	f := revoked
	f.Revocation = sign(alice, jti, now.Add(-24*time.Hour)) // old but Alice's: still true
	lr.set(f, false)
	if st, body := call(); st != http.StatusForbidden || errCode(body) != "capability_revoked" {
		t.Fatalf("Alice's revocation: %d %v", st, body)
	}
	if s := status(); s != "revoked" {
		t.Fatalf("after Alice's revocation: %s", s)
	}
}

// TestRevokeRefusalAnswersAtOnce: the relay's refusals of a revoke frame
// that name no envelope (not_issuer, rate_limited) reach the waiting
// revocation at once instead of leaving it to time out.
func TestRevokeRefusalAnswersAtOnce(t *testing.T) {
	for _, code := range []string{"not_issuer", "rate_limited", "revocation_stale"} {
		lr := &lyingRelay{revokeAnswer: api.RelayFrame{Type: api.RelayFrameError, Code: code}}
		url := lr.start(t)
		v := newSharingVault(t, "usr_aliceaaaaaaaaaaaaaaaaaaaaa", url, &mapDir{keys: map[string]ed25519.PublicKey{}}, &syncBuf{})
		waitFor(t, "relay connection", 5*time.Second, v.s.relay.connected)
		jti, _ := capability.NewJTI()
		v.s.keys.mu.Lock()
		f, err := v.s.revokeFrameLocked(jti)
		v.s.keys.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = v.s.relay.revoke(t.Context(), f)
		var rr *relayRefusal
		if !errors.As(err, &rr) || rr.code != code || time.Since(start) > time.Second {
			t.Fatalf("%s: %v after %v", code, err, time.Since(start))
		}
	}
}
