package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/xtest"
)

// recorder is an http.RoundTripper that keeps every response body the
// management role sends, for byte searches.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	all  bytes.Buffer
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.mu.Lock()
	r.all.Write(b)
	r.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, err
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.all.Bytes())
}

// record makes c keep every response body in the returned recorder.
func record(c *api.Client) *recorder {
	rt := c.HC.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	r := &recorder{next: rt}
	c.HC.Transport = r
	return r
}

// proveWay returns the body of POST /unlock or /recovery/reset: kind's KEK
// proved against a fresh challenge, plus extra fields.
func (v vaultAPI) proveWay(kind string, k crypto.KEK, extra map[string]any) map[string]any {
	v.t.Helper()
	var ch struct {
		ChallengeID string `json:"challengeId"`
		Challenge   string `json:"challenge"`
	}
	v.json("POST", "/unlock/challenge", nil, &ch)
	chb, _ := base64.StdEncoding.DecodeString(ch.Challenge)
	m := map[string]any{"kind": kind, "challengeId": ch.ChallengeID, "derivedKey": base64.StdEncoding.EncodeToString(k[:]),
		"proof": base64.StdEncoding.EncodeToString(crypto.UnlockProof(&k, chb))}
	for n, x := range extra {
		m[n] = x
	}
	return m
}

// unlockAnswer is POST /vault/unlock with kind's KEK proved against a
// fresh challenge; it returns the raw answer (any status).
func (v vaultAPI) unlockAnswer(kind string, k crypto.KEK) *api.Response {
	v.t.Helper()
	r, err := v.c.Do(context.Background(), "POST", "/api/v1/me/agent/vault/unlock", v.proveWay(kind, k, nil))
	if err != nil {
		v.t.Fatal(err)
	}
	return r
}

// newPassword derives a new password's KEK with fresh salt as the browser
// does and returns it with the request fields that carry it.
func (v vaultAPI) newPassword(password string, signOutAll bool) (crypto.KEK, map[string]any) {
	v.t.Helper()
	kdf := crypto.DefaultKDFParams()
	salt, _ := crypto.NewSalt()
	k, err := crypto.DeriveKEK([]byte(password), salt, kdf)
	if err != nil {
		v.t.Fatal(err)
	}
	return k, map[string]any{"newDerivedKey": base64.StdEncoding.EncodeToString(k[:]), "newSalt": base64.StdEncoding.EncodeToString(salt),
		"newKdf": kdf, "signOutAll": signOutAll}
}

// containerData returns the files under /data of the user's container.
func containerData(t *testing.T, cli *client.Client, uid string) map[string][]byte {
	t.Helper()
	return copyContainerDir(t, cli, "ocmt-"+uid, "/data")
}

// TestWaysLeaveNoKeysOnPlatform (issue 10, byte search): ways back in are
// set up, used to unlock and to reset the password through the management
// role, with Docker containers; afterwards no derived key (recovery phrase,
// backup key, old or new password) is in the platform's data directory,
// its logs, any response body management sent, or the container's /data
// (which holds only wraps).
func TestWaysLeaveNoKeysOnPlatform(t *testing.T) {
	env, cli := dockerEnv(t)
	admin, au := env.Admin("alice@example.org")
	rec := record(admin)
	v, pw := readyVaultKey(t, env, admin, e2ePassword)
	v.json("PUT", "/apikeys/anthropic", map[string]string{"key": e2eAPIKey}, nil)
	phrase, backup := randomKEK(t), randomKEK(t)
	v.json("PUT", "/ways/phrase", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(phrase[:])}, nil)
	v.json("PUT", "/ways/backup-key", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(backup[:])}, nil)
	v.json("POST", "/lock", nil, nil)
	v.json("POST", "/unlock", v.proveWay("backup-key", backup, nil), nil)
	v.json("POST", "/lock", nil, nil)
	newPW, fields := v.newPassword("a brand new password for alice", false)
	v.json("POST", "/recovery/reset", v.proveWay("phrase", phrase, fields), nil)
	var ways struct {
		Wraps []struct{ Kind string } `json:"wraps"`
	}
	v.json("GET", "/ways", nil, &ways)
	if len(ways.Wraps) != 3 {
		t.Fatalf("ways after reset: %+v", ways)
	}
	// The audit log has the reset and the ways as metadata.
	var audit struct {
		Events []api.AuditEvent `json:"events"`
	}
	admin.JSON(context.Background(), "GET", "/api/v1/audit?action=vault.", nil, &audit)
	seen := map[string]bool{}
	for _, e := range audit.Events {
		seen[e.Action+"/"+e.Detail["kind"]] = true
	}
	for _, want := range []string{"vault.password_reset/", "vault.way_added/phrase", "vault.way_added/backup-key"} {
		if !seen[want] {
			t.Errorf("no audit event %s in %v", want, seen)
		}
	}
	// The owner is mailed for each way added and for the reset, so that a
	// stolen session cannot add a lasting way in silently.
	xtest.Eventually(t, 30*time.Second, func() error {
		var added, reset int
		for _, m := range env.Mails("alice@example.org") {
			switch {
			case m.Subject == "A new way into your ocmt vault was added" && (strings.Contains(m.Body, "recovery phrase") || strings.Contains(m.Body, "backup key")):
				added++
			case m.Subject == "The password of your ocmt vault was reset" && strings.Contains(m.Body, "recovery phrase"):
				reset++
			}
		}
		if added != 2 || reset != 1 {
			return fmt.Errorf("mails: %d way added, %d reset; want 2 and 1", added, reset)
		}
		return nil
	})
	files := containerData(t, cli, string(au.ID))
	env.Stop()

	search := newLeakSearch(t)
	for i, k := range []crypto.KEK{pw, phrase, backup, newPW} {
		search.key([]string{"the password KEK", "the phrase KEK", "the backup key KEK", "the new password KEK"}[i], k[:])
	}
	search.in("management responses", rec.bytes())
	search.platform(env)
	search.files("container ", files)
	if len(files) < 3 || len(rec.bytes()) == 0 {
		t.Fatalf("searched %d container files, %d response bytes: the search proves nothing", len(files), len(rec.bytes()))
	}
}

func randomKEK(t *testing.T) crypto.KEK {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	k, err := crypto.KEKFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
