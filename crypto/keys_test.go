package crypto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func randomKEK(t testing.TB) KEK {
	t.Helper()
	d, err := NewDEK()
	if err != nil {
		t.Fatal(err)
	}
	return KEK(d)
}

func TestKeysRedact(t *testing.T) {
	kek := randomKEK(t)
	dek, _ := NewDEK()
	sub, _ := DeriveSubKey(&dek, LabelSecrets)
	id, _ := NewIdentity()
	for _, tc := range []struct {
		name, want string
		v          any
		raw        []byte
	}{
		{"KEK", "crypto.KEK(redacted)", kek, kek[:]},
		{"*KEK", "crypto.KEK(redacted)", &kek, kek[:]},
		{"DEK", "crypto.DEK(redacted)", dek, dek[:]},
		{"*DEK", "crypto.DEK(redacted)", &dek, dek[:]},
		{"SubKey", "crypto.SubKey(redacted)", sub, sub[:]},
		{"Identity", "crypto.Identity(redacted)", *id, id.Bytes()},
		{"*Identity", "crypto.Identity(redacted)", id, id.Bytes()},
		{"in struct", "crypto.DEK(redacted)", struct{ K DEK }{dek}, dek[:]},
	} {
		for _, verb := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x", "%X", "% x", "%d", "%o", "%b", "%c", "%U", "%T"} {
			got := fmt.Sprintf(verb, tc.v)
			if verb != "%T" && !strings.Contains(got, tc.want) {
				t.Errorf("%s %s = %q, want it to contain %q", tc.name, verb, got, tc.want)
			}
			for _, leak := range []string{fmt.Sprintf("%x", tc.raw[:8]), fmt.Sprint(tc.raw[:4])[1:10]} {
				if strings.Contains(got, leak) {
					t.Errorf("%s %s leaks key bytes: %q", tc.name, verb, got)
				}
			}
		}
		if b, err := json.Marshal(tc.v); err == nil {
			t.Errorf("%s: json.Marshal = %s, want an error", tc.name, b)
		}
	}
}

func TestKeysEqualZero(t *testing.T) {
	a := randomKEK(t)
	b := a
	if !a.Equal(&b) {
		t.Error("equal keys compare unequal")
	}
	b[31] ^= 1
	if a.Equal(&b) {
		t.Error("different keys compare equal")
	}
	a.Zero()
	if a != (KEK{}) {
		t.Error("Zero left key bytes")
	}
	d, _ := NewDEK()
	d2, _ := NewDEK()
	if d.Equal(&d2) || d == (DEK{}) {
		t.Error("NewDEK returned equal or zero keys")
	}
	d.Zero()
	if d != (DEK{}) {
		t.Error("DEK.Zero left key bytes")
	}
	s := SubKey{1}
	s.Zero()
	if s != (SubKey{}) {
		t.Error("SubKey.Zero left key bytes")
	}
	id, _ := NewIdentity()
	id.Zero()
	if !bytes.Equal(id.SignPrivate, make([]byte, 64)) || id.BoxPrivate != ([32]byte{}) {
		t.Error("Identity.Zero left key bytes")
	}
}

func TestKeyFromBytes(t *testing.T) {
	b := bytes.Repeat([]byte{7}, 32)
	k, err := KEKFromBytes(b)
	if err != nil || !bytes.Equal(k[:], b) {
		t.Fatalf("KEKFromBytes = %v", err)
	}
	b[0] = 0
	if k[0] != 7 {
		t.Error("KEKFromBytes did not copy")
	}
	d, err := DEKFromBytes(b)
	if err != nil || !bytes.Equal(d[:], b) {
		t.Fatalf("DEKFromBytes = %v", err)
	}
	for _, n := range []int{0, 31, 33} {
		if _, err := KEKFromBytes(make([]byte, n)); err == nil {
			t.Errorf("KEKFromBytes(%d bytes): no error", n)
		}
		if _, err := DEKFromBytes(make([]byte, n)); err == nil {
			t.Errorf("DEKFromBytes(%d bytes): no error", n)
		}
	}
}

func TestKDFParamsValidate(t *testing.T) {
	ok := DefaultKDFParams()
	if ok != (KDFParams{Alg: "argon2id", MemoryKiB: 65536, Iterations: 3, Parallelism: 4}) {
		t.Fatalf("DefaultKDFParams = %+v", ok)
	}
	if b, _ := json.Marshal(ok); string(b) != `{"alg":"argon2id","memoryKiB":65536,"iterations":3,"parallelism":4}` {
		t.Errorf("JSON = %s", b)
	}
	with := func(f func(*KDFParams)) KDFParams { p := ok; f(&p); return p }
	for _, tc := range []struct {
		name  string
		p     KDFParams
		field string // "" = valid
	}{
		{"default", ok, ""},
		{"min", KDFParams{Alg: "argon2id", MemoryKiB: MinMemoryKiB, Iterations: MinIterations, Parallelism: 1}, ""},
		{"max", KDFParams{Alg: "argon2id", MemoryKiB: MaxMemoryKiB, Iterations: 20, Parallelism: 16}, ""},
		{"alg argon2i", with(func(p *KDFParams) { p.Alg = "argon2i" }), "alg"},
		{"alg empty", with(func(p *KDFParams) { p.Alg = "" }), "alg"},
		{"alg case", with(func(p *KDFParams) { p.Alg = "Argon2id" }), "alg"},
		{"memory low", with(func(p *KDFParams) { p.MemoryKiB = MinMemoryKiB - 1 }), "memoryKiB"},
		{"memory high", with(func(p *KDFParams) { p.MemoryKiB = MaxMemoryKiB + 1 }), "memoryKiB"},
		{"memory zero", with(func(p *KDFParams) { p.MemoryKiB = 0 }), "memoryKiB"},
		{"iterations zero", with(func(p *KDFParams) { p.Iterations = 0 }), "iterations"},
		{"iterations one", with(func(p *KDFParams) { p.Iterations = 1 }), "iterations"},
		// ocmt issue 8 item 6: a params file with these was served and used.
		{"issue 8 params", KDFParams{Alg: "argon2id", MemoryKiB: 8192, Iterations: 1, Parallelism: 1}, "memoryKiB"},
		{"iterations high", with(func(p *KDFParams) { p.Iterations = 21 }), "iterations"},
		{"parallelism zero", with(func(p *KDFParams) { p.Parallelism = 0 }), "parallelism"},
		{"parallelism high", with(func(p *KDFParams) { p.Parallelism = 17 }), "parallelism"},
	} {
		err := tc.p.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrKDFParams) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want ErrKDFParams naming %s", tc.name, err, tc.field)
		}
		weak := tc.p.Alg == KDFArgon2id && (tc.p.MemoryKiB < MinMemoryKiB || tc.p.Iterations < MinIterations)
		if errors.Is(err, ErrKDFWeak) != weak {
			t.Errorf("%s: errors.Is(%v, ErrKDFWeak) = %v, want %v", tc.name, err, !weak, weak)
		}
		if _, err := DeriveKEK([]byte("pw"), make([]byte, 16), tc.p); !errors.Is(err, ErrKDFParams) {
			t.Errorf("%s: DeriveKEK err = %v", tc.name, err)
		}
	}
}

