package e2e

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
)

// Recovery ways in (issue 10 items 1 and 3): a vault with a recovery
// phrase or a backup key survives a forgotten password. The test drives
// the API the way the browser does (ui/static/recovery.js): the phrase or
// key is turned into a KEK on the client (crypto.PhraseKEK and
// crypto.BackupKeyKEK, the same Go code the browser runs as WebAssembly),
// only that KEK reaches the container, and a reset sets a new password
// wrap after a challenge–proof with the recovery KEK.

const e2eNewPassword = "marmalade-comet-harbour-77"

// recoveryWay is one way back in as the client sees it: its kind, the text
// the user keeps (phrase or printed key) and its KEK.
type recoveryWay struct {
	kind string // "phrase" or "backup-key"
	text string
	kek  crypto.KEK
}

func newPhraseWay(t *testing.T) recoveryWay {
	p, err := crypto.NewRecoveryPhrase()
	if err != nil {
		t.Fatal(err)
	}
	// The user types it back in capitals with extra spaces: same KEK.
	kek, err := crypto.PhraseKEK("  " + strings.ToUpper(p) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	return recoveryWay{kind: "phrase", text: p, kek: kek}
}

func newBackupKeyWay(t *testing.T) recoveryWay {
	k, err := crypto.NewBackupKey()
	if err != nil {
		t.Fatal(err)
	}
	text := k.Text()
	// Typed back in lower case without dashes: same key.
	back, err := crypto.ParseBackupKey(strings.ToLower(strings.ReplaceAll(text, "-", " ")))
	if err != nil || back != k {
		t.Fatalf("parse own backup key: %v", err)
	}
	return recoveryWay{kind: "backup-key", text: text, kek: crypto.BackupKeyKEK(&back)}
}

// vaultWays is GET /vault/ways (unlocked form), the fields this test reads.
type vaultWays struct {
	Wraps []struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
	} `json:"wraps"`
	Phrase    *struct{ SetAt int64 } `json:"phrase"`
	BackupKey *struct{ SetAt int64 } `json:"backupKey"`
}

func (w vaultWays) has(kind string) bool {
	for _, x := range w.Wraps {
		if x.Kind == kind {
			return true
		}
	}
	return false
}

// tryUnlock answers a challenge with kek for a way of kind and returns the
// API error (nil on success).
func (v vaultAPI) tryUnlock(kind string, kek crypto.KEK) error {
	v.t.Helper()
	return v.c.JSON(context.Background(), "POST", "/api/v1/me/agent/vault/unlock", v.proveWay(kind, kek, nil), nil)
}

// resetPassword is POST /vault/recovery/reset: prove the recovery KEK, set
// a new password (fresh salt, the vault's KDF parameters).
// It returns the new password's KEK and how long the part after Argon2id
// took (challenge + reset request).
func (v vaultAPI) resetPassword(w recoveryWay, newPassword string) (crypto.KEK, time.Duration, error) {
	v.t.Helper()
	var p struct {
		KDF crypto.KDFParams `json:"kdf"`
	}
	v.json("GET", "/params", nil, &p)
	salt, err := crypto.NewSalt()
	if err != nil {
		v.t.Fatal(err)
	}
	newKEK, err := crypto.DeriveKEK([]byte(newPassword), salt, p.KDF)
	if err != nil {
		v.t.Fatal(err)
	}
	start := time.Now()
	err = v.c.JSON(context.Background(), "POST", "/api/v1/me/agent/vault/recovery/reset", v.proveWay(w.kind, w.kek, map[string]any{
		"newDerivedKey": b64(newKEK[:]), "newSalt": b64(salt), "newKdf": p.KDF, "signOutAll": false,
	}), nil)
	return newKEK, time.Since(start), err
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// apiCode returns the api.Error code and status of err ("" and 0 if none).
func apiCode(err error) (string, int) {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Code, ae.Status
	}
	return "", 0
}

