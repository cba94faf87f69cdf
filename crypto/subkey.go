package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io"

	"golang.org/x/crypto/hkdf"
)

// HKDF labels (the "info" input of RFC 5869 §2.3) for sub-keys of the DEK.
// Each purpose has its own label, so a key for one purpose is useless for
// another. Labels are part of the storage format: never change one.
const (
	// LabelSecrets derives the key that seals the vault file body.
	LabelSecrets = "ocmt/v1/secrets"
	// LabelTranscripts derives the key that seals transcript records
	// ([TranscriptKey]).
	LabelTranscripts = "ocmt/v1/transcripts"
	// LabelIdentity derives the key that seals the identity keys when they
	// are stored outside the vault body.
	LabelIdentity = "ocmt/v1/identity"
	// LabelCapabilities derives the key that seals capability records
	// (SPEC §5.1 "received/issued capability records").
	LabelCapabilities = "ocmt/v1/capabilities"
)

var errEmptyLabel = errors.New("crypto: empty HKDF label")

// DeriveSubKey derives a 32-byte purpose key from dek with HKDF-SHA256
// (RFC 5869): IKM = dek, salt = none (RFC 5869 §2.2: a string of HashLen
// zeros), info = label, L = 32, via golang.org/x/crypto/hkdf. Use one of
// the Label constants; an empty label is an error. The DEK is uniformly
// random, so the unsalted extract step is sound (RFC 5869 §3.1).
func DeriveSubKey(dek *DEK, label string) (SubKey, error) {
	var k SubKey
	if label == "" {
		return k, errEmptyLabel
	}
	if _, err := io.ReadFull(hkdf.New(sha256.New, dek[:], nil, []byte(label)), k[:]); err != nil {
		return SubKey{}, err // unreachable for L = 32
	}
	return k, nil
}

// TranscriptKey returns DeriveSubKey(dek, LabelTranscripts), the key for
// [SealRecord] and [OpenRecord].
func TranscriptKey(dek *DEK) (SubKey, error) { return DeriveSubKey(dek, LabelTranscripts) }

// UnlockProof returns HMAC-SHA256(key = kek, msg = challenge), the "proof"
// of the unlock request (SPEC §5.1, §11 POST /unlock). The browser computes
// the same value with WebCrypto from the key it derived.
func UnlockProof(kek *KEK, challenge []byte) []byte {
	m := hmac.New(sha256.New, kek[:])
	m.Write(challenge)
	return m.Sum(nil)
}

// VerifyUnlockProof reports, in constant time, whether proof equals
// [UnlockProof](kek, challenge).
func VerifyUnlockProof(kek *KEK, challenge, proof []byte) bool {
	return hmac.Equal(UnlockProof(kek, challenge), proof)
}
