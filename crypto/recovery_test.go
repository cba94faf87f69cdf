package crypto

import (
	"bytes"
	stdhkdf "crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/crypto/internal/recovery"
)

// bip39Vectors loads crypto/testdata/bip39-vectors.json: the published
// BIP39 English test vectors (Trezor's python-mnemonic vectors.json, the
// set every BIP39 implementation checks against; this copy is the one
// github.com/tyler-smith/go-bip39 v1.1.0 tests with), each
// [entropy hex, mnemonic, seed hex with passphrase "TREZOR"].
func bip39Vectors(t testing.TB) [][3]string {
	t.Helper()
	b, err := os.ReadFile("testdata/bip39-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		English [][3]string `json:"english"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.English) != 24 {
		t.Fatalf("%d vectors, want 24", len(v.English))
	}
	return v.English
}

func TestBIP39Vectors(t *testing.T) {
	for i, v := range bip39Vectors(t) {
		entropy, _ := hex.DecodeString(v[0])
		if len(entropy) == 16 {
			got, err := recovery.NewPhrase(entropy)
			if err != nil || got != v[1] {
				t.Errorf("vector %d: NewPhrase = %q, %v; want %q", i, got, err, v[1])
			}
		}
		// The seed goes through our validation and normalisation: shout
		// the phrase and spread it over lines; the seed must not change.
		messy := "  " + strings.ReplaceAll(strings.ToUpper(v[1]), " ", " \n\t ") + " "
		seed, err := recovery.PhraseSeed(messy, "TREZOR")
		if err != nil {
			t.Errorf("vector %d: PhraseSeed: %v", i, err)
			continue
		}
		if hex.EncodeToString(seed) != v[2] {
			t.Errorf("vector %d: seed %x, want %s", i, seed, v[2])
		}
		// PhraseKEK takes the 12-word vectors only.
		kek, err := PhraseKEK(messy)
		if n := len(strings.Fields(v[1])); n != PhraseWords {
			var pe *PhraseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrPhrase) {
				t.Errorf("vector %d (%d words): PhraseKEK error %v, want a PhraseError", i, n, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("vector %d: PhraseKEK: %v", i, err)
		}
		// Independent HKDF (the standard library's) over the seed with passphrase "".
		seed0, _ := recovery.PhraseSeed(v[1], "")
		want, err := stdhkdf.Key(sha256.New, seed0, nil, LabelPhraseKEK, KeySize)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(kek[:], want) {
			t.Errorf("vector %d: PhraseKEK differs from HKDF-SHA256(seed, nil, %q)", i, LabelPhraseKEK)
		}
	}
}

// TestPhraseKEKKnownAnswer pins the phrase KEK of the first BIP39 vector,
// so that the derivation (and the browser's copy of it, which
// ui/recovery_browser_test.go compares with Go) can never change silently.
func TestPhraseKEKKnownAnswer(t *testing.T) {
	kek, err := PhraseKEK("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := hex.DecodeString("5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc19a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4") // BIP39 seed, passphrase ""
	want, _ := stdhkdf.Key(sha256.New, seed, nil, "ocmt/v1/kek/phrase", 32)
	if !bytes.Equal(kek[:], want) {
		t.Fatalf("KEK %x, want %x", kek[:], want)
	}
}

func TestNewRecoveryPhrase(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		p, err := NewRecoveryPhrase()
		if err != nil {
			t.Fatal(err)
		}
		if n := len(strings.Fields(p)); n != 12 {
			t.Fatalf("%d words", n)
		}
		if seen[p] {
			t.Fatal("repeated phrase")
		}
		seen[p] = true
		if _, err := PhraseKEK(p); err != nil {
			t.Fatalf("own phrase refused: %v", err)
		}
	}
	if _, err := recovery.NewPhrase(make([]byte, 15)); !errors.Is(err, recovery.ErrEntropy) {
		t.Errorf("15-byte entropy: %v", err)
	}
}

func TestPhraseKEKRejects(t *testing.T) {
	good := "legal winner thank year wave sausage worth useful legal winner thank yellow"
	for _, tc := range []struct{ in, want string }{
		{"", "Enter your recovery phrase"},
		{"   \n ", "Enter your recovery phrase"},
		{"legal winner thank", "has 12 words; this has 3"},
		{good + " yellow", "has 12 words; this has 13"},
		{strings.Replace(good, "sausage", "sausages", 1), `Word 6 ("sausages")`},
		{strings.Replace(good, "yellow", "zoo", 1), "checksum"},
		{"legal winner thank year wave sausage worth useful legal winner yellow thank", "checksum"}, // two words swapped
		{strings.Replace(good, "legal", "légal", 1), "Word 1"},
	} {
		_, err := PhraseKEK(tc.in)
		var pe *PhraseError
		if !errors.As(err, &pe) || !errors.Is(err, ErrPhrase) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PhraseKEK(%q) = %v, want a PhraseError containing %q", tc.in, err, tc.want)
		}
	}
	a, err1 := PhraseKEK(good)
	b, err2 := PhraseKEK("  LEGAL Winner\tthank year wave sausage worth useful legal winner thank yellow\n")
	if err1 != nil || err2 != nil || !a.Equal(&b) {
		t.Errorf("normalisation: %v %v equal=%v", err1, err2, a.Equal(&b))
	}
}

