package crypto

import (
	"crypto/rand"
	"errors"

	"golang.org/x/crypto/chacha20poly1305"
)

// AEAD layout constants: a sealed message is nonce ‖ ciphertext ‖ tag.
const (
	// NonceSize is the XChaCha20-Poly1305 nonce size (24 bytes).
	NonceSize = chacha20poly1305.NonceSizeX
	// TagSize is the Poly1305 tag size (16 bytes).
	TagSize = chacha20poly1305.Overhead
	// Overhead is how much longer [Seal]'s output is than its input
	// (NonceSize + TagSize = 40 bytes).
	Overhead = NonceSize + TagSize
)

// ErrDecrypt is returned by every open/unwrap function when authentication
// fails: wrong key, wrong associated data, tampered, truncated or
// malformed input. It deliberately does not say which.
var ErrDecrypt = errors.New("crypto: decryption failed")

// Seal encrypts and authenticates plaintext with XChaCha20-Poly1305
// (draft-irtf-cfrg-xchacha-03 §2, built on RFC 8439) under key, binding ad
// (associated data, authenticated but not encrypted; may be nil). The nonce
// is 24 fresh random bytes from crypto/rand, so one key can seal any
// practical number of messages without nonce reuse.
//
// Output layout (len(plaintext)+40 bytes, newly allocated):
//
//	nonce (24) ‖ ciphertext (len(plaintext)) ‖ Poly1305 tag (16)
//
// The only possible error is a failure of the system random source.
func Seal(key *[32]byte, plaintext, ad []byte) ([]byte, error) {
	return SealAppend(make([]byte, 0, len(plaintext)+Overhead), key, plaintext, ad)
}

// SealAppend is [Seal] appending its output to dst and returning the
// extended slice, for callers that reuse buffers (e.g. framing many
// transcript records). plaintext must not overlap dst's spare capacity
// (x/crypto panics on such overlap); in-place sealing is not supported.
func SealAppend(dst []byte, key *[32]byte, plaintext, ad []byte) ([]byte, error) {
	var nonce [NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	return sealWithNonce(dst, key, &nonce, plaintext, ad), nil
}

// sealWithNonce appends nonce ‖ XChaCha20-Poly1305(key, nonce, plaintext,
// ad) to dst. Only Seal/SealAppend (with a random nonce) and the
// known-answer tests call it; reusing a nonce under one key is
// catastrophic.
func sealWithNonce(dst []byte, key *[32]byte, nonce *[NonceSize]byte, plaintext, ad []byte) []byte {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic("crypto: NewX rejected a 32-byte key: " + err.Error()) // unreachable
	}
	return aead.Seal(append(dst, nonce[:]...), nonce[:], plaintext, ad)
}

// Open authenticates and decrypts sealed (the output of [Seal]) under key
// and ad, returning a new plaintext slice. Any failure, including input
// shorter than [Overhead], returns [ErrDecrypt] and no plaintext.
func Open(key *[32]byte, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, ErrDecrypt
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, ErrDecrypt // unreachable: the key is 32 bytes
	}
	pt, err := aead.Open(nil, sealed[:NonceSize], sealed[NonceSize:], ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
