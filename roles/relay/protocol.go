package relay

import (
	"encoding/base64"

	"github.com/ocmt/ocmt/capability"
)

// Signature domains (each ends in 0x00; see the package documentation).
const (
	// AuthContext prefixes the signed authentication message.
	AuthContext = "ocmt/v1/relay-auth\x00"
	// SnapshotContext prefixes the signed cached-tier snapshot message.
	SnapshotContext = "ocmt/v1/relay-snapshot\x00"
)

// Sizes in bytes.
const (
	// NonceSize is the length of the authentication challenge nonce.
	NonceSize = 32
	// IDSize is the length of an envelope id (and of a capability jti).
	IDSize = 16
	// maxUserIDSize bounds user ids in frames.
	maxUserIDSize = 128
	// maxTypeSize bounds header.type.
	maxTypeSize = 64
)

// Frame types (the "type" field).
const (
	FrameChallenge       = "challenge"
	FrameAuth            = "auth"
	FrameReady           = "ready"
	FrameSend            = "send"
	FrameAccepted        = "accepted"
	FrameDeliver         = "deliver"
	FrameAck             = "ack"
	FrameAcked           = "acked"
	FrameRevoke          = "revoke"
	FrameRevoked         = "revoked"
	FrameSnapshotPut     = "snapshot.put"
	FrameSnapshotStored  = "snapshot.stored"
	FrameSnapshotGet     = "snapshot.get"
	FrameSnapshot        = "snapshot"
	FrameSnapshotDelete  = "snapshot.delete"
	FrameSnapshotDeleted = "snapshot.deleted"
	FrameError           = "error"
)

// Error codes of error frames (see the package documentation).
const (
	CodeAuthFailed          = "auth_failed"
	CodeBadFrame            = "bad_frame"
	CodeBadEnvelope         = "bad_envelope"
	CodeNotSender           = "not_sender"
	CodeTooLarge            = "too_large"
	CodeBadTimestamp        = "bad_timestamp"
	CodeRateLimited         = "rate_limited"
	CodeCapabilityRevoked   = "capability_revoked"
	CodeCapabilityExpired   = "capability_expired"
	CodeUnknownRecipient    = "unknown_recipient"
	CodeDuplicateID         = "duplicate_id"
	CodeNotFound            = "not_found"
	CodeNotIssuer           = "not_issuer"
	CodeSnapshotSignature   = "snapshot_signature"
	CodeRevocationMalformed = "revocation_malformed"
	CodeRevocationSignature = "revocation_signature"
	CodeRevocationStale     = "revocation_stale"
	CodeRevocationFuture    = "revocation_future"
	CodeInternal            = "internal"
)

// Header is an envelope's relay-readable header (SPEC §7.2).
type Header struct {
	// ID is base64url (no padding) of 16 random bytes, 22 characters.
	ID string `json:"id"`
	// From is the sender's user id; it must be the authenticated user.
	From string `json:"from"`
	// To is the recipient's user id.
	To string `json:"to"`
	// TS is the sender's time, unix milliseconds, within ±MaxClockSkew of
	// the relay's clock.
	TS int64 `json:"ts"`
	// Type is the kind of message, 1..64 bytes of [a-z0-9._-].
	Type string `json:"type"`
	// JTI is the capability id the envelope carries (base64url of 16
	// bytes), or "".
	JTI string `json:"jti,omitempty"`
}

// Envelope is what containers exchange through the relay (SPEC §7.2).
type Envelope struct {
	Header Header `json:"header"`
	// Payload is the NaCl box (crypto.Identity.SealBox output); standard
	// padded base64 on the wire.
	Payload []byte `json:"payload"`
}

// Frame is one WebSocket text frame in either direction: a JSON object
// whose "type" says which other fields are set (see the package
// documentation). Unset fields are omitted.
//
// These wire types belong in package api once the vault role speaks the
// protocol (roles do not import each other).
type Frame struct {
	Type string `json:"type"`
	// Nonce is the challenge (b64url of NonceSize bytes).
	Nonce string `json:"nonce,omitempty"`
	// TS is unix milliseconds (challenge time, snapshot put time).
	TS int64 `json:"ts,omitempty"`
	// User is the user id claimed by auth.
	User string `json:"user,omitempty"`
	// Sig is a b64url Ed25519 signature (auth, snapshot).
	Sig string `json:"sig,omitempty"`
	// Envelope is set on send and deliver.
	Envelope *Envelope `json:"envelope,omitempty"`
	// ID is an envelope id (accepted, ack, acked, errors about one).
	ID string `json:"id,omitempty"`
	// JTI is a capability id (revoked, snapshot.*).
	JTI string `json:"jti,omitempty"`
	// Revocation is the signed revocation of a revoke frame.
	Revocation *capability.Revocation `json:"revocation,omitempty"`
	// Issuer is an Ed25519 key text "ed25519:<b64url>" (revoke, snapshot).
	Issuer string `json:"issuer,omitempty"`
	// Token is the cached capability of a snapshot.put.
	Token string `json:"token,omitempty"`
	// Blob is a snapshot's ciphertext (standard padded base64).
	Blob []byte `json:"blob,omitempty"`
	// Code and Message describe an error frame; Message is for people.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// RetryAfterMs is set on rate_limited: milliseconds until a send can
	// succeed.
	RetryAfterMs int64 `json:"retryAfterMs,omitempty"`
}

// AuthMessage returns the bytes a client signs to authenticate:
// AuthContext ‖ nonce ‖ user.
func AuthMessage(nonce []byte, user string) []byte {
	m := make([]byte, 0, len(AuthContext)+len(nonce)+len(user))
	return append(append(append(m, AuthContext...), nonce...), user...)
}

// SnapshotMessage returns the bytes an issuer signs for a cached-tier
// snapshot: SnapshotContext ‖ jti (16 bytes) ‖ blob.
func SnapshotMessage(jti capability.JTI, blob []byte) []byte {
	m := make([]byte, 0, len(SnapshotContext)+len(jti)+len(blob))
	return append(append(append(m, SnapshotContext...), jti[:]...), blob...)
}

// validID reports whether s is the 22-character base64url form of 16 bytes.
func validID(s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(IDSize) {
		return false
	}
	var b [IDSize]byte
	_, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s))
	return err == nil
}

// validUserID accepts 1..128 bytes of [A-Za-z0-9_.:-].
func validUserID(s string) bool {
	if len(s) == 0 || len(s) > maxUserIDSize {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// validType accepts 1..64 bytes of [a-z0-9._-].
func validType(s string) bool {
	if len(s) == 0 || len(s) > maxTypeSize {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
