package crypto

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"
)

// Text-form prefixes of public keys (STYLE: text forms carry a type prefix).
const (
	ed25519Prefix = "ed25519:"
	x25519Prefix  = "x25519:"
)

// IdentitySize is the length of [Identity.Bytes]: a 32-byte Ed25519 seed
// followed by a 32-byte X25519 private key.
const IdentitySize = ed25519.SeedSize + curve25519.ScalarSize

var (
	errPublicKeyText = errors.New("crypto: malformed public key text")
	errIdentitySize  = errors.New("crypto: identity must be 64 bytes")
	errLowOrder      = errors.New("crypto: X25519 key is a low-order point")
)

// Identity is a vault's long-term key pair set (SPEC §5.1): an Ed25519
// signing key (RFC 8032) and an X25519 key-agreement key (RFC 7748) for
// NaCl box envelopes (SPEC §7.2). Both are random and independent. It is
// secret: fmt prints "crypto.Identity(redacted)" for every verb and
// MarshalJSON fails; store it with [Identity.Bytes] inside the sealed vault
// body. Make identities with [NewIdentity] or [IdentityFromBytes]; methods
// panic on a zero Identity.
type Identity struct {
	// SignPrivate is the 64-byte Ed25519 private key (seed ‖ public key).
	SignPrivate ed25519.PrivateKey
	// BoxPrivate is the X25519 private scalar.
	BoxPrivate [32]byte
}

// NewIdentity returns a fresh random identity from crypto/rand.
func NewIdentity() (*Identity, error) {
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	id := &Identity{SignPrivate: sk}
	if _, err := rand.Read(id.BoxPrivate[:]); err != nil {
		return nil, err
	}
	return id, nil
}

// IdentityFromBytes rebuilds an identity from the 64 bytes of
// [Identity.Bytes]. It copies b.
func IdentityFromBytes(b []byte) (*Identity, error) {
	if len(b) != IdentitySize {
		return nil, errIdentitySize
	}
	id := &Identity{SignPrivate: ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])}
	copy(id.BoxPrivate[:], b[ed25519.SeedSize:])
	return id, nil
}

// Bytes returns the secret encoding of id: Ed25519 seed (32) ‖ X25519
// private key (32). Keep it inside sealed storage and clear it after use.
func (id *Identity) Bytes() []byte {
	b := make([]byte, 0, IdentitySize)
	b = append(b, id.SignPrivate.Seed()...)
	return append(b, id.BoxPrivate[:]...)
}

// PublicKeys are the public halves of an [Identity]. Their JSON form is
// the SPEC §11 "publicKeys" object with prefixed text forms:
//
//	{"ed25519":"ed25519:<base64url>","x25519":"x25519:<base64url>"}
//
// where base64url is RFC 4648 §5 without padding.
type PublicKeys struct {
	// Ed25519 is the 32-byte signing public key.
	Ed25519 ed25519.PublicKey
	// X25519 is the key-agreement public key.
	X25519 [32]byte
}

// Public returns the public keys of id.
func (id *Identity) Public() PublicKeys {
	pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
	copy(pub, id.SignPrivate[ed25519.SeedSize:])
	var x [32]byte
	curve25519.ScalarBaseMult(&x, &id.BoxPrivate)
	return PublicKeys{Ed25519: pub, X25519: x}
}

// Ed25519Text returns "ed25519:" followed by the unpadded base64url key.
func (p PublicKeys) Ed25519Text() string { return FormatEd25519(p.Ed25519) }

// X25519Text returns "x25519:" followed by the unpadded base64url key.
func (p PublicKeys) X25519Text() string { return FormatX25519(&p.X25519) }

type publicKeysJSON struct {
	Ed25519 string `json:"ed25519"`
	X25519  string `json:"x25519"`
}

// MarshalJSON encodes p as {"ed25519":"ed25519:…","x25519":"x25519:…"}.
func (p PublicKeys) MarshalJSON() ([]byte, error) {
	return json.Marshal(publicKeysJSON{p.Ed25519Text(), p.X25519Text()})
}

// UnmarshalJSON parses the form written by MarshalJSON; both keys are
// required and must carry their prefixes.
func (p *PublicKeys) UnmarshalJSON(b []byte) error {
	var j publicKeysJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	ed, err := ParseEd25519(j.Ed25519)
	if err != nil {
		return err
	}
	x, err := ParseX25519(j.X25519)
	if err != nil {
		return err
	}
	*p = PublicKeys{Ed25519: ed, X25519: x}
	return nil
}

