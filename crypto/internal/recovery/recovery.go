// Package recovery holds the key derivations for the vault's recovery
// ways in (issue 10): the BIP39 recovery phrase and the printable backup
// key. It is shared by package crypto (the container and the tests) and
// crypto/wasm (the browser), like crypto/internal/kdf, so that both run
// the same code and the WebAssembly build does not link the rest of
// package crypto. Use the API of package crypto ([crypto.PhraseKEK],
// [crypto.ParseBackupKey], ...), not this package.
package recovery

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tyler-smith/go-bip39"
	"golang.org/x/crypto/hkdf"
)

// HKDF labels (the "info" input of RFC 5869) of the two KEKs. They are part
// of the storage format: never change one.
const (
	LabelPhrase    = "ocmt/v1/kek/phrase"
	LabelBackupKey = "ocmt/v1/kek/backup-key"
)

// Sizes.
const (
	// PhraseWords is the number of words of a recovery phrase: 12 BIP39
	// English words encode 128 bits of entropy and a 4-bit checksum.
	PhraseWords = 12
	// PhraseEntropySize is the entropy of a phrase in bytes (128 bits).
	PhraseEntropySize = 16
	// BackupKeySize is the size of a backup key's secret in bytes (128 bits).
	BackupKeySize = 16
	// backupCheckSize is the size of the check appended before encoding:
	// 16 + 4 bytes = 160 bits = exactly 32 base32 symbols, no padding.
	backupCheckSize = 4
	// BackupKeyGroups is the number of 4-symbol groups of the text form.
	BackupKeyGroups = 8
	// KeySize is the size of a derived KEK in bytes.
	KeySize = 32
)

// Errors. Every parse error wraps one of these sentinels; the messages are
// written for the user who typed the phrase or the key.
var (
	// ErrPhrase is wrapped by every error about a recovery phrase.
	ErrPhrase = errors.New("recovery phrase")
	// ErrBackupKey is wrapped by every error about a backup key.
	ErrBackupKey = errors.New("backup key")
	// ErrEntropy is returned for entropy of the wrong size.
	ErrEntropy = errors.New("recovery: entropy must be 16 bytes")
)

// PhraseError is the error of [PhraseSeed] and [PhraseKEK] for a phrase
// that is not a valid 12-word BIP39 English phrase. Word is the 1-based
// position of an unknown word (0 if the problem is not one word).
type PhraseError struct {
	Msg  string
	Word int
}

func (e *PhraseError) Error() string { return e.Msg }

// Unwrap returns [ErrPhrase].
func (e *PhraseError) Unwrap() error { return ErrPhrase }

// BackupKeyError is the error of [ParseBackupKey]; Msg is readable by the
// user who typed the key.
type BackupKeyError struct{ Msg string }

func (e *BackupKeyError) Error() string { return e.Msg }

// Unwrap returns [ErrBackupKey].
func (e *BackupKeyError) Unwrap() error { return ErrBackupKey }

// NormalizePhrase lowercases s and joins its words with single spaces
// (leading, trailing and repeated whitespace, including newlines and tabs,
// is dropped). BIP39 seeds are computed over exactly this form.
func NormalizePhrase(s string) string {
	return strings.Join(strings.Fields(strings.ToLower(s)), " ")
}

// NewPhrase returns the 12-word BIP39 English phrase for 16 bytes of
// entropy (which must come from a CSPRNG: crypto/rand in Go, WebCrypto's
// getRandomValues in the browser). Other sizes return [ErrEntropy].
func NewPhrase(entropy []byte) (string, error) {
	if len(entropy) != PhraseEntropySize {
		return "", ErrEntropy
	}
	return bip39.NewMnemonic(entropy)
}

// CheckPhrase validates a phrase (after [NormalizePhrase]) with any of the
// BIP39 lengths (12, 15, 18, 21, 24 words), checking every word against
// the English list and the checksum, and returns its normalised form. The
// error is a *[PhraseError].
func CheckPhrase(mnemonic string) (string, error) {
	m := NormalizePhrase(mnemonic)
	words := strings.Fields(m)
	if len(words) == 0 {
		return "", &PhraseError{Msg: "Enter your recovery phrase."}
	}
	if n := len(words); n%3 != 0 || n < 12 || n > 24 {
		return "", &PhraseError{Msg: fmt.Sprintf("A recovery phrase has %d words; this has %d.", PhraseWords, n)}
	}
	for i, w := range words {
		if _, ok := bip39.GetWordIndex(w); !ok {
			return "", &PhraseError{Msg: fmt.Sprintf("Word %d (%q) is not a recovery phrase word. Check its spelling.", i+1, w), Word: i + 1}
		}
	}
	if _, err := bip39.EntropyFromMnemonic(m); err != nil {
		return "", &PhraseError{Msg: "These words are not a valid recovery phrase (the checksum does not match). Check each word and their order."}
	}
	return m, nil
}

