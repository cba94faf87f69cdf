package api

import "github.com/ocmt/ocmt/capability"

// Relay wire types (SPEC §7.2). The relay role documents the protocol in
// its package documentation; the vault role speaks it as a client. Both use
// these types so that neither role imports the other.

// RelayAuthContext prefixes the signed relay authentication message.
const RelayAuthContext = "ocmt/v1/relay-auth\x00"

// Relay frame types (the "type" field of a [RelayFrame]).
const (
	RelayFrameChallenge = "challenge"
	RelayFrameAuth      = "auth"
	RelayFrameReady     = "ready"
	RelayFrameSend      = "send"
	RelayFrameAccepted  = "accepted"
	RelayFrameDeliver   = "deliver"
	RelayFrameAck       = "ack"
	RelayFrameAcked     = "acked"
	RelayFrameRevoke    = "revoke"
	RelayFrameRevoked   = "revoked"
	RelayFrameError     = "error"
)

// Envelope types (RelayHeader.Type) that the relay treats specially.
const (
	// RelayTypeCall is a capability call: its sender waits (about 30 s)
	// for the answer. When the recipient stays offline after the relay
	// woke it, the relay drops such envelopes and tells the sender
	// (error frame recipient_unavailable) instead of keeping them.
	// The relay also records its recipient as the issuer of header.jti
	// (only a capability's issuer receives calls with it).
	RelayTypeCall = "capability.call"
	// RelayTypeGrant carries a new capability from its issuer: the relay
	// records the sender as the issuer of header.jti, so that another
	// user's revocation of that jti is refused (not_issuer).
	RelayTypeGrant = "capability.grant"
)

// RelayHeader is an envelope's relay-readable header (SPEC §7.2). The
// relay can read and rewrite it, so vaults also seal an exact copy of it in
// the payload (JSON field "header") and drop an envelope whose header
// differs from that copy (roles/vault, envelope_binding.go).
type RelayHeader struct {
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

// RelayEnvelope is what containers exchange through the relay (SPEC §7.2).
type RelayEnvelope struct {
	Header RelayHeader `json:"header"`
	// Payload is the NaCl box (crypto.Identity.SealBox output); standard
	// padded base64 on the wire.
	Payload []byte `json:"payload"`
}

// RelayFrame is one WebSocket text frame in either direction: a JSON
// object whose "type" says which other fields are set (see the relay
// role's package documentation). Unset fields are omitted.
type RelayFrame struct {
	Type string `json:"type"`
	// Nonce is the challenge (b64url of 32 bytes).
	Nonce string `json:"nonce,omitempty"`
	// TS is unix milliseconds (challenge time, snapshot put time).
	TS int64 `json:"ts,omitempty"`
	// User is the user id claimed by auth.
	User string `json:"user,omitempty"`
	// Sig is a b64url Ed25519 signature (auth, snapshot).
	Sig string `json:"sig,omitempty"`
	// Envelope is set on send and deliver.
	Envelope *RelayEnvelope `json:"envelope,omitempty"`
	// ID is an envelope id (accepted, ack, acked, errors about one).
	ID string `json:"id,omitempty"`
	// JTI is a capability id (revoked, snapshot.*).
	JTI string `json:"jti,omitempty"`
	// Revocation is the signed revocation of a revoke frame, or the
	// stored one on a capability_revoked error (which the refused caller
	// can verify with the issuer key of its token).
	Revocation *capability.Revocation `json:"revocation,omitempty"`
	// Issuer is an Ed25519 key text "ed25519:<b64url>" (revoke,
	// snapshot, snapshot.get's optional choice of issuer,
	// capability_revoked errors).
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

// RelayAuthMessage returns the bytes a relay client signs to authenticate:
// RelayAuthContext ‖ nonce ‖ user.
func RelayAuthMessage(nonce []byte, user string) []byte {
	m := make([]byte, 0, len(RelayAuthContext)+len(nonce)+len(user))
	return append(append(append(m, RelayAuthContext...), nonce...), user...)
}
