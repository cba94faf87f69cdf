package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/xtest"
)

// socialPeer is one signed-in user with a ready vault.
type socialPeer struct {
	email string
	id    string
	c     *api.Client
	v     vaultAPI
}

// socialBrowser is what the owner's browser does in a recovery, with the
// same Go code as kdf.wasm: a one-time key pair, then the KEK rebuilt from
// the released shares.
type socialBrowser struct {
	pub, priv *[32]byte
	id        string // request id
	code      string // the safety code the owner reads to contacts
}

type recoveryStatus struct {
	ID           string   `json:"id"`
	Status       string   `json:"status"`
	Threshold    int      `json:"threshold"`
	Approvals    int      `json:"approvals"`
	ApprovedBy   []string `json:"approvedBy"`
	Code         string   `json:"code"`
	SealedShares [][]byte `json:"sealedShares"`
}

func startRecovery(t *testing.T, owner socialPeer) *socialBrowser {
	t.Helper()
	pub, priv, err := crypto.NewSocialKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		ID        string   `json:"id"`
		Threshold int      `json:"threshold"`
		Contacts  []string `json:"contacts"`
		Code      string   `json:"code"`
	}
	if err := owner.c.JSON(context.Background(), "POST", "/api/v1/me/recovery/requests", map[string]string{"publicKey": base64.StdEncoding.EncodeToString(pub[:])}, &out); err != nil {
		t.Fatalf("start recovery: %v", err)
	}
	if out.ID == "" || out.Code != crypto.SocialSafetyCode(pub[:]) {
		t.Fatalf("start recovery: %+v", out)
	}
	return &socialBrowser{pub: pub, priv: priv, id: out.ID, code: out.Code}
}

func (b *socialBrowser) status(t *testing.T, owner socialPeer) recoveryStatus {
	t.Helper()
	var st recoveryStatus
	if err := owner.c.JSON(context.Background(), "GET", "/api/v1/me/recovery/requests/"+b.id, nil, &st); err != nil {
		t.Fatalf("recovery status: %v", err)
	}
	return st
}

// plainShares opens the released shares (test-only: to search for them).
func (b *socialBrowser) plainShares(t *testing.T, sealed [][]byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, c := range sealed {
		msg, err := crypto.OpenSealedWith(b.pub, b.priv, c)
		if err != nil {
			t.Fatalf("open released share: %v", err)
		}
		sh, err := crypto.UnmarshalSocialShare(msg)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sh.Share)
	}
	return out
}