func TestBackupKeyRoundTrip(t *testing.T) {
	for range 50 {
		k, err := NewBackupKey()
		if err != nil {
			t.Fatal(err)
		}
		text := k.Text()
		groups := strings.Split(text, "-")
		if len(groups) != 8 {
			t.Fatalf("%q: %d groups", text, len(groups))
		}
		for _, g := range groups {
			if len(g) != 4 || strings.Trim(g, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") != "" {
				t.Fatalf("%q: bad group %q", text, g)
			}
		}
		for _, typed := range []string{
			text,
			strings.ToLower(text),
			strings.ReplaceAll(text, "-", " "),
			strings.ReplaceAll(text, "-", ""),
			" " + strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(text), "1", "l"), "0", "o") + "\n",
			strings.ReplaceAll(text, "1", "I"),
		} {
			got, err := ParseBackupKey(typed)
			if err != nil || got != k {
				t.Fatalf("ParseBackupKey(%q) = %v, %v", typed, got == k, err)
			}
		}
		kek := BackupKeyKEK(&k)
		want, _ := stdhkdf.Key(sha256.New, k[:], nil, "ocmt/v1/kek/backup-key", 32)
		if !bytes.Equal(kek[:], want) {
			t.Fatal("BackupKeyKEK differs from HKDF-SHA256(key, nil, label)")
		}
	}
}

// TestBackupKeyKnownAnswer pins the text form and KEK of a fixed key.
func TestBackupKeyKnownAnswer(t *testing.T) {
	var k BackupKey
	for i := range k {
		k[i] = byte(i * 17)
	}
	text := k.Text()
	if text != "008J-4CT4-ANK7-F24S-NAXW-SQFE-ZYMF-NVBA" {
		t.Fatalf("text %s", text)
	}
	back, err := ParseBackupKey(text)
	if err != nil || back != k {
		t.Fatalf("round trip: %v", err)
	}
	want, _ := stdhkdf.Key(sha256.New, k[:], nil, "ocmt/v1/kek/backup-key", 32)
	if kek := BackupKeyKEK(&k); !bytes.Equal(kek[:], want) {
		t.Fatal("KEK")
	}
}