// FormatEd25519 returns the text form "ed25519:<base64url>" of pub.
func FormatEd25519(pub ed25519.PublicKey) string {
	return ed25519Prefix + base64.RawURLEncoding.EncodeToString(pub)
}

// FormatX25519 returns the text form "x25519:<base64url>" of pub.
func FormatX25519(pub *[32]byte) string {
	return x25519Prefix + base64.RawURLEncoding.EncodeToString(pub[:])
}

// ParseEd25519 parses "ed25519:<base64url>" (unpadded, 32 bytes).
func ParseEd25519(s string) (ed25519.PublicKey, error) {
	b, ok := parsePrefixed(s, ed25519Prefix)
	if !ok || len(b) != ed25519.PublicKeySize {
		return nil, errPublicKeyText
	}
	return ed25519.PublicKey(b), nil
}

// ParseX25519 parses "x25519:<base64url>" (unpadded, 32 bytes).
func ParseX25519(s string) ([32]byte, error) {
	var k [32]byte
	b, ok := parsePrefixed(s, x25519Prefix)
	if !ok || len(b) != len(k) {
		return k, errPublicKeyText
	}
	copy(k[:], b)
	return k, nil
}

func parsePrefixed(s, prefix string) ([]byte, bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return nil, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	return b, err == nil
}

// Sign signs msg with the Ed25519 key (RFC 8032 §5.1.6, pure Ed25519) and
// returns the 64-byte signature. Protocols should sign domain-separated
// messages (see [Identity.SignKeyRecord]) so that a signature made for one
// purpose cannot be replayed as another.
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.SignPrivate, msg) }

// Verify reports whether sig is a valid Ed25519 signature of msg by pub
// (RFC 8032 §5.1.7, as implemented by crypto/ed25519). Unlike
// ed25519.Verify it does not panic on a public key of the wrong length; it
// returns false.
func Verify(pub ed25519.PublicKey, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, msg, sig)
}

// SealBox encrypts msg to the X25519 public key to, authenticated as id,
// with NaCl box (X25519 + XSalsa20-Poly1305, golang.org/x/crypto/nacl/box)
// and a random 24-byte nonce. Output: nonce (24) ‖ box (len(msg)+16).
// A low-order public key (which would make the shared key predictable,
// RFC 7748 §6.1) is refused.
func (id *Identity) SealBox(to *[32]byte, msg []byte) ([]byte, error) {
	if err := id.checkPeer(to); err != nil {
		return nil, err
	}
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	return box.Seal(nonce[:], msg, &nonce, to, &id.BoxPrivate), nil
}

// OpenBox decrypts the output of [Identity.SealBox] sent to id by the
// holder of the X25519 public key from. Any failure returns [ErrDecrypt].
func (id *Identity) OpenBox(from *[32]byte, sealed []byte) ([]byte, error) {
	if len(sealed) < 24+box.Overhead || id.checkPeer(from) != nil {
		return nil, ErrDecrypt
	}
	var nonce [24]byte
	copy(nonce[:], sealed)
	msg, ok := box.Open(nil, sealed[24:], &nonce, from, &id.BoxPrivate)
	if !ok {
		return nil, ErrDecrypt
	}
	return msg, nil
}

// checkPeer rejects peer keys whose X25519 product with our key is all
// zeros (low-order points), using curve25519.X25519's own check.
func (id *Identity) checkPeer(peer *[32]byte) error {
	shared, err := curve25519.X25519(id.BoxPrivate[:], peer[:])
	if err != nil {
		return errLowOrder
	}
	clear(shared)
	return nil
}

// Zero overwrites both private keys with zeros.
func (id *Identity) Zero() {
	clear(id.SignPrivate)
	clear(id.BoxPrivate[:])
}

// String returns "crypto.Identity(redacted)".
func (Identity) String() string { return "crypto.Identity(redacted)" }

// GoString returns the same redacted form as String, for %#v.
func (id Identity) GoString() string { return id.String() }

// Format writes the redacted form for every fmt verb and flag.
func (id Identity) Format(f fmt.State, _ rune) { io.WriteString(f, id.String()) }

// MarshalJSON always fails: use [Identity.Bytes] deliberately instead.
func (Identity) MarshalJSON() ([]byte, error) { return nil, errSecretMarshal }