// approve approves the request as contact, typing code.
func approve(t *testing.T, contact socialPeer, requestID, code string) *api.Response {
	t.Helper()
	r, err := contact.c.Do(context.Background(), "POST", "/api/v1/me/recovery/inbox/"+requestID+"/approve", map[string]string{"code": code})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// socialReset answers a challenge with kek (kind social) and sets password.
func socialReset(t *testing.T, v vaultAPI, requestID string, kek crypto.KEK, password string) *api.Response {
	t.Helper()
	ctx := context.Background()
	var ch struct {
		ChallengeID string `json:"challengeId"`
		Challenge   string `json:"challenge"`
	}
	v.json("POST", "/unlock/challenge", nil, &ch)
	chb, _ := base64.StdEncoding.DecodeString(ch.Challenge)
	var p struct {
		KDF crypto.KDFParams `json:"kdf"`
	}
	v.json("GET", "/params", nil, &p)
	salt := make([]byte, 16)
	rand.Read(salt)
	nk, err := crypto.DeriveKEK([]byte(password), salt, p.KDF)
	if err != nil {
		t.Fatal(err)
	}
	r, err := v.c.Do(ctx, "POST", "/api/v1/me/agent/vault/recovery/reset", map[string]any{"kind": "social", "requestId": requestID,
		"challengeId": ch.ChallengeID, "derivedKey": base64.StdEncoding.EncodeToString(kek[:]), "proof": base64.StdEncoding.EncodeToString(crypto.UnlockProof(&kek, chb)),
		"newDerivedKey": base64.StdEncoding.EncodeToString(nk[:]), "newSalt": base64.StdEncoding.EncodeToString(salt), "newKdf": p.KDF})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryUnlock reports the status of an unlock with password.
func tryUnlock(t *testing.T, v vaultAPI, password string) int {
	t.Helper()
	return v.unlockAnswer("password", v.deriveKey(password)).Status
}

// waitHeld waits until contact's vault holds owner's share of an epoch
// other than notEpoch (0 = any) and returns its epoch.
func waitHeld(t *testing.T, contact socialPeer, owner string, notEpoch uint32) uint32 {
	t.Helper()
	var epoch uint32
	xtest.Eventually(t, 20*time.Second, func() error {
		var out struct {
			Held []struct {
				Owner string `json:"owner"`
				Epoch uint32 `json:"epoch"`
			} `json:"held"`
		}
		if err := contact.c.JSON(context.Background(), "GET", "/api/v1/me/agent/vault/social/held", nil, &out); err != nil {
			return err
		}
		for _, h := range out.Held {
			if h.Owner == owner && h.Epoch != notEpoch {
				epoch = h.Epoch
				return nil
			}
		}
		return errString(contact.email + " holds no share yet: " + mustJSONString(out))
	})
	return epoch
}

func socialPeers(t *testing.T, env *xtest.Env, names ...string) []socialPeer {
	t.Helper()
	admin, au := env.Admin(names[0] + "@example.org")
	peers := []socialPeer{{email: names[0] + "@example.org", id: string(au.ID), c: admin}}
	for _, n := range names[1:] {
		c, u := env.Invite(admin, n+"@example.org")
		peers = append(peers, socialPeer{email: n + "@example.org", id: string(u.ID), c: c})
	}
	for i := range peers {
		peers[i].v = readyVault(t, env, peers[i].c, peers[i].email+" long password")
	}
	return peers
}

func setupContacts(t *testing.T, owner socialPeer, threshold int, contacts ...socialPeer) map[string]any {
	t.Helper()
	var emails []string
	for _, c := range contacts {
		emails = append(emails, c.email)
	}
	var out map[string]any
	owner.v.json("PUT", "/ways/social", map[string]any{"threshold": threshold, "resolved": resolveContacts(t, owner, emails...)}, &out)
	return out
}

// resolveContacts asks management's directory for the signed key records
// of the given addresses, as the browser does before PUT /ways/social.
func resolveContacts(t *testing.T, owner socialPeer, emails ...string) json.RawMessage {
	t.Helper()
	var out struct {
		Resolved json.RawMessage `json:"resolved"`
	}
	if err := owner.c.JSON(context.Background(), "POST", "/api/v1/me/recovery/contacts", map[string]any{"contacts": emails}, &out); err != nil {
		t.Fatalf("resolve contacts: %v", err)
	}
	return out.Resolved
}

// secretForms returns the ways a secret could be written down: raw, hex,
// base64 (standard and URL, padded or not).
func secretForms(b []byte) [][]byte {
	return [][]byte{b, []byte(hex.EncodeToString(b)), []byte(base64.StdEncoding.EncodeToString(b)), []byte(base64.RawStdEncoding.EncodeToString(b)),
		[]byte(base64.URLEncoding.EncodeToString(b)), []byte(base64.RawURLEncoding.EncodeToString(b))}
}

// TestSocialRecoveryThreeOfFive (issue 10): Alice picks five trusted
// contacts, 3 of 5, with real containers and the real relay; she locks her
// vault and starts a recovery from her "browser" (the same Go code as
// kdf.wasm); two approvals do not open it, the third does and she sets a
// new password (the old one is refused, her key is intact). She is mailed
// when the request starts and it is audited. The relay and management
// databases and the logs hold no share, secret or KEK; contacts who did
// not approve saw nothing of them; an expired request cannot be approved
// or completed.
func TestSocialRecoveryThreeOfFive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	var skew atomic.Int64
	env := xtest.NewEnv(t, xtest.WithRuntime(config.RuntimeDocker),
		xtest.WithClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }))
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	containerData := func(uid string) []byte {
		res, err := cli.CopyFromContainer(context.Background(), "ocmt-"+uid, client.CopyFromContainerOptions{SourcePath: "/data"})
		if err != nil {
			t.Errorf("copy /data: %v", err)
			return nil
		}
		defer res.Content.Close()
		b, _ := io.ReadAll(res.Content)
		return b
	}
	start := time.Now()
	peers := socialPeers(t, env, "alice", "bob", "carol", "dave", "erin", "frank")
	t.Logf("six users with vaults in %v", time.Since(start).Round(time.Millisecond))
	alice, contacts := peers[0], peers[1:]
	const aliceKey = "sk-ant-alice-social-0123456789"
	alice.v.json("PUT", "/apikeys/anthropic", map[string]string{"key": aliceKey}, nil)

	// Setup: five contacts, three needed; every contact's vault gets its share.
	t0 := time.Now()
	ways := setupContacts(t, alice, 3, contacts...)
	social, _ := ways["social"].(map[string]any)
	if social == nil || social["threshold"] != float64(3) || len(social["contacts"].([]any)) != 5 {
		t.Fatalf("ways after setup: %v", ways)
	}
	t.Logf("setup answered in %v", time.Since(t0).Round(time.Millisecond))
	for _, c := range contacts {
		waitHeld(t, c, alice.id, 0)
	}
	t.Logf("all five shares held %v after setup", time.Since(t0).Round(time.Millisecond))
	// Each contact's vault tells Alice's that it keeps its share.
	xtest.Eventually(t, 20*time.Second, func() error {
		var ws struct {
			Social struct {
				Contacts []struct {
					Email string `json:"email"`
					Held  bool   `json:"held"`
				} `json:"contacts"`
			} `json:"social"`
		}
		alice.v.json("GET", "/ways", nil, &ws)
		for _, c := range ws.Social.Contacts {
			if !c.Held {
				return errString(c.Email + " has not confirmed yet")
			}
		}
		return nil
	})
	t.Logf("all five confirmed to the owner %v after setup", time.Since(t0).Round(time.Millisecond))

	// Alice forgets her password.
	alice.v.json("POST", "/lock", nil, nil)
	t1 := time.Now()
	req := startRecovery(t, alice)
	xtest.Eventually(t, 10*time.Second, func() error {
		for _, m := range env.Mails(alice.email) {
			if m.Subject == "A recovery of your ocmt vault was started" && strings.Contains(m.Body, "not you") {
				return nil
			}
		}
		return errString("no recovery mail to alice")
	})
	var audit struct {
		Events []api.AuditEvent `json:"events"`
	}
	alice.c.JSON(context.Background(), "GET", "/api/v1/audit?action=recovery.", nil, &audit)
	if len(audit.Events) == 0 || audit.Events[0].Action != "recovery.requested" {
		t.Fatalf("recovery not audited: %+v", audit.Events)
	}

	// Each contact is mailed, in words, without the code.
	xtest.Eventually(t, 10*time.Second, func() error {
		for _, c := range contacts {
			ms := env.Mails(c.email)
			if len(ms) == 0 || ms[0].Subject != alice.email+" asks you to help unlock their ocmt vault" || !strings.Contains(ms[0].Body, "in person") {
				return errString("no recovery mail to " + c.email)
			}
			if strings.Contains(ms[0].Body, req.code) {
				t.Fatalf("the mail to %s holds the code", c.email)
			}
		}
		return nil
	})
	// Contacts see it in their inbox, in words.
	var inbox struct {
		Requests []map[string]any `json:"requests"`
	}
	contacts[0].c.JSON(context.Background(), "GET", "/api/v1/me/recovery/inbox", nil, &inbox)
	if len(inbox.Requests) != 1 || inbox.Requests[0]["ownerEmail"] != alice.email || inbox.Requests[0]["id"] != req.id {
		t.Fatalf("bob's inbox: %v", inbox)
	}
	// Someone who is not a contact cannot approve (nor see it).
	if r := approve(t, alice, req.id, req.code); r.Status != 404 {
		t.Fatalf("the owner approved her own request: %d %s", r.Status, r.Body)
	}

	// A contact who types a wrong code does not approve.
	wrongCode := "000000"
	if req.code == wrongCode {
		wrongCode = "000001"
	}
	if r := approve(t, contacts[0], req.id, wrongCode); r.Status != 400 || r.ErrorCode() != "wrong_code" {
		t.Fatalf("approved with a wrong code: %d %s", r.Status, r.Body)
	}
	// Two approvals are not enough.
	for _, c := range contacts[:2] {
		if r := approve(t, c, req.id, req.code); r.Status != 200 {
			t.Fatalf("%s approves: %d %s", c.email, r.Status, r.Body)
		}
	}
	if r := approve(t, contacts[0], req.id, req.code); r.Status != 409 {
		t.Fatalf("approved twice: %d %s", r.Status, r.Body)
	}
	st := req.status(t, alice)
	if st.Approvals != 2 || len(st.SealedShares) != 2 || st.Threshold != 3 {
		t.Fatalf("status after two approvals: %+v", st)
	}
	if _, n, err := crypto.RecoverSocialKEK(req.pub, req.priv, alice.id, req.id, st.SealedShares); !errors.Is(err, crypto.ErrSocialShares) || n != 2 {
		t.Fatalf("two shares recovered: %d %v", n, err)
	}
	two := req.plainShares(t, st.SealedShares)
	s2, err := crypto.CombineSocialShares(two)
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := crypto.SocialKEK(s2)
	if r := socialReset(t, alice.v, req.id, wrong, "alice new password"); r.Status != 401 {
		t.Fatalf("two shares reset the password: %d %s", r.Status, r.Body)
	}
	time.Sleep(time.Second) // the vault's backoff after a wrong key

	// The third opens it.
	if r := approve(t, contacts[2], req.id, req.code); r.Status != 200 {
		t.Fatalf("third approval: %d %s", r.Status, r.Body)
	}
	st = req.status(t, alice)
	kek, n, err := crypto.RecoverSocialKEK(req.pub, req.priv, alice.id, req.id, st.SealedShares)
	if err != nil || n != 3 {
		t.Fatalf("three shares: %d %v", n, err)
	}
	three := req.plainShares(t, st.SealedShares)
	secret, err := crypto.CombineSocialShares(three)
	if err != nil {
		t.Fatal(err)
	}
	t2 := time.Now()
	if r := socialReset(t, alice.v, req.id, kek, "alice new password"); r.Status != 200 {
		t.Fatalf("reset with three shares: %d %s", r.Status, r.Body)
	}
	t.Logf("reset %v (from the third approval's shares, incl. one Argon2id); request to reset %v",
		time.Since(t2).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	var keys struct {
		Providers []map[string]any `json:"providers"`
	}
	alice.v.json("GET", "/apikeys", nil, &keys)
	if len(keys.Providers) != 1 || keys.Providers[0]["provider"] != "anthropic" {
		t.Fatalf("key lost: %+v", keys)
	}
	alice.v.json("POST", "/lock", nil, nil)
	if s := tryUnlock(t, alice.v, alice.email+" long password"); s != 401 {
		t.Fatalf("old password: %d", s)
	}
	time.Sleep(time.Second)
	if s := tryUnlock(t, alice.v, "alice new password"); s != 200 {
		t.Fatalf("new password: %d", s)
	}
	if st := req.status(t, alice); st.Status != "completed" || len(st.SealedShares) != 0 {
		t.Fatalf("after reset: %+v", st)
	}
	if r := approve(t, contacts[3], req.id, req.code); r.Status != 409 {
		t.Fatalf("approval after completion: %d %s", r.Status, r.Body)
	}

	// An expired request cannot be completed: three approvals, then 73 h.
	alice.v.json("POST", "/lock", nil, nil)
	req2 := startRecovery(t, alice)
	for _, c := range contacts[1:4] {
		if r := approve(t, c, req2.id, req2.code); r.Status != 200 {
			t.Fatalf("%s approves: %d %s", c.email, r.Status, r.Body)
		}
	}
	st2 := req2.status(t, alice)
	kek2, _, err := crypto.RecoverSocialKEK(req2.pub, req2.priv, alice.id, req2.id, st2.SealedShares)
	if err != nil {
		t.Fatal(err)
	}
	more := req2.plainShares(t, st2.SealedShares)
	skew.Store(int64(73 * time.Hour))
	if st := req2.status(t, alice); st.Status != "expired" || len(st.SealedShares) != 0 {
		t.Fatalf("expired request: %+v", st)
	}
	if r := approve(t, contacts[4], req2.id, req2.code); r.Status != 410 {
		t.Fatalf("approval of an expired request: %d %s", r.Status, r.Body)
	}
	if r := socialReset(t, alice.v, req2.id, kek2, "alice third password"); r.Status != 410 {
		t.Fatalf("reset with an expired request: %d %s", r.Status, r.Body)
	}
	skew.Store(0)

	// Contacts who did not approve the first request learned nothing: their
	// answers carry no share, and neither do the ones of those who did.
	findings := map[string][]byte{"secret": secret, "kek": kek[:], "kek2": kek2[:]}
	for i, s := range append(three, more...) {
		findings[fmt.Sprintf("share%d", i)] = s
	}
	check := func(where string, b []byte) {
		t.Helper()
		for name, v := range findings {
			for _, f := range secretForms(v) {
				if bytes.Contains(b, f) {
					t.Errorf("%s holds %s", where, name)
				}
			}
		}
	}
	for _, c := range contacts[3:] {
		for _, path := range []string{"/api/v1/me/recovery/inbox", "/api/v1/me/agent/vault/social/held", "/api/v1/me/recovery/requests/" + req.id, "/api/v1/audit"} {
			r, err := c.c.Do(context.Background(), "GET", path, nil)
			if err != nil {
				t.Fatal(err)
			}
			check(c.email+" GET "+path, r.Body)
		}
		if r, _ := c.c.Do(context.Background(), "GET", "/api/v1/me/recovery/requests/"+req.id, nil); r.Status != 404 {
			t.Errorf("%s reads alice's request: %d", c.email, r.Status)
		}
	}
	// The platform's disks (relay and management share ocmt.db in role
	// all) and logs, and every user's container data.
	filepath.WalkDir(env.Cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			check(p, b)
		}
		return nil
	})
	check("log", []byte(env.Log.String()))
	check("console", []byte(env.Out.String()))
	for _, p := range peers {
		check(p.email+"'s /data", containerData(p.id))
	}
}

