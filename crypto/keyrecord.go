package crypto

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"
)

// keyRecordContext is prepended to the record JSON before signing, so a key
// record signature can never be obtained by asking the identity to sign
// something else (a relay nonce, a capability token) that happens to look
// like a record, and vice versa.
const keyRecordContext = "ocmt/v1/keyrecord\x00"

// MaxKeyRecordSize bounds the decoded record JSON accepted by
// [VerifyKeyRecord] (bytes).
const MaxKeyRecordSize = 4096

// ErrKeyRecord is wrapped by every error from [VerifyKeyRecord] and
// [Identity.SignKeyRecord] about the record's content or signature.
var ErrKeyRecord = errors.New("crypto: invalid key record")

// KeyRecord is the directory entry publishing a vault's public keys to the
// management role (SPEC §5.1 "Identity"). JSON form (this field order is the
// signed encoding):
//
//	{"ed25519":"ed25519:<b64url>","x25519":"x25519:<b64url>","subject":"<user id>","iat":1700000000}
type KeyRecord struct {
	// Ed25519 is the signing public key in text form; it also verifies the
	// record's own signature.
	Ed25519 string `json:"ed25519"`
	// X25519 is the key-agreement public key in text form.
	X25519 string `json:"x25519"`
	// Subject is the user id the keys belong to. The signature proves only
	// possession of the Ed25519 key: the verifier must check that Subject
	// is the authenticated user publishing the record.
	Subject string `json:"subject"`
	// IssuedAt is the signing time in unix seconds.
	IssuedAt int64 `json:"iat"`
}

// SignedKeyRecord is a [KeyRecord] as transmitted:
//
//	{"record":"<base64url(record JSON)>","sig":"<base64url(signature)>"}
//
// base64url is RFC 4648 §5 without padding. The signature is Ed25519
// (RFC 8032) by the record's own ed25519 key over
//
//	"ocmt/v1/keyrecord" ‖ 0x00 ‖ record JSON bytes
//
// and is checked against the transmitted bytes, never a re-serialisation.
type SignedKeyRecord struct {
	Record string `json:"record"`
	Sig    string `json:"sig"`
}

// SignKeyRecord signs r with id's Ed25519 key. Empty Ed25519 and X25519
// fields are filled with id's public keys and a zero IssuedAt with the
// current time; non-empty key fields must equal id's keys. Subject must be
// non-empty.
func (id *Identity) SignKeyRecord(r KeyRecord) (SignedKeyRecord, error) {
	pub := id.Public()
	if r.Ed25519 == "" {
		r.Ed25519 = pub.Ed25519Text()
	}
	if r.X25519 == "" {
		r.X25519 = pub.X25519Text()
	}
	if r.IssuedAt == 0 {
		r.IssuedAt = time.Now().Unix()
	}
	if r.Ed25519 != pub.Ed25519Text() || r.X25519 != pub.X25519Text() {
		return SignedKeyRecord{}, keyRecordError("keys are not this identity's")
	}
	if err := r.check(); err != nil {
		return SignedKeyRecord{}, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return SignedKeyRecord{}, err
	}
	sig := id.Sign(keyRecordMessage(body))
	return SignedKeyRecord{
		Record: base64.RawURLEncoding.EncodeToString(body),
		Sig:    base64.RawURLEncoding.EncodeToString(sig),
	}, nil
}

// VerifyKeyRecord decodes s, parses the record from the transmitted bytes
// (strictly: unknown fields and trailing data are errors) and checks the
// signature with the record's own ed25519 key. It returns the record only
// if everything holds; errors wrap [ErrKeyRecord]. The caller must still
// check that Subject is the user who published the record.
func VerifyKeyRecord(s SignedKeyRecord) (KeyRecord, error) {
	if base64.RawURLEncoding.DecodedLen(len(s.Record)) > MaxKeyRecordSize {
		return KeyRecord{}, keyRecordError("too large")
	}
	if len(s.Sig) != base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize) {
		return KeyRecord{}, keyRecordError("sig is not a base64url signature")
	}
	body, err := base64.RawURLEncoding.Strict().DecodeString(s.Record)
	if err != nil {
		return KeyRecord{}, keyRecordError("record is not base64url")
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(s.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return KeyRecord{}, keyRecordError("sig is not a base64url signature")
	}
	var r KeyRecord
	if err := decodeStrict(body, &r); err != nil {
		return KeyRecord{}, keyRecordError("record is not valid JSON")
	}
	if err := r.check(); err != nil {
		return KeyRecord{}, err
	}
	pub, _ := ParseEd25519(r.Ed25519) // checked by r.check
	if !Verify(pub, keyRecordMessage(body), sig) {
		return KeyRecord{}, keyRecordError("bad signature")
	}
	return r, nil
}

// check validates the fields of r.
func (r *KeyRecord) check() error {
	if _, err := ParseEd25519(r.Ed25519); err != nil {
		return keyRecordError("bad ed25519 key")
	}
	if _, err := ParseX25519(r.X25519); err != nil {
		return keyRecordError("bad x25519 key")
	}
	if r.Subject == "" {
		return keyRecordError("empty subject")
	}
	if r.IssuedAt <= 0 {
		return keyRecordError("bad iat")
	}
	return nil
}

func keyRecordMessage(body []byte) []byte {
	m := make([]byte, 0, len(keyRecordContext)+len(body))
	return append(append(m, keyRecordContext...), body...)
}

func keyRecordError(msg string) error { return &wrapErr{sentinel: ErrKeyRecord, msg: msg} }

// wrapErr is a small fmt-free error that wraps a sentinel.
type wrapErr struct {
	sentinel error
	msg      string
	cause    error // or nil; also matched by errors.Is
}

func (e *wrapErr) Error() string { return e.sentinel.Error() + ": " + e.msg }
func (e *wrapErr) Unwrap() []error {
	if e.cause == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.cause}
}

// decodeStrict unmarshals exactly one JSON value from b into v, rejecting
// unknown fields and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	for _, c := range b[dec.InputOffset():] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return errors.New("trailing data")
		}
	}
	return nil
}
