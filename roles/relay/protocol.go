package relay

import (
	"encoding/base64"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/store"
)

// Signature domains (each ends in 0x00; see the package documentation).
const (
	// AuthContext prefixes the signed authentication message.
	AuthContext = api.RelayAuthContext
	// SnapshotContext prefixes the signed cached-tier snapshot message.
	SnapshotContext = "ocmt/v1/relay-snapshot\x00"
)

// Sizes in bytes.
const (
	// NonceSize is the length of the authentication challenge nonce.
	NonceSize = 32
	// IDSize is the length of an envelope id (and of a capability jti).
	IDSize = 16
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
	CodeAuthFailed           = "auth_failed"
	CodeBadFrame             = "bad_frame"
	CodeBadEnvelope          = "bad_envelope"
	CodeNotSender            = "not_sender"
	CodeTooLarge             = "too_large"
	CodeBadTimestamp         = "bad_timestamp"
	CodeRateLimited          = "rate_limited"
	CodeCapabilityRevoked    = "capability_revoked"
	CodeCapabilityExpired    = "capability_expired"
	CodeUnknownRecipient     = "unknown_recipient"
	CodeRecipientUnavailable = "recipient_unavailable"
	CodeDuplicateID          = "duplicate_id"
	CodeNotFound             = "not_found"
	CodeNotIssuer            = "not_issuer"
	CodeSnapshotSignature    = "snapshot_signature"
	CodeRevocationMalformed  = "revocation_malformed"
	CodeRevocationSignature  = "revocation_signature"
	CodeRevocationStale      = "revocation_stale"
	CodeRevocationFuture     = "revocation_future"
	CodeInternal             = "internal"
)

// Wire types live in package api (roles do not import each other); these
// aliases keep the relay's names.
type (
	// Header is an envelope's relay-readable header (SPEC §7.2).
	Header = api.RelayHeader
	// Envelope is what containers exchange through the relay (SPEC §7.2).
	Envelope = api.RelayEnvelope
	// Frame is one WebSocket text frame in either direction.
	Frame = api.RelayFrame
)

// AuthMessage returns the bytes a client signs to authenticate:
// AuthContext ‖ nonce ‖ user.
func AuthMessage(nonce []byte, user string) []byte { return api.RelayAuthMessage(nonce, user) }

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

// validUserID reports whether s has the shape of a user id
// (store.ParseUserID); the relay knows no other.
func validUserID(s string) bool {
	_, err := store.ParseUserID(s)
	return err == nil
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
