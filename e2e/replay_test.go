package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/xtest"
)

// TestReplayedCallRunsOnce (issue 8, item 2): whoever runs the relay can
// read its store and queue envelopes. It copies Bob's capability.call and
// queues it for Alice again, first with a new id and a fresh ts (Alice's
// vault relocks and reconnects), then byte for byte while Alice's
// container is stopped, so that the restarted vault remembers nothing in
// memory (Bob's next call wakes it; the copy is delivered first). Alice's
// calendar API is called, and the share's budget spent, once per call Bob
// made.
func TestReplayedCallRunsOnce(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} })) // the fake API is on loopback
	cal := newFakeAPI(t, nil)
	ctx := context.Background()
	alice, au := env.Admin("alice@example.org")
	bob, _ := env.Invite(alice, "bob@example.org")
	const password = "alice's long password"
	av := readyVault(t, env, alice, password)
	readyVault(t, env, bob, "bob's long password")
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": cal.URL, "authHeader": "Authorization", "authValue": "Bearer cal"}, nil)

	// The relay operator: a trigger keeps a copy of every envelope the
	// relay stores (acknowledged ones are deleted).
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(env.Cfg.DataDir, store.FileName)+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TABLE captured (id TEXT, sender TEXT, recipient TEXT, ts INTEGER, type TEXT, jti TEXT, payload BLOB)`,
		`CREATE TRIGGER capture AFTER INSERT ON relay_envelopes BEGIN
			INSERT INTO captured VALUES (NEW.id, NEW.sender, NEW.recipient, NEW.ts, NEW.type, NEW.jti, NEW.payload); END`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	inject := func(id string, e api.RelayEnvelope, ts int64) {
		t.Helper()
		now := time.Now().UnixMilli()
		if _, err := db.Exec(`INSERT INTO relay_envelopes(id, seq, sender, recipient, ts, type, jti, payload, created_at, expires_at)
			VALUES(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM relay_envelopes), ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, e.Header.From, e.Header.To, ts, e.Header.Type, e.Header.JTI, e.Payload, now, now+3600_000); err != nil {
			t.Fatal(err)
		}
	}
	acked := func(id string) {
		t.Helper()
		xtest.Eventually(t, 30*time.Second, func() error {
			var n int
			if err := db.QueryRow(`SELECT COUNT(*) FROM relay_envelopes WHERE id = ?`, id).Scan(&n); err != nil || n != 0 {
				return fmt.Errorf("envelope %s still queued (%v)", id, err)
			}
			return nil
		})
	}

	var out struct {
		JTI string `json:"jti"`
	}
	av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"},
		"expiresIn": 3600, "maxCalls": 5}, &out)
	waitReceived(t, bob, out.JTI, 10*time.Second)
	call := func() {
		t.Helper()
		r, err := bob.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities/"+out.JTI+"/call", map[string]string{"operation": "read", "path": "/events"})
		if err != nil || r.Status != 200 {
			t.Fatalf("call: %v %d %s", err, r.Status, r.Body)
		}
	}
	prevHits, prevSpent := 0, 0
	// expect checks that the API was called, and the budget spent, want
	// times since the previous check.
	expect := func(what string, want int) {
		t.Helper()
		var l struct {
			Capabilities []struct {
				JTI   string `json:"jti"`
				Calls int    `json:"calls"`
			} `json:"capabilities"`
		}
		av.json("GET", "/capabilities?direction=issued", nil, &l)
		spent := -1
		for _, c := range l.Capabilities {
			if c.JTI == out.JTI {
				spent = c.Calls
			}
		}
		cal.mu.Lock()
		hits := len(cal.auths)
		cal.mu.Unlock()
		if hits-prevHits != want || spent-prevSpent != want {
			t.Errorf("%s: the API was called %d times and %d calls were spent; want %d", what, hits-prevHits, spent-prevSpent, want)
		}
		prevHits, prevSpent = hits, spent
	}

	call()
	expect("first call", 1)
	var orig api.RelayEnvelope
	if err := db.QueryRow(`SELECT id, sender, recipient, ts, type, jti, payload FROM captured WHERE type = ? ORDER BY rowid DESC LIMIT 1`, api.RelayTypeCall).
		Scan(&orig.Header.ID, &orig.Header.From, &orig.Header.To, &orig.Header.TS, &orig.Header.Type, &orig.Header.JTI, &orig.Payload); err != nil {
		t.Fatalf("no call captured: %v", err)
	}

	// A copy with a new id and a fresh ts; the issuer relocks and reconnects.
	b := make([]byte, 16)
	rand.Read(b)
	newID := base64.RawURLEncoding.EncodeToString(b)
	inject(newID, orig, time.Now().UnixMilli())
	disconnected := func() int { return strings.Count(env.Log.String(), `msg="relay disconnected" user=`+string(au.ID)) }
	before := disconnected()
	av.json("POST", "/lock", nil, nil)
	xtest.Eventually(t, 10*time.Second, func() error { // the vault notices the lock within 200 ms
		if disconnected() == before {
			return errString("the locked vault is still connected to the relay")
		}
		return nil
	})
	av.unlock(av.deriveKey(password))
	acked(newID)
	expect("a copy with a new id and a fresh ts", 0)

	// The same bytes again, delivered to a restarted issuer.
	for _, action := range []string{api.ActionPause, api.ActionStop} {
		if err := alice.AdminAction(ctx, string(au.ID), action); err != nil {
			t.Fatal(err)
		}
	}
	inject(orig.Header.ID, orig, orig.Header.TS)
	call()
	acked(orig.Header.ID)
	expect("the same envelope after a restart, then Bob's second call", 1)
	if age := time.Since(time.UnixMilli(orig.Header.TS)); age > 35*time.Second {
		t.Logf("note: the copy was %v old when delivered, near the freshness window (40 s)", age.Round(time.Second))
	}
}
