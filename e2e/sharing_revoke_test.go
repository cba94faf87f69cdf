package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/xtest"
)

// relayAs connects to the relay as userID with id's key (a signed-in user
// with a client of her own) and returns the connection after "ready".
func relayAs(t *testing.T, url, userID string, id *crypto.Identity) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	ch := readRelayFrame(t, ws)
	nonce, err := base64.RawURLEncoding.DecodeString(ch.Nonce)
	if err != nil {
		t.Fatalf("challenge %+v", ch)
	}
	writeRelayFrame(t, ws, api.RelayFrame{Type: api.RelayFrameAuth, User: userID,
		Sig: base64.RawURLEncoding.EncodeToString(id.Sign(api.RelayAuthMessage(nonce, userID)))})
	if f := readRelayFrame(t, ws); f.Type != api.RelayFrameReady {
		t.Fatalf("relay auth as %s: %+v", userID, f)
	}
	return ws
}

func readRelayFrame(t *testing.T, ws *websocket.Conn) api.RelayFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f api.RelayFrame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func writeRelayFrame(t *testing.T, ws *websocket.Conn, f api.RelayFrame) {
	t.Helper()
	b, _ := json.Marshal(f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// TestSharingStrangerCannotRevoke (issue 8): Carol, any signed-in user,
// connects to the relay with her own key and sends a revocation of
// Alice's grant to Bob, signed by herself. The relay refuses it
// (not_issuer); Bob's next call still works and both Alice and Bob still
// see the share active. Alice's own revocation then works as before.
func TestSharingStrangerCannotRevoke(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} }))
	cal := newFakeAPI(t, nil)
	ctx := context.Background()
	alice, _ := env.Admin("alice@example.org")
	bob, _ := env.Invite(alice, "bob@example.org")
	_, cu := env.Invite(alice, "carol@example.org")
	av := readyVault(t, env, alice, "alice's long password")
	readyVault(t, env, bob, "bob's long password")
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": cal.URL, "authHeader": "Authorization", "authValue": "Bearer x"}, nil)

	var out struct {
		JTI string `json:"jti"`
	}
	av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"}, "expiresIn": 3600}, &out)
	status := func(c *api.Client, direction string) string {
		t.Helper()
		var l struct {
			Capabilities []map[string]any `json:"capabilities"`
		}
		if err := c.JSON(ctx, "GET", "/api/v1/me/agent/vault/capabilities?direction="+direction, nil, &l); err != nil {
			t.Fatal(err)
		}
		for _, x := range l.Capabilities {
			if x["jti"] == out.JTI {
				return fmt.Sprint(x["status"])
			}
		}
		return "missing"
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if status(bob, "received") == "missing" {
			return errString("grant not received yet")
		}
		return nil
	})
	call := func() *api.Response {
		t.Helper()
		r, err := bob.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities/"+out.JTI+"/call", map[string]string{"operation": "read", "path": "/events"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := call(); r.Status != 200 {
		t.Fatalf("call before: %d %s", r.Status, r.Body)
	}

	carol, err := crypto.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	env.PublishKeys(string(cu.ID), carol)
	ws := relayAs(t, env.RelayURL(), string(cu.ID), carol)
	jti, err := capability.ParseJTI(out.JTI)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := capability.SignRevocation(carol, jti, "mischief", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writeRelayFrame(t, ws, api.RelayFrame{Type: api.RelayFrameRevoke, Issuer: carol.Public().Ed25519Text(), Revocation: &rev})
	if f := readRelayFrame(t, ws); f.Type != api.RelayFrameError || f.Code != "not_issuer" {
		t.Errorf("Carol's revocation of Alice's grant: %+v", f) // go on: what matters is what follows
	}

	if r := call(); r.Status != 200 || !strings.Contains(string(r.Body), "Dentist") {
		t.Fatalf("Bob's call after Carol's attempt: %d %s", r.Status, r.Body)
	}
	if a, b := status(alice, "issued"), status(bob, "received"); a != "active" || b != "active" {
		t.Fatalf("after Carol's attempt: Alice sees %s, Bob sees %s", a, b)
	}

	// Alice's own revocation still refuses Bob's next call, verified by
	// Bob's vault with Alice's key.
	if err := alice.JSON(ctx, "DELETE", "/api/v1/me/agent/vault/capabilities/"+out.JTI, nil, nil); err != nil {
		t.Fatal(err)
	}
	if r := call(); r.Status != 403 || r.ErrorCode() != "capability_revoked" {
		t.Fatalf("after Alice's revocation: %d %s", r.Status, r.Body)
	}
	if b := status(bob, "received"); b != "revoked" {
		t.Fatalf("Bob sees %s after Alice's revocation", b)
	}
}
