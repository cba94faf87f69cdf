package crypto

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// KeySize is the size in bytes of every symmetric key in this package
// (KEK, DEK, SubKey): 256 bits.
const KeySize = 32

// errSecretMarshal is returned when a secret key type is asked to encode
// itself as text or JSON: secrets leave memory only through explicit
// byte access (k[:]), never by accident through a logger or encoder.
var errSecretMarshal = errors.New("crypto: refusing to marshal secret key material")

// errKeySize is returned by the FromBytes constructors for input that is not
// exactly KeySize bytes long.
var errKeySize = errors.New("crypto: key must be 32 bytes")

// KEK is a key-encryption key: the 32-byte Argon2id output that the browser
// derives from the user's password ([DeriveKEK], SPEC §5.1). It only wraps
// and unwraps the [DEK]; it never encrypts data directly.
//
// It never prints its bytes: String, GoString and Format (every fmt verb,
// including %x and %d) produce "crypto.KEK(redacted)", and MarshalText and
// MarshalJSON fail. Use k[:] where the bytes are really needed. The zero
// value is an all-zero key, which no derivation produces in practice.
type KEK [KeySize]byte

// DEK is the data-encryption key: 32 random bytes created once per vault
// ([NewDEK]) and stored only wrapped ([WrapDEK]). Sub-keys for each purpose
// come from it through [DeriveSubKey]; the DEK itself seals nothing.
// It redacts like [KEK].
type DEK [KeySize]byte

// SubKey is a purpose-bound key derived from a [DEK] with HKDF-SHA256
// ([DeriveSubKey]). It redacts like [KEK].
type SubKey [KeySize]byte

// NewDEK returns a fresh random data-encryption key from crypto/rand.
func NewDEK() (DEK, error) {
	var k DEK
	if _, err := rand.Read(k[:]); err != nil {
		return DEK{}, err
	}
	return k, nil
}

// KEKFromBytes copies b, which must be exactly [KeySize] bytes (for example
// the decoded "derivedKey" of an unlock request), into a KEK.
func KEKFromBytes(b []byte) (KEK, error) {
	var k KEK
	if len(b) != KeySize {
		return k, errKeySize
	}
	copy(k[:], b)
	return k, nil
}

// DEKFromBytes copies b, which must be exactly [KeySize] bytes, into a DEK.
func DEKFromBytes(b []byte) (DEK, error) {
	var k DEK
	if len(b) != KeySize {
		return k, errKeySize
	}
	copy(k[:], b)
	return k, nil
}

// String returns "crypto.KEK(redacted)"; it never reveals key bytes.
func (KEK) String() string { return "crypto.KEK(redacted)" }

// GoString returns the same redacted form as String, for %#v.
func (k KEK) GoString() string { return k.String() }

// Format writes the redacted form for every fmt verb and flag.
func (k KEK) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// MarshalText always fails: key material is never encoded implicitly.
func (KEK) MarshalText() ([]byte, error) { return nil, errSecretMarshal }

// MarshalJSON always fails: key material is never encoded implicitly.
func (KEK) MarshalJSON() ([]byte, error) { return nil, errSecretMarshal }

// Equal reports whether k and o are the same key, in constant time.
func (k *KEK) Equal(o *KEK) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// Zero overwrites the key with zeros (call it when the key is no longer
// needed, e.g. on vault lock). Copies made elsewhere are not affected.
func (k *KEK) Zero() { clear(k[:]) }

// String returns "crypto.DEK(redacted)"; it never reveals key bytes.
func (DEK) String() string { return "crypto.DEK(redacted)" }

// GoString returns the same redacted form as String, for %#v.
func (k DEK) GoString() string { return k.String() }

// Format writes the redacted form for every fmt verb and flag.
func (k DEK) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// MarshalText always fails: key material is never encoded implicitly.
func (DEK) MarshalText() ([]byte, error) { return nil, errSecretMarshal }

// MarshalJSON always fails: key material is never encoded implicitly.
func (DEK) MarshalJSON() ([]byte, error) { return nil, errSecretMarshal }

// Equal reports whether k and o are the same key, in constant time.
func (k *DEK) Equal(o *DEK) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// Zero overwrites the key with zeros. Copies made elsewhere are not affected.
func (k *DEK) Zero() { clear(k[:]) }

// String returns "crypto.SubKey(redacted)"; it never reveals key bytes.
func (SubKey) String() string { return "crypto.SubKey(redacted)" }

// GoString returns the same redacted form as String, for %#v.
func (k SubKey) GoString() string { return k.String() }

// Format writes the redacted form for every fmt verb and flag.
func (k SubKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// MarshalText always fails: key material is never encoded implicitly.
func (SubKey) MarshalText() ([]byte, error) { return nil, errSecretMarshal }

// MarshalJSON always fails: key material is never encoded implicitly.
func (SubKey) MarshalJSON() ([]byte, error) { return nil, errSecretMarshal }

// Equal reports whether k and o are the same key, in constant time.
func (k *SubKey) Equal(o *SubKey) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// Zero overwrites the key with zeros. Copies made elsewhere are not affected.
func (k *SubKey) Zero() { clear(k[:]) }
