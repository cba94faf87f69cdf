package crypto

import (
	"crypto/rand"
	"fmt"
	"io"

	"github.com/ocmt/ocmt/crypto/internal/recovery"
)

// Recovery ways in (issue 10): a BIP39 recovery phrase and a printable
// backup key. Each yields a [KEK] that wraps the vault's DEK like the
// password's (kinds [WrapPhrase] and [WrapBackupKey]). The browser runs
// the same derivations (crypto/internal/recovery, compiled into kdf.wasm)
// and sends only the KEK to the container; these functions are for the
// container's tests and tools.
const (
	// LabelPhraseKEK is the HKDF info of [PhraseKEK].
	LabelPhraseKEK = recovery.LabelPhrase
	// LabelBackupKeyKEK is the HKDF info of [BackupKeyKEK].
	LabelBackupKeyKEK = recovery.LabelBackupKey
	// PhraseWords is the length of a recovery phrase (12 BIP39 words,
	// 128 bits of entropy).
	PhraseWords = recovery.PhraseWords
	// BackupKeySize is the size of a backup key (16 bytes, 128 bits).
	BackupKeySize = recovery.BackupKeySize
)

// Errors of the recovery parsers. Every error of [PhraseKEK] wraps
// ErrPhrase (and is a *[PhraseError]); every error of [ParseBackupKey]
// wraps ErrBackupKey (and is a *[BackupKeyError]). Their messages are
// written for the person who typed the input.
var (
	ErrPhrase    = recovery.ErrPhrase
	ErrBackupKey = recovery.ErrBackupKey
)

type (
	// PhraseError describes an invalid recovery phrase: Msg is a readable
	// message, Word the 1-based position of an unknown word (or 0).
	PhraseError = recovery.PhraseError
	// BackupKeyError describes a backup key that does not parse (wrong
	// length, a character outside Crockford base32, or a failed check).
	BackupKeyError = recovery.BackupKeyError
)

// BackupKey is the 128-bit secret of a backup key. Its printable form
// ([BackupKey.Text]) is what the user keeps; it redacts like [KEK].
type BackupKey [BackupKeySize]byte

// NewRecoveryPhrase returns a fresh 12-word BIP39 English phrase from
// 128 bits of crypto/rand entropy. (The product makes phrases in the
// browser; this is for tests and tools.)
func NewRecoveryPhrase() (string, error) {
	var e [recovery.PhraseEntropySize]byte
	if _, err := rand.Read(e[:]); err != nil {
		return "", err
	}
	defer clear(e[:])
	return recovery.NewPhrase(e[:])
}

// NormalizePhrase returns the form of a phrase the seed is computed over:
// lowercase, words separated by single spaces.
func NormalizePhrase(s string) string { return recovery.NormalizePhrase(s) }

// PhraseKEK derives the KEK of a 12-word recovery phrase: the input is
// normalised ([NormalizePhrase]) and must be 12 words of the BIP39 English
// list with a valid checksum (else a *[PhraseError] wrapping [ErrPhrase]);
// seed = BIP39 seed with passphrase "" (PBKDF2-HMAC-SHA512, 2048 rounds,
// 64 bytes, via github.com/tyler-smith/go-bip39); KEK = HKDF-SHA256(ikm =
// seed, salt = none, info = "ocmt/v1/kek/phrase"), 32 bytes.
func PhraseKEK(mnemonic string) (KEK, error) {
	k, err := recovery.PhraseKEK(mnemonic)
	defer clear(k[:])
	return KEK(k), err
}

// NewBackupKey returns a fresh backup key from crypto/rand.
func NewBackupKey() (BackupKey, error) {
	var k BackupKey
	if _, err := rand.Read(k[:]); err != nil {
		return BackupKey{}, err
	}
	return k, nil
}

// Text returns the printable form: Crockford base32 of the 16 key bytes
// followed by a 4-byte check (the first bytes of SHA-256 of the key), 32
// symbols in 8 dash-separated groups of 4, e.g.
// "0ZQ4-7M2K-....-....-....-....-....-....".
func (k *BackupKey) Text() string {
	s, _ := recovery.FormatBackupKey(k[:]) // cannot fail for 16 bytes
	return s
}

// ParseBackupKey reads the printable form as typed: case, spaces and
// dashes are ignored, I and L read as 1 and O as 0 (Crockford). It fails
// with a *[BackupKeyError] wrapping [ErrBackupKey] for a wrong length, a
// foreign character or a check that does not match (a typo).
func ParseBackupKey(text string) (BackupKey, error) {
	k, err := recovery.ParseBackupKey(text)
	return BackupKey(k), err
}

// BackupKeyKEK derives the KEK of a backup key: HKDF-SHA256(ikm = the 16
// key bytes, salt = none, info = "ocmt/v1/kek/backup-key"), 32 bytes.
func BackupKeyKEK(k *BackupKey) KEK {
	kek := recovery.BackupKeyKEK(*k)
	defer clear(kek[:])
	return KEK(kek)
}

// String returns "crypto.BackupKey(redacted)"; use Text for the printable form.
func (BackupKey) String() string { return "crypto.BackupKey(redacted)" }

// GoString returns the same redacted form as String, for %#v.
func (k BackupKey) GoString() string { return k.String() }

// Format writes the redacted form for every fmt verb and flag.
func (k BackupKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// MarshalText always fails: key material is never encoded implicitly.
func (BackupKey) MarshalText() ([]byte, error) { return nil, errSecretMarshal }

// MarshalJSON always fails: key material is never encoded implicitly.
func (BackupKey) MarshalJSON() ([]byte, error) { return nil, errSecretMarshal }

// Zero overwrites the key with zeros.
func (k *BackupKey) Zero() { clear(k[:]) }