// TestBackupKeyCatchesTypos changes each symbol of a key to every other
// symbol and swaps each pair of neighbours: the check must refuse all.
func TestBackupKeyCatchesTypos(t *testing.T) {
	k, _ := NewBackupKey()
	s := strings.ReplaceAll(k.Text(), "-", "")
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	tried := 0
	for i := range len(s) {
		for _, r := range alphabet {
			if byte(r) == s[i] {
				continue
			}
			typo := s[:i] + string(r) + s[i+1:]
			if _, err := ParseBackupKey(typo); !errors.Is(err, ErrBackupKey) {
				t.Fatalf("typo at %d accepted: %v", i, err)
			}
			tried++
		}
		if i+1 < len(s) && s[i] != s[i+1] {
			swapped := s[:i] + string(s[i+1]) + string(s[i]) + s[i+2:]
			if _, err := ParseBackupKey(swapped); err == nil {
				t.Fatalf("swap at %d accepted", i)
			}
		}
	}
	if tried != 32*31 {
		t.Fatalf("tried %d", tried)
	}
}

func TestParseBackupKeyRejects(t *testing.T) {
	k, _ := NewBackupKey()
	text := k.Text()
	for _, tc := range []struct{ in, want string }{
		{"", "32 characters"},
		{text[:len(text)-1], "32 characters in 8 groups; this has 31"},
		{text + "0", "this has 33"},
		{"U" + text[1:], "no letter U"},
		{"*" + text[1:], "only digits and letters"},
		{"é" + text[1:], "only digits and letters"},
	} {
		_, err := ParseBackupKey(tc.in)
		var be *BackupKeyError
		if !errors.As(err, &be) || !errors.Is(err, ErrBackupKey) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseBackupKey(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestBackupKeyRedacts(t *testing.T) {
	k, _ := NewBackupKey()
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%x %v %#v %s %d", k, k, k, k, k)} {
		if strings.Contains(s, strings.ReplaceAll(k.Text(), "-", "")[:8]) || strings.Contains(s, hex.EncodeToString(k[:4])) {
			t.Fatalf("leaks: %s", s)
		}
	}
	if _, err := json.Marshal(k); err == nil {
		t.Fatal("json.Marshal succeeded")
	}
}

func FuzzParseBackupKey(f *testing.F) {
	k, _ := NewBackupKey()
	f.Add(k.Text())
	f.Add(strings.ToLower(k.Text()))
	f.Add("")
	f.Add("UUUU-UUUU")
	f.Add(strings.Repeat("Z", 32))
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseBackupKey(s)
		if err != nil {
			if !errors.Is(err, ErrBackupKey) || err.Error() == "" {
				t.Fatalf("error %v does not wrap ErrBackupKey", err)
			}
			return
		}
		// Anything accepted re-encodes to the canonical text and parses again.
		again, err := ParseBackupKey(got.Text())
		if err != nil || again != got {
			t.Fatalf("canonical form of accepted %q does not round-trip: %v", s, err)
		}
	})
}

func FuzzPhraseKEK(f *testing.F) {
	f.Add("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
	f.Add("zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong")
	f.Add("")
	f.Add("abandon")
	f.Add("\x00\xff")
	f.Fuzz(func(t *testing.T, s string) {
		kek, err := PhraseKEK(s)
		if err != nil {
			var pe *PhraseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrPhrase) || pe.Msg == "" {
				t.Fatalf("error %v is not a PhraseError", err)
			}
			return
		}
		// Accepted input is 12 valid words whose normal form gives the same key.
		n := NormalizePhrase(s)
		if len(strings.Fields(n)) != 12 {
			t.Fatalf("accepted %q", s)
		}
		k2, err := PhraseKEK(n)
		if err != nil || !k2.Equal(&kek) {
			t.Fatalf("normal form differs: %v", err)
		}
	})
}