// containerVaultSize returns the size in bytes of /data/vault.ocv in the
// user's container (-1 if it cannot be read).
func containerVaultSize(t *testing.T, cli *client.Client, uid string) int {
	res, err := cli.CopyFromContainer(context.Background(), "ocmt-"+uid, client.CopyFromContainerOptions{SourcePath: "/data/vault.ocv"})
	if err != nil {
		t.Logf("copy vault.ocv: %v", err)
		return -1
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	h, err := tr.Next()
	if err != nil {
		return -1
	}
	return int(h.Size)
}

// runRecoveryReset is the shared body of TestRecoveryPhraseResetsPassword
// and TestBackupKeyResetsPassword.
func runRecoveryReset(t *testing.T, newWay func(*testing.T) recoveryWay) {
	env, cli := dockerEnv(t)
	fp := fakeProviderOnGateway(t, env)

	// 1. A vault with a password, a provider key and one chat.
	admin, au := env.Admin("alice@example.org")
	v, oldKEK := readyVaultKey(t, env, admin, e2ePassword)
	fp.SetKey(e2eAPIKey)
	fp.Script(fakeprovider.Reply{Text: e2eReply}, fakeprovider.Reply{Text: "Second reply after the reset."})
	v.json("PUT", "/apikeys/anthropic", map[string]string{"key": e2eAPIKey, "baseUrl": fp.URL()}, nil)
	cw := dialChat(t, env, admin)
	if _, final := cw.chatOnce("main", e2eQuestion); final != e2eReply {
		t.Fatalf("reply %q", final)
	}

	// 2. Add the way back in; the container gets only its KEK.
	w := newWay(t)
	before := containerVaultSize(t, cli, string(au.ID))
	var ways vaultWays
	v.json("PUT", "/ways/"+w.kind, map[string]string{"derivedKey": b64(w.kek[:])}, &ways)
	after := containerVaultSize(t, cli, string(au.ID))
	v.json("GET", "/ways", nil, &ways)
	if !ways.has(w.kind) || (w.kind == "phrase" && ways.Phrase == nil) || (w.kind == "backup-key" && ways.BackupKey == nil) {
		t.Fatalf("GET /ways after adding %s: %+v", w.kind, ways)
	}
	if before > 0 && after > 0 {
		t.Logf("vault file growth for the %s way: %d → %d bytes (+%d)", w.kind, before, after, after-before)
		if after-before >= 1024 {
			t.Errorf("the %s way grew the vault file by %d bytes, want < 1 KiB", w.kind, after-before)
		}
	}

	// 3. Forget the password: lock, then a wrong recovery KEK is refused
	// and leaves the vault locked.
	v.json("POST", "/lock", nil, nil)
	wrong := w
	wrong.kek[0] ^= 1
	if _, _, err := v.resetPassword(wrong, "attacker-chosen-password-1"); err == nil {
		t.Fatal("reset with a wrong recovery key succeeded")
	} else if code, st := apiCode(err); st != http.StatusUnauthorized && st != http.StatusTooManyRequests {
		t.Fatalf("reset with a wrong key: %v (code %q, status %d), want 401", err, code, st)
	}
	if !v.locked() {
		t.Fatal("a failed reset unlocked the vault")
	}
	time.Sleep(1100 * time.Millisecond) // let a backoff window from the wrong try pass

	// 4. Reset with the real way. The clock runs for what is not Argon2id:
	// deriving the recovery KEK from the text, then challenge + reset
	// (resetPassword times its part after the new password's Argon2id).
	start := time.Now()
	var kek crypto.KEK
	var err error
	switch w.kind {
	case "phrase":
		kek, err = crypto.PhraseKEK(w.text)
	default:
		var bk crypto.BackupKey
		if bk, err = crypto.ParseBackupKey(w.text); err == nil {
			kek = crypto.BackupKeyKEK(&bk)
		}
	}
	if err != nil || !kek.Equal(&w.kek) {
		t.Fatalf("re-deriving the %s KEK: %v", w.kind, err)
	}
	derive := time.Since(start)
	newKEK, resetTime, err := v.resetPassword(w, e2eNewPassword)
	if err != nil {
		t.Fatalf("reset with the %s: %v", w.kind, err)
	}
	total := derive + resetTime
	t.Logf("recovery reset with the %s, end to end excluding Argon2id: %.1f ms (%s KEK %.1f ms + challenge and reset through the platform %.1f ms)",
		w.kind, ms(total), w.kind, ms(derive), ms(resetTime))
	if v.locked() {
		t.Fatal("the vault is locked after a reset (it should be open with the new password)")
	}

	// 5. The old password is refused; the new one works; the recovery way
	// still works (the reset kept it); key and history are intact.
	v.json("POST", "/lock", nil, nil)
	if err := v.tryUnlock("password", oldKEK); err == nil {
		t.Fatal("the old password still unlocks the vault after the reset")
	} else if code, _ := apiCode(err); code != "wrong_key" {
		t.Fatalf("old password: %v, want wrong_key", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := v.tryUnlock("password", newKEK); err != nil {
		t.Fatalf("new password: %v", err)
	}
	v.json("POST", "/lock", nil, nil)
	if err := v.tryUnlock(w.kind, w.kek); err != nil {
		t.Fatalf("the %s no longer unlocks after the reset: %v", w.kind, err)
	}
	cw = dialChat(t, env, admin)
	cw.send("h1", "chat.history", map[string]any{"sessionKey": "main"})
	h := cw.until(func(f map[string]any) bool { return f["id"] == "h1" })
	if !strings.Contains(fmt.Sprint(h), e2eReply) || !strings.Contains(fmt.Sprint(h), e2eQuestion) {
		t.Fatalf("history after the reset: %v", h)
	}
	if _, final := cw.chatOnce("main", "Still there after the reset?"); final != "Second reply after the reset." {
		t.Fatalf("chat after the reset (provider key lost?): %q", final)
	}
	if got := fp.Requests(); len(got) != 2 {
		t.Fatalf("provider saw %d requests, want 2", len(got))
	}

	// 6. No phrase, key or KEK on the platform's disk or in its logs.
	env.Stop()
	search := newLeakSearch(t).text("the recovery text", w.text).key("its KEK", w.kek[:]).
		text("the new password", e2eNewPassword).key("the new KEK", newKEK[:])
	if w.kind == "phrase" {
		search.text("the phrase's first three words", strings.Join(strings.Fields(w.text)[:3], " "))
	} else {
		search.text("the backup key without dashes", strings.ReplaceAll(w.text, "-", ""))
	}
	search.platform(env)
	search.files("container ", containerData(t, cli, string(au.ID)))
}

// TestRecoveryPhraseResetsPassword: create a vault → store a key and chat
// → add a 12-word recovery phrase → lock → reset the password with the
// phrase → the old password is refused, the new one works, the key and
// history are intact.
func TestRecoveryPhraseResetsPassword(t *testing.T) { runRecoveryReset(t, newPhraseWay) }

// TestBackupKeyResetsPassword: the same with a printed backup key.
func TestBackupKeyResetsPassword(t *testing.T) { runRecoveryReset(t, newBackupKeyWay) }
