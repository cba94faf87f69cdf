package crypto

import (
	"bytes"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key := [32]byte(randomKEK(t))
	for _, n := range []int{0, 1, 63, 64, 65, 4096} {
		pt := bytes.Repeat([]byte{0xa5}, n)
		ad := []byte("ad")
		s1, err := Seal(&key, pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		if len(s1) != n+Overhead {
			t.Errorf("len(Seal(%d bytes)) = %d, want %d", n, len(s1), n+Overhead)
		}
		s2, _ := Seal(&key, pt, ad)
		if bytes.Equal(s1[:NonceSize], s2[:NonceSize]) {
			t.Error("Seal reused a nonce")
		}
		got, err := Open(&key, s1, ad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("Open(Seal(%d bytes)) = %v", n, err)
		}
	}
}

func TestOpenFailures(t *testing.T) {
	key := [32]byte(randomKEK(t))
	other := [32]byte(randomKEK(t))
	ad := []byte("header")
	sealed, _ := Seal(&key, []byte("secret message"), ad)
	flip := func(i int) []byte { b := bytes.Clone(sealed); b[i] ^= 0x01; return b }
	for _, tc := range []struct {
		name   string
		key    *[32]byte
		sealed []byte
		ad     []byte
	}{
		{"wrong key", &other, sealed, ad},
		{"wrong ad", &key, sealed, []byte("headeR")},
		{"nil ad", &key, sealed, nil},
		{"nonce flipped", &key, flip(0), ad},
		{"ciphertext flipped", &key, flip(NonceSize + 3), ad},
		{"tag flipped", &key, flip(len(sealed) - 1), ad},
		{"truncated by one", &key, sealed[:len(sealed)-1], ad},
		{"only nonce and tag minus one", &key, sealed[:Overhead-1], ad},
		{"empty", &key, nil, ad},
		{"extended", &key, append(bytes.Clone(sealed), 0), ad},
	} {
		got, err := Open(tc.key, tc.sealed, tc.ad)
		if err != ErrDecrypt || got != nil {
			t.Errorf("%s: Open = %q, %v; want nil, ErrDecrypt", tc.name, got, err)
		}
	}
}

func TestWrapDEK(t *testing.T) {
	kek := randomKEK(t)
	dek, _ := NewDEK()
	ad := WrapAD(WrapPassword, []byte("0123456789abcdef"))
	if string(ad) != "ocmt/v1/wrap/password0123456789abcdef" {
		t.Errorf("WrapAD = %q", ad)
	}
	w, err := WrapDEK(&kek, &dek, ad)
	if err != nil || len(w) != WrappedDEKSize {
		t.Fatalf("WrapDEK = %d bytes, %v", len(w), err)
	}
	got, err := UnwrapDEK(&kek, w, ad)
	if err != nil || !got.Equal(&dek) {
		t.Fatalf("UnwrapDEK = %v", err)
	}
	other := randomKEK(t)
	for name, f := range map[string]func() (DEK, error){
		"wrong kek":  func() (DEK, error) { return UnwrapDEK(&other, w, ad) },
		"wrong salt": func() (DEK, error) { return UnwrapDEK(&kek, w, WrapAD(WrapPassword, []byte("0123456789abcdeF"))) },
		"wrong kind": func() (DEK, error) { return UnwrapDEK(&kek, w, WrapAD(WrapPhrase, []byte("0123456789abcdef"))) },
		"truncated":  func() (DEK, error) { return UnwrapDEK(&kek, w[:len(w)-1], ad) },
		"not a DEK": func() (DEK, error) {
			s, _ := Seal((*[32]byte)(&kek), make([]byte, 31), ad)
			return UnwrapDEK(&kek, s, ad)
		},
	} {
		if d, err := f(); err != ErrDecrypt || d != (DEK{}) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestDeriveSubKey(t *testing.T) {
	dek, _ := NewDEK()
	seen := map[SubKey]string{}
	for _, l := range []string{LabelSecrets, LabelTranscripts, LabelIdentity, LabelCapabilities} {
		k, err := DeriveSubKey(&dek, l)
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[k]; dup {
			t.Errorf("labels %q and %q give the same key", prev, l)
		}
		seen[k] = l
		if k2, _ := DeriveSubKey(&dek, l); k2 != k {
			t.Errorf("DeriveSubKey(%q) not deterministic", l)
		}
	}
	if tk, _ := TranscriptKey(&dek); seen[tk] != LabelTranscripts {
		t.Error("TranscriptKey differs from DeriveSubKey(LabelTranscripts)")
	}
	if _, err := DeriveSubKey(&dek, ""); err == nil {
		t.Error("empty label accepted")
	}
	dek2, _ := NewDEK()
	a, _ := DeriveSubKey(&dek, LabelSecrets)
	b, _ := DeriveSubKey(&dek2, LabelSecrets)
	if a == b {
		t.Error("different DEKs give the same sub-key")
	}
}