// TestRecoveryWrapGrowth adds a phrase wrap and a backup-key wrap to a
// vault file and checks the growth of its serialised form (< 1 KiB per
// way, issue 10), then opens the DEK with each recovery KEK and resets the
// password with it, as the vault does on POST /vault/recovery/reset.
func TestRecoveryWrapGrowth(t *testing.T) {
	salt, _ := NewSalt()
	params := KDFParams{Alg: KDFArgon2id, MemoryKiB: MinMemoryKiB, Iterations: MinIterations, Parallelism: 1}
	pw, err := DeriveKEK([]byte("first password"), salt, params)
	if err != nil {
		t.Fatal(err)
	}
	v, dek, err := NewVaultFile(&pw, salt, params, []byte(`{"body":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	phrase, _ := NewRecoveryPhrase()
	pk, _ := PhraseKEK(phrase)
	bk, _ := NewBackupKey()
	bkek := BackupKeyKEK(&bk)
	size := len(v.Marshal())
	for _, w := range []struct {
		kind string
		kek  *KEK
	}{{WrapPhrase, &pk}, {WrapBackupKey, &bkek}} {
		if err := v.AddWrap(&dek, w.kind, "", w.kek); err != nil {
			t.Fatal(err)
		}
		n := len(v.Marshal())
		t.Logf("vault file header growth for the %s wrap: %d bytes", w.kind, n-size)
		if n-size >= 1024 {
			t.Errorf("%s wrap: +%d bytes, want < 1 KiB", w.kind, n-size)
		}
		size = n
	}
	for _, w := range []struct {
		kind string
		kek  *KEK
	}{{WrapPhrase, &pk}, {WrapBackupKey, &bkek}} {
		got, err := v.UnlockWrap(w.kind, "", w.kek)
		if err != nil || !got.Equal(&dek) {
			t.Fatalf("UnlockWrap(%s): %v", w.kind, err)
		}
		if _, err := v.UnlockWrap(w.kind, "", &pw); err == nil {
			t.Fatalf("the password KEK opens the %s wrap", w.kind)
		}
	}
	// Reset: a new password wrap, the recovery wraps kept, the old password refused.
	salt2, _ := NewSalt()
	pw2, _ := DeriveKEK([]byte("second password"), salt2, params)
	d, _ := v.UnlockWrap(WrapPhrase, "", &pk)
	if err := v.SetPassword(&d, &pw2, salt2, params, true); err != nil {
		t.Fatal(err)
	}
	v2, err := ParseVaultFile(v.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Unlock(&pw); err == nil {
		t.Fatal("old password still opens the vault after the reset")
	}
	if got, err := v2.Unlock(&pw2); err != nil || !got.Equal(&dek) {
		t.Fatalf("new password: %v", err)
	}
	if got, err := v2.UnlockWrap(WrapBackupKey, "", &bkek); err != nil || !got.Equal(&dek) {
		t.Fatalf("backup key after the reset: %v", err)
	}
}

func BenchmarkPhraseKEK(b *testing.B) {
	p, _ := NewRecoveryPhrase()
	for b.Loop() {
		if _, err := PhraseKEK(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBackupKeyKEK(b *testing.B) {
	k, _ := NewBackupKey()
	text := k.Text()
	for b.Loop() {
		bk, err := ParseBackupKey(text)
		if err != nil {
			b.Fatal(err)
		}
		_ = BackupKeyKEK(&bk)
	}
}

// BenchmarkRecoveryResetCrypto is the container's crypto of a reset,
// excluding Argon2id (the browser derives the new password's KEK): open
// the DEK with the phrase KEK, set the new password wrap, serialise.
func BenchmarkRecoveryResetCrypto(b *testing.B) {
	salt, _ := NewSalt()
	params := KDFParams{Alg: KDFArgon2id, MemoryKiB: MinMemoryKiB, Iterations: MinIterations, Parallelism: 1}
	pw, _ := DeriveKEK([]byte("first password"), salt, params)
	v, dek, _ := NewVaultFile(&pw, salt, params, bytes.Repeat([]byte("x"), 64<<10))
	p, _ := NewRecoveryPhrase()
	pk, _ := PhraseKEK(p)
	if err := v.AddWrap(&dek, WrapPhrase, "", &pk); err != nil {
		b.Fatal(err)
	}
	var newKEK KEK
	newKEK[0] = 1
	for b.Loop() {
		d, err := v.UnlockWrap(WrapPhrase, "", &pk)
		if err != nil {
			b.Fatal(err)
		}
		if err := v.SetPassword(&d, &newKEK, salt, params, true); err != nil {
			b.Fatal(err)
		}
		_ = v.Marshal()
	}
}
