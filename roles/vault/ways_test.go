package vault

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocmt/ocmt/crypto"
)

func randomKEK(t testing.TB) crypto.KEK {
	t.Helper()
	k, err := crypto.KEKFromBytes(bytes.Repeat([]byte{byte(rand.IntN(250) + 1)}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for i := range k {
		k[i] ^= byte(rand.IntN(256))
	}
	return k
}

// wayReq is the body of POST /unlock or /recovery/reset for kind with kek.
func (v *tv) proveWay(kind string, kek crypto.KEK, extra map[string]any) map[string]any {
	v.t.Helper()
	_, ch := v.do("POST", "/vault/unlock/challenge", nil)
	chb, _ := base64.StdEncoding.DecodeString(ch["challenge"].(string))
	m := map[string]any{"kind": kind, "challengeId": ch["challengeId"], "derivedKey": b64(kek[:]), "proof": b64(crypto.UnlockProof(&kek, chb))}
	for k, x := range extra {
		m[k] = x
	}
	return m
}

// newPasswordFields derives a new password's KEK as the browser does and
// returns it with the request fields that carry it.
func (v *tv) newPasswordFields(password string, signOutAll bool) (crypto.KEK, map[string]any) {
	v.t.Helper()
	kdf := crypto.DefaultKDFParams()
	salt, _ := crypto.NewSalt()
	k, err := crypto.DeriveKEK([]byte(password), salt, kdf)
	if err != nil {
		v.t.Fatal(err)
	}
	return k, map[string]any{"newDerivedKey": b64(k[:]), "newSalt": b64(salt), "newKdf": kdf, "signOutAll": signOutAll}
}

// TestWaysResetPassword: a phrase way added while unlocked opens the vault
// on its own; a reset with it sets a new password (the old one is refused,
// the data stays, other ways stay); "sign out all devices" on a password
// change removes every other way.
func TestWaysResetPassword(t *testing.T) {
	v := newTestVault(t, "")
	old := v.create("first password is long")
	v.do("PUT", "/vault/apikeys/anthropic", map[string]string{"key": "sk-ant-keep"})
	if st, b := v.do("PUT", "/vault/ways/phrase", map[string]string{"derivedKey": b64(make([]byte, 32))}); st != 400 || errCode(b) != "invalid_key" {
		t.Fatalf("an all-zero key (a failed derivation) was taken: %d %v", st, b)
	}
	size0 := fileSize(t, v.dir)
	phrase, backup := randomKEK(t), randomKEK(t)
	for kind, k := range map[string]crypto.KEK{"phrase": phrase, "backup-key": backup} {
		if st, b := v.do("PUT", "/vault/ways/"+kind, map[string]string{"derivedKey": b64(k[:])}); st != 200 {
			t.Fatalf("put way %s: %d %v", kind, st, b)
		}
	}
	if grow := fileSize(t, v.dir) - size0; grow >= 2*1024 {
		t.Errorf("two ways grew the vault file by %d bytes; want < 1 KiB each", grow)
	} else {
		t.Logf("vault file growth: %d bytes for two ways", grow)
	}
	st, w := v.do("GET", "/vault/ways", nil)
	if st != 200 || w["phrase"] == nil || w["backupKey"] == nil || len(w["wraps"].([]any)) != 3 {
		t.Fatalf("GET ways: %d %v", st, w)
	}
	v.do("POST", "/vault/lock", nil)
	if _, w := v.do("GET", "/vault/ways", nil); w["locked"] != true || len(w["wraps"].([]any)) != 3 || w["phrase"] != nil {
		t.Fatalf("locked ways must list wraps only: %v", w)
	}
	// Bad inputs.
	goodSalt, _ := crypto.NewSalt()
	for name, c := range map[string]struct {
		path string
		kind string
		kek  crypto.KEK
		more map[string]any
		code string
	}{
		"unknown kind":    {"/vault/unlock", "hibernate", phrase, nil, "invalid_way"},
		"wrong phrase":    {"/vault/unlock", "phrase", backup, nil, "wrong_key"},
		"reset with pw":   {"/vault/recovery/reset", "password", old, nil, "invalid_way"},
		"reset, weak kdf": {"/vault/recovery/reset", "phrase", phrase, map[string]any{"newDerivedKey": b64(phrase[:]), "newSalt": b64(goodSalt), "newKdf": map[string]any{"alg": "argon2id", "memoryKiB": 8, "iterations": 1, "parallelism": 1}}, "weak_kdf"},
	} {
		v.clk.add(10 * time.Minute) // past any backoff
		if st, b := v.do("POST", c.path, v.proveWay(c.kind, c.kek, c.more)); errCode(b) != c.code {
			t.Errorf("%s: %d %v, want %s", name, st, b, c.code)
		}
	}
	v.clk.add(10 * time.Minute)
	if st, b := v.unlockWith(old); st != 200 {
		t.Fatalf("password after failed attempts: %d %v", st, b)
	}
	v.do("POST", "/vault/lock", nil)
	if st, b := v.do("POST", "/vault/unlock", v.proveWay("phrase", phrase, nil)); st != 200 {
		t.Fatalf("unlock with phrase: %d %v", st, b)
	}
	v.do("POST", "/vault/lock", nil)

	newPW, fields := v.newPasswordFields("the new password, long enough", false)
	if st, b := v.do("POST", "/vault/recovery/reset", v.proveWay("backup-key", backup, fields)); st != 200 {
		t.Fatalf("reset with backup key: %d %v", st, b)
	}
	if _, l := v.do("GET", "/vault/apikeys", nil); !strings.Contains(mustJSON(l), "anthropic") {
		t.Fatal("reset left the vault closed or lost data")
	}
	v.do("POST", "/vault/lock", nil)
	if st, _ := v.unlockWith(old); st != http.StatusUnauthorized {
		t.Fatalf("old password after reset: %d", st)
	}
	v.clk.add(10 * time.Minute)
	for kind, k := range map[string]crypto.KEK{"password": newPW, "phrase": phrase, "backup-key": backup} {
		if st, b := v.do("POST", "/vault/unlock", v.proveWay(kind, k, nil)); st != 200 {
			t.Fatalf("unlock with %s after reset: %d %v", kind, st, b)
		}
	}

	// Password change with "sign out all devices": only the new password.
	newer, fields := v.newPasswordFields("yet another password here", true)
	if st, b := v.do("POST", "/vault/password", v.proveWay("password", newPW, fields)); st != 204 {
		t.Fatalf("password change, sign out all: %d %v", st, b)
	}
	_, w = v.do("GET", "/vault/ways", nil)
	if len(w["wraps"].([]any)) != 1 || w["phrase"] != nil || w["backupKey"] != nil {
		t.Fatalf("sign out all kept ways: %v", w)
	}
	v.do("POST", "/vault/lock", nil)
	if st, b := v.do("POST", "/vault/unlock", v.proveWay("phrase", phrase, nil)); st != 404 {
		t.Fatalf("phrase after sign out all: %d %v", st, b)
	}
	if st, _ := v.unlockWith(newer); st != 200 {
		t.Fatalf("newest password: %d", st)
	}
	if st, b := v.do("DELETE", "/vault/ways/phrase", nil); st != 404 {
		t.Fatalf("delete a missing way: %d %v", st, b)
	}
}

func fileSize(t *testing.T, dir string) int64 {
	fi, err := os.Stat(filepath.Join(dir, vaultFileName))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Crash safety (issue 10): a child process re-wraps the DEK in a loop
// (ways added, the password changed, ways removed, a record changed) and
// is killed with SIGKILL at a random moment, many times. After every kill
// the vault file must parse, open with one of the two passwords, every
// wrap in its header must open the same DEK with its key, and the ways
// record must agree with the header: the old or the new set, never a mix
// and never neither.

const crashEnv = "OCMT_TEST_CRASH_CHILD"

// crashKeys are the fixed KEKs of the test: two passwords and one key per
// other way.
func crashKeys() map[string]crypto.KEK {
	out := map[string]crypto.KEK{}
	for i, name := range []string{"pw0", "pw1", crypto.WrapPhrase, crypto.WrapBackupKey, crypto.WrapPasskey} {
		k, _ := crypto.KEKFromBytes(bytes.Repeat([]byte{byte(0x31 + i), 0x5a}, 16))
		out[name] = k
	}
	return out
}

func TestCrashDuringRewrap(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	keys := crashKeys()
	dir := t.TempDir()
	{ // a vault whose password KEK is pw0
		s, err := New(Options{Secret: testSecret, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DataDir: dir, PublicURL: "https://x.example", UserID: "usr_test"})
		if err != nil {
			t.Fatal(err)
		}
		id, _ := crypto.NewIdentity()
		sec := &secrets{Identity: id.Bytes()}
		sec.normalize()
		body, _ := encodeBody(sec, recordSet{})
		salt, _ := crypto.NewSalt()
		pw0 := keys["pw0"]
		f, _, err := crypto.NewVaultFile(&pw0, salt, crypto.DefaultKDFParams(), body)
		if err != nil {
			t.Fatal(err)
		}
		crypto.WriteFileAtomic(filepath.Join(dir, vaultFileName), f.Marshal(), 0o600)
		s.cancel()
	}
	rounds, ops := 40, 0
	if testing.Short() {
		rounds = 10
	}
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDuringRewrap$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		if !sc.Scan() || sc.Text() != "ready" { // opened; now let it run a little
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: child did not start: %q", round, sc.Text())
		}
		done := make(chan int)
		go func() {
			n := 0
			for sc.Scan() {
				n++
			}
			done <- n
		}()
		time.Sleep(time.Duration(rand.IntN(30_000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		ops += <-done
		if err := checkCrashVault(dir, keys); err != nil {
			t.Fatalf("after kill %d (%d operations so far): %v", round, ops, err)
		}
	}
	t.Logf("%d kills, %d re-wraps completed between them; the vault opened after every kill", rounds, ops)
	if ops < rounds {
		t.Fatalf("only %d operations ran in %d rounds: the kills did not land during re-wraps", ops, rounds)
	}
}

// checkCrashVault checks the vault in dir after a kill.
func checkCrashVault(dir string, keys map[string]crypto.KEK) error {
	b, err := os.ReadFile(filepath.Join(dir, vaultFileName))
	if err != nil {
		return err
	}
	f, err := crypto.ParseVaultFile(b)
	if err != nil {
		return fmt.Errorf("torn vault file: %w", err)
	}
	var dek crypto.DEK
	opened := false
	for _, pw := range []string{"pw0", "pw1"} {
		k := keys[pw]
		if d, err := f.Unlock(&k); err == nil {
			dek, opened = d, true
		}
	}
	if !opened {
		return fmt.Errorf("neither password opens the vault")
	}
	for _, w := range f.Wraps() {
		if w.Kind == crypto.WrapPassword {
			continue
		}
		k := keys[w.Kind]
		d, err := f.UnlockWrap(w.Kind, w.ID, &k)
		if err != nil || !d.Equal(&dek) {
			return fmt.Errorf("wrap %s/%s does not open the DEK: %v", w.Kind, w.ID, err)
		}
	}
	body, err := f.OpenBody(&dek)
	if err != nil {
		return fmt.Errorf("body: %w", err)
	}
	sec, rs, _, err := decodeBody(body)
	if err != nil || len(rs.broken) > 0 {
		return fmt.Errorf("body records: %v %v", err, rs.broken)
	}
	w := sec.Ways
	if f.HasWrap(crypto.WrapPhrase, "") != (w.Phrase != nil) || f.HasWrap(crypto.WrapBackupKey, "") != (w.BackupKey != nil) ||
		f.HasWrap(crypto.WrapPasskey, "dev1") != (w.Passkeys["dev1"] != nil) {
		return fmt.Errorf("header wraps %v disagree with the ways record %s", f.Wraps(), mustJSON(w))
	}
	return nil
}

// crashChild runs re-wraps on the vault in dir until it is killed,
// printing a line after each.
func crashChild(dir string) {
	keys := crashKeys()
	s, err := New(Options{Secret: testSecret, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DataDir: dir, PublicURL: "https://x.example", UserID: "usr_test"})
	if err != nil {
		panic(err)
	}
	k := s.keys
	k.mu.Lock()
	cur := "pw0"
	pw := keys[cur]
	dek, err := k.file.Unlock(&pw)
	if err != nil {
		cur, pw = "pw1", keys["pw1"]
		if dek, err = k.file.Unlock(&pw); err != nil {
			panic(err)
		}
	}
	if err := k.openLocked(dek); err != nil {
		panic(err)
	}
	fmt.Println("ready")
	step := func(err error) {
		if err != nil {
			panic(err)
		}
		fmt.Println("ok")
	}
	for i := 0; ; i++ {
		phrase, backup, passkey := keys[crypto.WrapPhrase], keys[crypto.WrapBackupKey], keys[crypto.WrapPasskey]
		step(k.putWayLocked(crypto.WrapPhrase, "", &phrase, func(s *secrets) error { s.Ways.Phrase = &wayInfo{SetAt: int64(i)}; return nil }))
		step(k.putWayLocked(crypto.WrapBackupKey, "", &backup, func(s *secrets) error { s.Ways.BackupKey = &wayInfo{SetAt: int64(i)}; return nil }))
		step(k.putWayLocked(crypto.WrapPasskey, "dev1", &passkey, func(s *secrets) error {
			s.Ways.Passkeys = map[string]*passkeyInfo{"dev1": {Name: "laptop"}}
			return nil
		}))
		next := map[string]string{"pw0": "pw1", "pw1": "pw0"}[cur]
		nk := keys[next]
		salt, _ := crypto.NewSalt()
		d := *k.dek
		step(s.setPasswordLocked(d, newPassword{kek: &nk, salt: salt, kdf: crypto.DefaultKDFParams(), signOutAll: i%3 == 2}, true))
		cur = next
		step(k.removeWayLocked(crypto.WrapPhrase, "", func(s *secrets) error { s.Ways.Phrase = nil; return nil }))
		step(k.removeWayLocked(crypto.WrapPasskey, "dev1", func(s *secrets) error { delete(s.Ways.Passkeys, "dev1"); return nil }))
		step(k.updateLocked(func(s *secrets) error { s.APIKeys["openai"] = apiKey{Key: hex.EncodeToString(salt)}; return nil }))
	}
}
