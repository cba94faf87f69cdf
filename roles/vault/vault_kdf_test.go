package vault

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/crypto"
)

// The one floor and ceiling of the key derivation (crypto.KDFParams.Validate,
// crypto.CheckSalt) hold for parameters from every source: the params file,
// init, the vault header, and password changes (ocmt issue 8, item 6).

// TestParamsFileValidated writes vault.params.json before the vault
// exists: a file that breaks the rules is served neither by GET /params nor
// used by POST /init, is not replaced, and the answer says what is wrong.
func TestParamsFileValidated(t *testing.T) {
	goodSalt := base64.StdEncoding.EncodeToString([]byte("ocmt-e2e-salt-16"))
	zeroSalt := base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, tc := range []struct {
		name, file string
		want       string // in the message
	}{
		// ocmt issue 8 item 6, as reported.
		{"issue 8: 8 MiB t=1 p=1, zero salt", `{"salt":"` + zeroSalt + `","kdf":{"alg":"argon2id","memoryKiB":8192,"iterations":1,"parallelism":1}}`, "memoryKiB"},
		{"one iteration", `{"salt":"` + goodSalt + `","kdf":{"alg":"argon2id","memoryKiB":65536,"iterations":1,"parallelism":4}}`, "iterations"},
		{"memory above ceiling", `{"salt":"` + goodSalt + `","kdf":{"alg":"argon2id","memoryKiB":4194304,"iterations":3,"parallelism":4}}`, "memoryKiB"},
		{"zero salt", `{"salt":"` + zeroSalt + `","kdf":{"alg":"argon2id","memoryKiB":65536,"iterations":3,"parallelism":4}}`, "salt"},
		{"short salt", `{"salt":"` + base64.StdEncoding.EncodeToString([]byte("12345678")) + `","kdf":{"alg":"argon2id","memoryKiB":65536,"iterations":3,"parallelism":4}}`, "salt"},
		{"argon2i", `{"salt":"` + goodSalt + `","kdf":{"alg":"argon2i","memoryKiB":65536,"iterations":3,"parallelism":4}}`, "alg"},
		{"unknown field", `{"salt":"` + goodSalt + `","kdf":{"alg":"argon2id","memoryKiB":65536,"iterations":3,"parallelism":4},"pepper":"x"}`, "JSON"},
		{"not JSON", `salt=zero`, "JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, paramsFileName)
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			v := newTestVault(t, dir)
			st, b := v.do("GET", "/vault/params", nil)
			if st != http.StatusInternalServerError || errCode(b) != "invalid_params_file" {
				t.Fatalf("GET /params: %d %v, want 500 invalid_params_file", st, b)
			}
			msg := mustJSON(b)
			if !strings.Contains(msg, paramsFileName) || !strings.Contains(msg, tc.want) {
				t.Errorf("message %s does not name the file and %q", msg, tc.want)
			}
			if strings.Contains(msg, "AAAAAAAA") || strings.Contains(msg, "zero\"") {
				t.Errorf("message quotes the file: %s", msg)
			}
			// Init (the browser derived with whatever it was given) is
			// refused too, and creates no vault.
			k := make([]byte, 32)
			k[0] = 1
			st, b = v.do("POST", "/vault/init", map[string]string{"derivedKey": b64(k)})
			if st != http.StatusInternalServerError || errCode(b) != "invalid_params_file" {
				t.Fatalf("POST /init: %d %v, want 500 invalid_params_file", st, b)
			}
			if _, err := os.Stat(filepath.Join(dir, vaultFileName)); !os.IsNotExist(err) {
				t.Errorf("a vault file was written: %v", err)
			}
			// Not silently replaced.
			if got, _ := os.ReadFile(path); string(got) != tc.file {
				t.Errorf("params file changed to %s", got)
			}
		})
	}
}

