// Package relay is the relay role (SPEC §2, §7.2): the store-and-forward
// service that moves end-to-end encrypted envelopes between user
// containers. It is untrusted for content: it sees headers (who → whom,
// when, size, type, capability id) and never a payload's plaintext; it
// keeps the sealed payloads it queues as given and logs metadata only. It
// also rate-limits senders, keeps the capability revocation blocklist
// (SPEC §7.1) behind a Bloom filter, asks the agent role to wake
// hibernated recipients, and holds cached-tier snapshots.
//
// # Transport
//
// [Server.Routes] mounts, conventionally under /relay/v1:
//
//	GET /healthz   {"status":"ok"}
//	GET /connect   WebSocket (RFC 6455), one JSON object per text frame
//
// Binary frames, frames that are not one JSON object of the shapes below,
// and unknown "type"s are answered with an error frame (code "bad_frame");
// the connection stays open. A frame larger than the read limit
// (4 KiB before authentication, then 4/3·MaxPayloadBytes + 16 KiB)
// closes the connection with 1009 (message too big). Byte strings are
// base64url without padding (RFC 4648 §5, "b64url") unless marked "b64"
// (standard base64 with padding, RFC 4648 §4). Times are unix
// milliseconds unless stated.
//
// # Authentication
//
//	relay → {"type":"challenge","nonce":"<b64url, 32 random bytes>","ts":<unix ms>}
//	client → {"type":"auth","user":"<user id>","sig":"<b64url Ed25519 signature>"}
//	relay → {"type":"ready"}
//
// sig is an Ed25519 signature (RFC 8032) by the user's identity key, as
// registered in the public-key directory ([Directory]), over
//
//	"ocmt/v1/relay-auth" ‖ 0x00 ‖ nonce (32 bytes) ‖ user id (UTF-8)
//
// The client has [AuthTimeout] to answer. Any failure (unknown user,
// wrong key, signature over another nonce, a frame other than auth) is
// answered {"type":"error","code":"auth_failed","message":…} and the
// connection is closed with 1008 (policy violation). After "ready" the
// relay delivers every queued envelope for the user, oldest first.
//
// One connection per user: a newer authenticated connection replaces the
// older, which is closed with 4000 "replaced".
//
// # Envelopes
//
//	client → {"type":"send","envelope":{"header":{"id":"<b64url, 16 random bytes>",
//	          "from":"<user id>","to":"<user id>","ts":<unix ms>,"type":"<kind>","jti":"<b64url>"},
//	          "payload":"<b64 NaCl box>"}}
//	relay → {"type":"accepted","id":"<envelope id>"}
//	relay → (to the recipient) {"type":"deliver","envelope":{…as sent…}}
//	client → {"type":"ack","id":"<envelope id>"}
//	relay → {"type":"acked","id":"<envelope id>"}
//
// jti is optional (the capability the envelope carries). type is 1..64
// bytes of [a-z0-9._-]. The payload is crypto.Identity.SealBox output
// (sender X25519 → recipient X25519), 1..MaxPayloadBytes bytes decoded;
// the relay cannot read it. A send is refused with an error frame carrying
// the envelope "id" (when well formed) and one of the codes:
//
//	bad_envelope        missing or malformed header field or payload
//	not_sender          header.from is not the authenticated user
//	too_large           payload over MaxPayloadBytes
//	bad_timestamp       header.ts more than 5 minutes from the relay's clock
//	rate_limited        over RatePerHour for this sender; carries "retryAfterMs"
//	capability_revoked  header.jti has been revoked by header.from or
//	                    header.to; the frame also carries "jti", "issuer"
//	                    (the signer's key) and "revocation" (the stored
//	                    signed revocation), which the refused sender can
//	                    verify with the issuer key of its own token
//	recipient_unavailable  a call (api.RelayTypeCall) to a recipient that
//	                    was woken within WakeCooldown and did not connect
//	unknown_recipient   header.to is not in the directory
//	duplicate_id        an envelope with this id is already queued
//	internal            the relay could not store it (try again)
//
// An accepted envelope is in the relay's database before "accepted" is
// sent. It is then pushed to the recipient if connected; otherwise the
// relay asks the [Waker] to wake the recipient (asynchronously, at most
// once per [WakeCooldown] per recipient). It stays queued until the
// recipient acknowledges it, for at most EnvelopeTTL; at most
// MaxQueuedPerRecipient are kept per recipient (the oldest are dropped,
// with a metadata log line). Calls are the exception: a recipient that is
// still not connected ConnectGrace after its wake (its vault is locked, so
// it cannot authenticate) has its queued calls dropped, and each of their
// connected senders gets {"type":"error","code":"recipient_unavailable",
// "id":<envelope id>}, so a caller learns at once rather than after its
// own timeout. Un-acknowledged envelopes are delivered again
// on the next connection. Delivery is at least once: recipients
// deduplicate by id. Only the recipient may ack; acking an id that is not
// queued for the user answers {"type":"error","code":"not_found","id":…}.
//
// # Revocation
//
//	client → {"type":"revoke","issuer":"ed25519:<b64url>",
//	          "revocation":{"revocation":"<b64url JSON>","sig":"<b64url>"}}
//	relay → {"type":"revoked","jti":"<b64url>"}
//
// revocation is a [capability.Revocation] (SPEC §7.1). The relay accepts it
// only if issuer is the authenticated user's directory key, the revocation
// names that issuer and is signed by it, and its ts is within ±5 minutes.
//
// A jti is 16 bytes its issuer picked; nothing stops another user from
// picking the same ones, so the relay cannot tell from a jti alone who
// issued it. Revocations are therefore scoped to the user who signed
// them: a revocation by U stops only envelopes carrying the jti that U
// sends or receives (capability traffic is always between issuer and
// subject), and U's own cached snapshot of it. A stranger's revocation
// harms nobody else, and being first with a jti gains nothing. To answer
// a stranger clearly, the relay also records who it has seen on the
// issuer side of a jti (the sender of a capability.grant, the recipient
// of a capability.call; kept 366 days after the last sighting) and
// refuses the revocation of a recorded jti by any other user with
// not_issuer. A jti it never saw (revoked before its grant went out, or
// granted before these records existed) is accepted, scoped as above.
//
// Error codes: rate_limited (over RevocationsPerHour for this user;
// carries retryAfterMs), revocation_malformed, revocation_signature
// (issuer is not the user's key, or bad signature), revocation_stale,
// revocation_future, not_issuer (carries "jti"). A revocation is stored in
// the database and the Bloom filter; from then on envelopes carrying its
// jti to or from its signer are refused with capability_revoked. Revoking
// twice is answered "revoked" again and changes nothing.
//
// # Cached tier
//
//	issuer → {"type":"snapshot.put","jti":"<b64url>","token":"ocap1.…","blob":"<b64>","sig":"<b64url>"}
//	relay → {"type":"snapshot.stored","jti":…}
//	issuer → {"type":"snapshot.delete","jti":…}
//	relay → {"type":"snapshot.deleted","jti":…}
//	subject → {"type":"snapshot.get","jti":…,"issuer":"ed25519:…"?}
//	relay → {"type":"snapshot","jti":…,"issuer":"ed25519:…","blob":"<b64>","sig":"<b64url>","ts":<unix ms of the put>}
//
// token is the `cached` capability itself: the relay checks its signature,
// that its iss is the authenticated user's key, that tier is "cached", that
// it has not expired and is not revoked. blob is the issuer's ciphertext
// for the subject (1..MaxPayloadBytes bytes) and sig the issuer's Ed25519
// signature over "ocmt/v1/relay-snapshot" ‖ 0x00 ‖ jti (16 bytes) ‖ blob,
// which the subject can check itself. A snapshot's slot is (jti, issuer
// key): only the token's issuer may put, replace or delete it, and
// another user who picks the same jti gets a separate slot. Only its
// subject (the user whose directory key is the token's sub) may get it,
// the newest for that jti unless "issuer" picks one; anyone else gets
// not_found. It expires with the token and is deleted by its issuer's
// revocation.
// Errors: bad_frame, not_issuer, too_large, capability_revoked,
// capability_expired, snapshot_signature, not_found.
package relay