func TestDeriveKEK(t *testing.T) {
	p := KDFParams{Alg: KDFArgon2id, MemoryKiB: MinMemoryKiB, Iterations: MinIterations, Parallelism: 1}
	salt, err := NewSalt()
	if err != nil || len(salt) != SaltSize {
		t.Fatalf("NewSalt = %x, %v", salt, err)
	}
	if s2, _ := NewSalt(); bytes.Equal(salt, s2) {
		t.Error("NewSalt repeated")
	}
	k1, err := DeriveKEK([]byte("correct horse"), salt, p)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := DeriveKEK([]byte("correct horse"), salt, p)
	if !k1.Equal(&k2) {
		t.Error("DeriveKEK not deterministic")
	}
	// Every input changes the key.
	p2 := p
	p2.Parallelism = 2
	p3 := p
	p3.Iterations = MinIterations + 1
	for name, k := range map[string]func() (KEK, error){
		"password": func() (KEK, error) { return DeriveKEK([]byte("correct horsE"), salt, p) },
		"salt": func() (KEK, error) {
			return DeriveKEK([]byte("correct horse"), append(bytes.Clone(salt[:15]), salt[15]^1), p)
		},
		"parallelism": func() (KEK, error) { return DeriveKEK([]byte("correct horse"), salt, p2) },
		"iterations":  func() (KEK, error) { return DeriveKEK([]byte("correct horse"), salt, p3) },
	} {
		got, err := k()
		if err != nil || got.Equal(&k1) {
			t.Errorf("changing %s: same key or error %v", name, err)
		}
	}
	for _, n := range []int{0, 7, 65} {
		if _, err := DeriveKEK([]byte("pw"), make([]byte, n), p); err == nil {
			t.Errorf("salt of %d bytes accepted", n)
		}
	}
	if _, err := DeriveKEK(nil, salt, p); err != nil {
		t.Errorf("empty password: %v", err)
	}
}

// kdfVectors is crypto/testdata/kdfparams.json: parameter sets and salts
// with the verdict of the one validation. The browser's checkKDFParams
// (ui/static/vaultcrypto.js) runs the same file in
// ui/testdata/js/vaultcrypto.test.mjs, so the two cannot disagree.
type kdfVectors struct {
	Params []struct {
		Name  string          `json:"name"`
		KDF   json.RawMessage `json:"kdf"`
		Valid bool            `json:"valid"`
	} `json:"params"`
	Salts []struct {
		Name  string `json:"name"`
		Hex   string `json:"hex"`
		Valid bool   `json:"valid"`
	} `json:"salts"`
}

func TestKDFVectors(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "kdfparams.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v kdfVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Params) < 10 || len(v.Salts) < 8 {
		t.Fatalf("only %d params and %d salts", len(v.Params), len(v.Salts))
	}
	for _, c := range v.Params {
		var p KDFParams
		err := json.Unmarshal(c.KDF, &p)
		if err == nil {
			err = p.Validate()
		}
		if (err == nil) != c.Valid {
			t.Errorf("params %s (%s): err = %v, want valid=%v", c.Name, c.KDF, err, c.Valid)
		}
	}
	for _, c := range v.Salts {
		salt, err := hex.DecodeString(c.Hex)
		if err != nil {
			t.Fatalf("salt %s: %v", c.Name, err)
		}
		err = CheckSalt(salt)
		if (err == nil) != c.Valid {
			t.Errorf("salt %s: CheckSalt = %v, want valid=%v", c.Name, err, c.Valid)
		}
		if err != nil && !errors.Is(err, ErrSaltSize) && !errors.Is(err, ErrSaltDegenerate) {
			t.Errorf("salt %s: unexpected error type %v", c.Name, err)
		}
	}
}

// TestNewSaltPassesCheck draws salts and requires each to pass CheckSalt
// and to differ: the shape checks must not refuse what crypto/rand gives.
func TestNewSaltPassesCheck(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		s, err := NewSalt()
		if err != nil || CheckSalt(s) != nil || seen[string(s)] {
			t.Fatalf("NewSalt = %x, %v (check %v, repeated %v)", s, err, CheckSalt(s), seen[string(s)])
		}
		seen[string(s)] = true
	}
}