// TestParamsFileKept checks the good cases: in-range parameters an
// operator chose are served and used as they are, and a missing file is
// created once with the defaults and a random salt.
func TestParamsFileKept(t *testing.T) {
	dir := t.TempDir()
	salt := []byte("ocmt-e2e-salt-16")
	file := `{"salt":"` + base64.StdEncoding.EncodeToString(salt) + `","kdf":{"alg":"argon2id","memoryKiB":32768,"iterations":2,"parallelism":2}}`
	os.WriteFile(filepath.Join(dir, paramsFileName), []byte(file), 0o600)
	v := newTestVault(t, dir)
	st, p := v.do("GET", "/vault/params", nil)
	if st != 200 || p["salt"] != base64.StdEncoding.EncodeToString(salt) || mustJSON(p["kdf"]) != `{"alg":"argon2id","iterations":2,"memoryKiB":32768,"parallelism":2}` {
		t.Fatalf("GET /params: %d %v", st, p)
	}
	v.create("correct horse battery staple")

	v2 := newTestVault(t, "")
	_, p1 := v2.do("GET", "/vault/params", nil)
	_, p2 := v2.do("GET", "/vault/params", nil)
	if mustJSON(p1) != mustJSON(p2) || kdfOf(p1) != crypto.DefaultKDFParams() {
		t.Fatalf("fresh params %v then %v", p1, p2)
	}
}

// TestParamsFileChangedBeforeInit: the browser fetched good parameters,
// then the file was replaced with weak ones before POST /init; init is
// refused rather than sealing a vault under parameters nobody checked.
func TestParamsFileChangedBeforeInit(t *testing.T) {
	v := newTestVault(t, "")
	k := v.derive("correct horse battery staple")
	weak := `{"salt":"` + base64.StdEncoding.EncodeToString(make([]byte, 16)) + `","kdf":{"alg":"argon2id","memoryKiB":8192,"iterations":1,"parallelism":1}}`
	if err := os.WriteFile(filepath.Join(v.dir, paramsFileName), []byte(weak), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, b := v.do("POST", "/vault/init", map[string]string{"derivedKey": b64(k[:])}); st != http.StatusInternalServerError || errCode(b) != "invalid_params_file" {
		t.Fatalf("init: %d %v", st, b)
	}
	if _, err := os.Stat(filepath.Join(v.dir, vaultFileName)); !os.IsNotExist(err) {
		t.Fatalf("vault created: %v", err)
	}
}

// TestVaultHeaderKDFChecked: once a vault exists its header is the source
// of truth (a params file, even a bad one, no longer matters), and a header
// below the floor or with a degenerate salt is refused when the vault is
// loaded, with an error that says so.
func TestVaultHeaderKDFChecked(t *testing.T) {
	v := newTestVault(t, "")
	v.create("correct horse battery staple")
	os.WriteFile(filepath.Join(v.dir, paramsFileName), []byte("garbage"), 0o600)
	v2 := newTestVault(t, v.dir)
	if st, p := v2.do("GET", "/vault/params", nil); st != 200 || kdfOf(p) != crypto.DefaultKDFParams() {
		t.Fatalf("GET /params with a vault and a bad params file: %d %v", st, p)
	}

	orig, err := os.ReadFile(filepath.Join(v.dir, vaultFileName))
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"issue 8 kdf":   strings.NewReplacer(`"memoryKiB":65536`, `"memoryKiB":8192`, `"iterations":3`, `"iterations":1`, `"parallelism":4`, `"parallelism":1`).Replace,
		"one iteration": func(h string) string { return strings.Replace(h, `"iterations":3`, `"iterations":1`, 1) },
		"huge memory":   func(h string) string { return strings.Replace(h, `"memoryKiB":65536`, `"memoryKiB":4194304`, 1) },
		"zero salt": func(h string) string {
			i := strings.Index(h, `"salt":"`) + len(`"salt":"`)
			j := i + strings.Index(h[i:], `"`)
			return h[:i] + base64.StdEncoding.EncodeToString(make([]byte, 16)) + h[j:]
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, vaultFileName), editVaultHeader(t, orig, edit), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := New(Options{Secret: testSecret, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				DataDir: dir, PublicURL: "https://ocmt.example", UserID: "usr_test"})
			if err == nil {
				t.Fatal("a vault whose header breaks the KDF rules was loaded")
			}
			if !strings.Contains(err.Error(), "kdf parameters") && !strings.Contains(err.Error(), "salt") {
				t.Errorf("error does not say what is wrong: %v", err)
			}
		})
	}
}