// PhraseSeed returns the 64-byte BIP39 seed of a valid phrase (see
// [CheckPhrase]) with the given BIP39 passphrase (ocmt uses ""):
// PBKDF2-HMAC-SHA512(normalised phrase, "mnemonic"+passphrase, 2048).
func PhraseSeed(mnemonic, passphrase string) ([]byte, error) {
	m, err := CheckPhrase(mnemonic)
	if err != nil {
		return nil, err
	}
	return bip39.NewSeed(m, passphrase), nil
}

// PhraseKEK returns the KEK of a 12-word recovery phrase:
// HKDF-SHA256(ikm = BIP39 seed (passphrase ""), salt = none,
// info = [LabelPhrase]), 32 bytes. Phrases of another length are refused
// (ocmt only makes 12-word phrases) with a *[PhraseError].
func PhraseKEK(mnemonic string) ([KeySize]byte, error) {
	var k [KeySize]byte
	if n := len(strings.Fields(mnemonic)); n != PhraseWords && n != 0 {
		return k, &PhraseError{Msg: fmt.Sprintf("A recovery phrase has %d words; this has %d.", PhraseWords, n)}
	}
	seed, err := PhraseSeed(mnemonic, "")
	if err != nil {
		return k, err
	}
	defer clear(seed)
	return expand(seed, LabelPhrase), nil
}

// crockford is the Crockford base32 alphabet (no I, L, O, U).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var backupEncoding = base32.NewEncoding(crockford).WithPadding(base32.NoPadding)

// backupCheck returns the check appended to a backup key: the first 4
// bytes of SHA-256(key). It catches a mistyped symbol (a wrong key is
// accepted with probability 2⁻³²) and reveals nothing useful about the
// key (it is shown with it anyway).
func backupCheck(key []byte) []byte {
	h := sha256.Sum256(key)
	return h[:backupCheckSize]
}

// FormatBackupKey returns the printable form of a 16-byte backup key: the
// Crockford base32 of key ‖ check (32 symbols) in 8 groups of 4 joined by
// "-", e.g. "7ZQ4-....-....". Other sizes return [ErrEntropy].
func FormatBackupKey(key []byte) (string, error) {
	if len(key) != BackupKeySize {
		return "", ErrEntropy
	}
	raw := append(append(make([]byte, 0, BackupKeySize+backupCheckSize), key...), backupCheck(key)...)
	s := backupEncoding.EncodeToString(raw)
	groups := make([]string, 0, BackupKeyGroups)
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:i+4])
	}
	return strings.Join(groups, "-"), nil
}

// ParseBackupKey reads a backup key as the user typed it: case, spaces and
// dashes do not matter, and Crockford's look-alikes are accepted (I and L
// read as 1, O as 0). It returns the 16-byte key, or a *[BackupKeyError]
// for the wrong number of symbols, a symbol outside the alphabet, or a
// check that does not match (a typo).
func ParseBackupKey(text string) ([BackupKeySize]byte, error) {
	var key [BackupKeySize]byte
	var b strings.Builder
	for _, r := range strings.ToUpper(text) {
		switch {
		case r == '-' || r == ' ' || r == '\t' || r == '\n' || r == '\r':
			continue
		case r == 'I' || r == 'L':
			r = '1'
		case r == 'O':
			r = '0'
		}
		if !strings.ContainsRune(crockford, r) {
			if r == 'U' {
				return key, &BackupKeyError{Msg: "A backup key has no letter U. Check what you typed."}
			}
			return key, &BackupKeyError{Msg: fmt.Sprintf("A backup key has only digits and letters; %q is not one of them.", r)}
		}
		b.WriteRune(r)
	}
	s := b.String()
	want := (BackupKeySize + backupCheckSize) * 8 / 5
	if len(s) != want {
		return key, &BackupKeyError{Msg: fmt.Sprintf("A backup key has %d characters in %d groups; this has %d.", want, BackupKeyGroups, len(s))}
	}
	raw, err := backupEncoding.DecodeString(s)
	if err != nil || len(raw) != BackupKeySize+backupCheckSize {
		return key, &BackupKeyError{Msg: "This is not a backup key."}
	}
	defer clear(raw)
	if subtle.ConstantTimeCompare(backupCheck(raw[:BackupKeySize]), raw[BackupKeySize:]) != 1 {
		return key, &BackupKeyError{Msg: "This backup key has a typo: its check does not match. Compare each group with your printout."}
	}
	copy(key[:], raw[:BackupKeySize])
	return key, nil
}

// BackupKeyKEK returns the KEK of a backup key: HKDF-SHA256(ikm = key,
// salt = none, info = [LabelBackupKey]), 32 bytes.
func BackupKeyKEK(key [BackupKeySize]byte) [KeySize]byte {
	return expand(key[:], LabelBackupKey)
}

// expand is HKDF-SHA256(ikm, salt = none, info = label) with L = 32
// (golang.org/x/crypto/hkdf); reading 32 bytes cannot fail.
func expand(ikm []byte, label string) [KeySize]byte {
	var k [KeySize]byte
	if _, err := io.ReadFull(hkdf.New(sha256.New, ikm, nil, []byte(label)), k[:]); err != nil {
		panic("recovery: hkdf: " + err.Error()) // unreachable for L = 32
	}
	return k
}