// vaultFileSize is the size of the user's vault file (process runtime:
// below the data directory).
func vaultFileSize(t *testing.T, env *xtest.Env, uid string) int64 {
	t.Helper()
	var size int64 = -1
	filepath.WalkDir(env.Cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "vault.ocv" && strings.Contains(p, uid) {
			if fi, err := d.Info(); err == nil {
				size = fi.Size()
			}
		}
		return nil
	})
	if size < 0 {
		t.Fatalf("no vault file for %s", uid)
	}
	return size
}

// TestSocialRemoveContactResplits: removing a contact makes a new split
// (new epoch): the removed contact drops its share and is no longer asked,
// the others hold shares of the new split, and shares of the old split no
// longer open the vault.
func TestSocialRemoveContactResplits(t *testing.T) {
	env := xtest.NewEnv(t)
	peers := socialPeers(t, env, "alice", "bob", "carol", "dave")
	alice, bob, carol, dave := peers[0], peers[1], peers[2], peers[3]
	// Refusals at the boundary. The vault checks the key records the
	// browser brings: one whose subject was changed is refused.
	ctx := context.Background()
	var forged []map[string]any
	json.Unmarshal(resolveContacts(t, alice, bob.email, carol.email), &forged)
	forged[0]["userId"] = carol.id
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", "/api/v1/me/recovery/contacts", map[string]any{"contacts": []string{bob.email, "nobody@example.org"}}, 400, "contact_unknown"},
		{"POST", "/api/v1/me/recovery/contacts", map[string]any{"contacts": []string{bob.email, alice.email}}, 400, "contact_self"},
		{"POST", "/api/v1/me/recovery/contacts", map[string]any{"contacts": []string{bob.email, bob.email}}, 400, "duplicate_contact"},
		{"POST", "/api/v1/me/recovery/contacts", map[string]any{"contacts": []string{bob.email}, "extra": 1}, 400, "unknown_field"},
		{"POST", "/api/v1/me/recovery/contacts", map[string]any{"contacts": []string{bob.email}}, 400, "invalid_contacts"},
		{"POST", "/api/v1/me/recovery/requests", map[string]any{"publicKey": "x", "extra": 1}, 400, "unknown_field"},
		{"PUT", "/api/v1/me/agent/vault/ways/social", map[string]any{"threshold": 3, "resolved": resolveContacts(t, alice, bob.email, carol.email)}, 400, "invalid_threshold"},
		{"PUT", "/api/v1/me/agent/vault/ways/social", map[string]any{"threshold": 1, "resolved": resolveContacts(t, alice, bob.email, carol.email)}, 400, "invalid_threshold"},
		{"PUT", "/api/v1/me/agent/vault/ways/social", map[string]any{"threshold": 2, "resolved": forged}, 400, "contact_unknown"},
		{"POST", "/api/v1/me/agent/vault/social/held/" + bob.id + "/release", map[string]any{"requestId": "x", "publicKey": "x"}, 403, "use_recovery_inbox"},
		{"POST", "/api/v1/me/recovery/requests", map[string]any{"publicKey": base64.StdEncoding.EncodeToString(make([]byte, 32))}, 400, "invalid_public_key"},
		{"POST", "/api/v1/me/recovery/requests", map[string]any{"publicKey": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))}, 404, "no_trusted_contacts"},
		{"POST", "/api/v1/me/agent/vault/recovery/reset", map[string]any{"kind": "social", "challengeId": "x", "derivedKey": "x", "proof": "x"}, 400, "no_recovery_request"},
		// The vault reads names case-insensitively: so does management's check.
		{"POST", "/api/v1/me/agent/vault/recovery/reset", map[string]any{"Kind": "social", "challengeId": "x", "derivedKey": "x", "proof": "x"}, 400, "no_recovery_request"},
		{"POST", "/api/v1/me/agent/vault/unlock", map[string]any{"KIND": "social", "challengeId": "x", "derivedKey": "x", "proof": "x"}, 400, "no_recovery_request"},
		{"POST", "/api/v1/me/agent/vault/unlock", map[string]any{"kind": "social", "pad": strings.Repeat(" ", 70_000)}, 413, "too_large"},
	} {
		r, err := alice.c.Do(ctx, tc.method, tc.path, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != tc.status || r.ErrorCode() != tc.code {
			t.Errorf("%s %s %v: %d %s, want %d %s", tc.method, tc.path, tc.body, r.Status, r.Body, tc.status, tc.code)
		}
	}
	aliceBefore, bobBefore := vaultFileSize(t, env, alice.id), vaultFileSize(t, env, bob.id)
	setupContacts(t, alice, 2, bob, carol, dave)
	e1 := waitHeld(t, bob, alice.id, 0)
	// The budget: less than 1 KiB of vault file per way in.
	aliceGrowth, bobGrowth := vaultFileSize(t, env, alice.id)-aliceBefore, vaultFileSize(t, env, bob.id)-bobBefore
	t.Logf("vault file growth: owner %d bytes (3 contacts), contact %d bytes (one held share)", aliceGrowth, bobGrowth)
	if aliceGrowth >= 1024 || bobGrowth >= 1024 {
		t.Errorf("vault file grew by %d (owner) and %d (contact) bytes", aliceGrowth, bobGrowth)
	}
	waitHeld(t, carol, alice.id, 0)
	waitHeld(t, dave, alice.id, 0)

	// Bob and Dave release their shares of the first split.
	old := startRecovery(t, alice)
	for _, c := range []socialPeer{bob, dave} {
		if r := approve(t, c, old.id, old.code); r.Status != 200 {
			t.Fatalf("%s approves: %d %s", c.email, r.Status, r.Body)
		}
	}
	oldKEK, _, err := crypto.RecoverSocialKEK(old.pub, old.priv, alice.id, old.id, old.status(t, alice).SealedShares)
	if err != nil {
		t.Fatal(err)
	}

	// Dave is removed: a new split to Bob and Carol.
	ways := setupContacts(t, alice, 2, bob, carol)
	if s := ways["social"].(map[string]any); len(s["contacts"].([]any)) != 2 || uint32(s["epoch"].(float64)) <= e1 {
		t.Fatalf("ways after removing dave: %v", ways)
	}
	waitHeld(t, bob, alice.id, e1)
	waitHeld(t, carol, alice.id, e1)
	xtest.Eventually(t, 20*time.Second, func() error {
		var out struct {
			Held []map[string]any `json:"held"`
		}
		if err := dave.c.JSON(context.Background(), "GET", "/api/v1/me/agent/vault/social/held", nil, &out); err != nil {
			return err
		}
		if len(out.Held) != 0 {
			return errString("dave still holds " + mustJSONString(out))
		}
		return nil
	})

	alice.v.json("POST", "/lock", nil, nil)
	req := startRecovery(t, alice)
	var inbox struct {
		Requests []map[string]any `json:"requests"`
	}
	dave.c.JSON(context.Background(), "GET", "/api/v1/me/recovery/inbox", nil, &inbox)
	if len(inbox.Requests) != 0 {
		t.Fatalf("a removed contact is asked: %v", inbox)
	}
	if r := approve(t, dave, req.id, req.code); r.Status != 404 {
		t.Fatalf("a removed contact approved: %d %s", r.Status, r.Body)
	}
	// The old split's shares no longer open the vault.
	if r := socialReset(t, alice.v, req.id, oldKEK, "alice new password"); r.Status != 401 {
		t.Fatalf("the old split reset the password: %d %s", r.Status, r.Body)
	}
	time.Sleep(time.Second)
	for _, c := range []socialPeer{bob, carol} {
		if r := approve(t, c, req.id, req.code); r.Status != 200 {
			t.Fatalf("%s approves: %d %s", c.email, r.Status, r.Body)
		}
	}
	kek, _, err := crypto.RecoverSocialKEK(req.pub, req.priv, alice.id, req.id, req.status(t, alice).SealedShares)
	if err != nil {
		t.Fatal(err)
	}
	if r := socialReset(t, alice.v, req.id, kek, "alice new password"); r.Status != 200 {
		t.Fatalf("reset with the new split: %d %s", r.Status, r.Body)
	}
	var ws map[string]any
	alice.v.json("GET", "/ways", nil, &ws)
	if s, _ := ws["social"].(map[string]any); s == nil || len(s["contacts"].([]any)) != 2 {
		t.Fatalf("ways after reset: %v", ws)
	}
	// A password change that signs out all devices removes the social
	// wrap: contacts are no longer asked to help.
	cur := alice.v.deriveKey("alice new password")
	_, fields := alice.v.newPassword("alice newest password", true)
	r, err := alice.c.Do(ctx, "POST", "/api/v1/me/agent/vault/password", alice.v.proveWay("password", cur, fields))
	if err != nil || r.Status != 204 {
		t.Fatalf("password change, sign out all: %v %d %s", err, r.Status, r.Body)
	}
	r, err = alice.c.Do(ctx, "POST", "/api/v1/me/recovery/requests", map[string]any{"publicKey": base64.StdEncoding.EncodeToString(req.pub[:])})
	if err != nil || r.Status != 404 || r.ErrorCode() != "no_trusted_contacts" {
		t.Fatalf("recovery request after sign out all: %v %d %s", err, r.Status, r.Body)
	}
}
