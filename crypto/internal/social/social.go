// Package social is the small, dependency-light core of social recovery
// (issue 10, item 2; SPEC §6): Shamir splitting of the recovery secret
// (github.com/hashicorp/vault/shamir, GF(2^8)), the social KEK derivation,
// and anonymous NaCl sealing of shares to an X25519 key
// (golang.org/x/crypto/nacl/box SealAnonymous). Package crypto wraps it
// for the vault; the browser runs the same code through crypto/wasm,
// which imports this package rather than crypto to stay small.
package social

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"

	"github.com/hashicorp/vault/shamir"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"
	"golang.org/x/crypto/nacl/box"
)

const (
	// SecretSize is the size of the recovery secret S in bytes.
	SecretSize = 32
	// ShareSize is the size of one share of S: S's length plus the
	// one-byte x coordinate shamir appends.
	ShareSize = SecretSize + shamir.ShareOverhead
	// KEKInfo is the HKDF info of the social KEK (part of the storage
	// format: never change it).
	KEKInfo = "ocmt/v1/kek/social"
	// MinThreshold and MaxContacts bound K and M: 2 ≤ K ≤ M ≤ MaxContacts.
	MinThreshold = 2
	MaxContacts  = 10
	// SealOverhead is what SealAnonymous adds to a message: an ephemeral
	// public key (32) and the Poly1305 tag (16).
	SealOverhead = box.AnonymousOverhead
)

// Errors.
var (
	ErrThreshold = errors.New("social: need 2 ≤ threshold ≤ contacts ≤ 10")
	ErrShares    = errors.New("social: shares do not combine (too few, duplicated or malformed)")
	ErrLowOrder  = errors.New("social: low-order X25519 public key")
	ErrOpen      = errors.New("social: cannot open sealed share")
)

// NewSecret returns a fresh random 32-byte recovery secret from
// crypto/rand. Clear it after use.
func NewSecret() ([]byte, error) {
	s := make([]byte, SecretSize)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Split splits secret into n shares of which any k rebuild it
// (2 ≤ k ≤ n ≤ MaxContacts). Each share is ShareSize bytes.
func Split(secret []byte, n, k int) ([][]byte, error) {
	if k < MinThreshold || k > n || n > MaxContacts {
		return nil, ErrThreshold
	}
	if len(secret) != SecretSize {
		return nil, errors.New("social: secret must be 32 bytes")
	}
	return shamir.Split(secret, n, k)
}

// Combine rebuilds the secret from shares. With fewer shares than the
// threshold it returns a wrong secret without error (that is how Shamir
// works): the caller learns it only when the KEK fails to unwrap.
func Combine(shares [][]byte) ([]byte, error) {
	if len(shares) < MinThreshold {
		return nil, ErrShares
	}
	for _, s := range shares {
		if len(s) != ShareSize {
			return nil, ErrShares
		}
	}
	s, err := shamir.Combine(shares)
	if err != nil {
		return nil, ErrShares
	}
	return s, nil
}

// KEK returns HKDF-SHA256(ikm = secret, salt = nil, info = KEKInfo), 32
// bytes: the key-encryption key of the vault's social wrap.
func KEK(secret []byte) ([32]byte, error) {
	var k [32]byte
	if len(secret) != SecretSize {
		return k, errors.New("social: secret must be 32 bytes")
	}
	_, err := io.ReadFull(hkdf.New(sha256.New, secret, nil, []byte(KEKInfo)), k[:])
	return k, err
}

// NewKeyPair returns a fresh X25519 key pair for NaCl box (the one-time
// key of a recovery request).
func NewKeyPair() (pub, priv *[32]byte, err error) {
	return box.GenerateKey(rand.Reader)
}

// CheckPublic refuses a low-order X25519 public key, for which the
// shared key of a seal would be predictable (RFC 7748 §6.1).
func CheckPublic(pub *[32]byte) error {
	var scalar [32]byte
	if _, err := rand.Read(scalar[:]); err != nil {
		return err
	}
	out, err := curve25519.X25519(scalar[:], pub[:])
	clear(scalar[:])
	if err != nil {
		return ErrLowOrder
	}
	clear(out)
	return nil
}

// Seal encrypts msg to pub anonymously (NaCl box with a fresh ephemeral
// sender key, box.SealAnonymous): only the holder of pub's private key
// can open it. Output: len(msg) + SealOverhead bytes.
func Seal(pub *[32]byte, msg []byte) ([]byte, error) {
	if err := CheckPublic(pub); err != nil {
		return nil, err
	}
	return box.SealAnonymous(nil, msg, pub, rand.Reader)
}

// Open decrypts the output of Seal with the key pair (pub, priv). Any
// failure is ErrOpen.
func Open(pub, priv *[32]byte, sealed []byte) ([]byte, error) {
	msg, ok := box.OpenAnonymous(nil, sealed, pub, priv)
	if !ok {
		return nil, ErrOpen
	}
	return msg, nil
}

// SafetyCode returns a 6-digit code derived from a request's one-time
// public key (SHA-256, first 4 bytes mod 10^6), for the owner and the
// contact to compare in person.
func SafetyCode(pub []byte) string {
	h := sha256.Sum256(append([]byte("ocmt/v1/social/code\x00"), pub...))
	n := (uint32(h[0])<<24 | uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3])) % 1000000
	b := []byte("000000")
	for i := 5; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b)
}
