package social

import (
	"bytes"
	stdhkdf "crypto/hkdf"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestSplitSealRecover(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	shares, err := Split(secret, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := KEK(secret)
	pub, priv, _ := NewKeyPair()
	var sealed [][]byte
	for i, sh := range shares {
		m, err := (&Share{Owner: "u1", Request: "r1", Epoch: 7, Threshold: 3, Share: sh}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		c, err := Seal(pub, m)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(c, sh) {
			t.Fatalf("share %d in clear", i)
		}
		sealed = append(sealed, c)
	}
	if _, n, err := Recover(pub, priv, "u1", "r1", sealed[:2]); !errors.Is(err, ErrShares) || n != 2 {
		t.Fatalf("two shares: %d %v", n, err)
	}
	// Two shares combine to something, but not to the secret.
	if s2, err := Combine(shares[:2]); err != nil || bytes.Equal(s2, secret) {
		t.Fatalf("two shares rebuilt the secret (%v)", err)
	}
	dup := append([][]byte{sealed[0], sealed[0]}, sealed[3])
	if _, _, err := Recover(pub, priv, "u1", "r1", dup); !errors.Is(err, ErrShares) {
		t.Fatalf("a repeated share counted twice: %v", err)
	}
	if _, _, err := Recover(pub, priv, "u1", "other", sealed[2:]); !errors.Is(err, ErrShares) {
		t.Fatalf("shares of another request were used: %v", err)
	}
	got, n, err := Recover(pub, priv, "u1", "r1", sealed[2:])
	if err != nil || n != 3 || got != want {
		t.Fatalf("three shares: %d %v", n, err)
	}
	_, other, _ := NewKeyPair()
	if _, err := Open(pub, other, sealed[0]); !errors.Is(err, ErrOpen) {
		t.Fatalf("opened with the wrong key: %v", err)
	}
}

func TestThresholdBounds(t *testing.T) {
	s, _ := NewSecret()
	for _, c := range [][2]int{{1, 1}, {5, 1}, {2, 3}, {11, 3}} {
		if _, err := Split(s, c[0], c[1]); !errors.Is(err, ErrThreshold) {
			t.Errorf("Split n=%d k=%d: %v", c[0], c[1], err)
		}
	}
	var zero [32]byte // a low-order point
	if _, err := Seal(&zero, []byte("x")); !errors.Is(err, ErrLowOrder) {
		t.Fatalf("sealed to a low-order key: %v", err)
	}
}

func TestShareMessageRoundTrip(t *testing.T) {
	sh := &Share{Owner: "owner", Request: "req", Epoch: 1 << 30, Threshold: 10, Share: bytes.Repeat([]byte{9}, ShareSize)}
	b, err := sh.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalShare(b)
	if err != nil || got.Owner != sh.Owner || got.Request != sh.Request || got.Epoch != sh.Epoch || got.Threshold != 10 || !bytes.Equal(got.Share, sh.Share) {
		t.Fatalf("%+v %v", got, err)
	}
	for i := range b {
		if _, err := UnmarshalShare(b[:i]); err == nil {
			t.Fatalf("truncated at %d parsed", i)
		}
	}
	if c := SafetyCode([]byte("k")); len(c) != 6 {
		t.Fatal(c)
	}
}

// TestKEKIsHKDF pins the social KEK to HKDF-SHA256 (RFC 5869) with no salt
// and info "ocmt/v1/kek/social", checked against the standard library's
// independent implementation.
func TestKEKIsHKDF(t *testing.T) {
	secret := bytes.Repeat([]byte{0x5a}, SecretSize)
	got, err := KEK(secret)
	if err != nil {
		t.Fatal(err)
	}
	want, err := stdhkdf.Key(sha256.New, secret, nil, "ocmt/v1/kek/social", 32)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:], want) {
		t.Fatalf("KEK %x, HKDF %x", got, want)
	}
	if _, err := KEK(secret[:31]); err == nil {
		t.Fatal("a 31-byte secret was accepted")
	}
}