// editVaultHeader applies edit to the JSON header of vault file b and
// fixes the length prefix (magic ‖ u32 len ‖ header ‖ u32 len ‖ body).
func editVaultHeader(t *testing.T, b []byte, edit func(string) string) []byte {
	t.Helper()
	m := len(crypto.VaultMagic)
	n := binary.BigEndian.Uint32(b[m:])
	h := edit(string(b[m+4 : m+4+int(n)]))
	if h == string(b[m+4:m+4+int(n)]) {
		t.Fatal("edit changed nothing")
	}
	out := append([]byte{}, b[:m]...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(h)))
	out = append(out, h...)
	return append(out, b[m+4+int(n):]...)
}

// TestPasswordChangeKDFChecked: the new parameters and salt of a password
// change pass the same validation; nothing changes when they fail.
func TestPasswordChangeKDFChecked(t *testing.T) {
	v := newTestVault(t, "")
	old := v.create("first password is long")
	good := crypto.DefaultKDFParams()
	salt, _ := crypto.NewSalt()
	for _, tc := range []struct {
		name string
		kdf  crypto.KDFParams
		salt []byte
		code string
	}{
		{"issue 8 kdf", crypto.KDFParams{Alg: "argon2id", MemoryKiB: 8192, Iterations: 1, Parallelism: 1}, salt, "weak_kdf"},
		{"one iteration", crypto.KDFParams{Alg: "argon2id", MemoryKiB: 1 << 20, Iterations: 1, Parallelism: 4}, salt, "weak_kdf"},
		{"memory above ceiling", crypto.KDFParams{Alg: "argon2id", MemoryKiB: 4 << 20, Iterations: 3, Parallelism: 4}, salt, "invalid_kdf"},
		{"argon2i", crypto.KDFParams{Alg: "argon2i", MemoryKiB: 65536, Iterations: 3, Parallelism: 4}, salt, "invalid_kdf"},
		{"zero salt", good, make([]byte, 16), "invalid_salt"},
		{"counter salt", good, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, "invalid_salt"},
		{"short salt", good, salt[:8], "invalid_salt"},
	} {
		newKey := make([]byte, 32)
		newKey[0] = 7
		_, ch := v.do("POST", "/vault/unlock/challenge", nil)
		chb, _ := base64.StdEncoding.DecodeString(ch["challenge"].(string))
		st, b := v.do("POST", "/vault/password", map[string]any{"challengeId": ch["challengeId"], "derivedKey": b64(old[:]),
			"proof": b64(crypto.UnlockProof(&old, chb)), "newDerivedKey": b64(newKey), "newSalt": b64(tc.salt), "newKdf": tc.kdf})
		if st != http.StatusBadRequest || errCode(b) != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", tc.name, st, b, tc.code)
		}
	}
	v.do("POST", "/vault/lock", nil)
	if st, b := v.unlockWith(old); st != 200 {
		t.Fatalf("old password after refused changes: %d %v", st, b)
	}
	if _, p := v.do("GET", "/vault/params", nil); kdfOf(p) != good {
		t.Fatalf("params after refused changes: %v", p)
	}
}

// kdfOf returns the "kdf" member of a GET /params answer.
func kdfOf(p map[string]any) crypto.KDFParams {
	var k crypto.KDFParams
	json.Unmarshal([]byte(mustJSON(p["kdf"])), &k)
	return k
}
