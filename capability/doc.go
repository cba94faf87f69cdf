// Package capability implements the Ed25519-signed capability tokens and
// signed revocations of SPEC §7.1: the vault issues a token granting another
// user's identity a scoped, time-limited use of one of its resources, later
// executes requests carrying it, and revokes it through the relay (§7.2).
//
// # Token
//
// A token is ASCII text of at most [MaxTokenSize] bytes:
//
//	ocap1.<base64url(claims JSON)>.<base64url(signature)>
//
// base64url is RFC 4648 §5 without padding. The signature is pure Ed25519
// (RFC 8032 §5.1.6) by the issuer's identity key over the ASCII bytes
// "ocap1.<base64url(claims JSON)>" exactly as transmitted; no further
// domain prefix is added because SPEC §7.1 fixes the signed bytes. The
// "ocap1." prefix itself keeps tokens apart from the project's
// domain-prefixed signed messages ("ocmt/v1/…" ‖ 0x00: key records,
// revocations); any other message an identity key signs must not begin
// with "ocap1.". Verification always uses the transmitted bytes and never
// a re-serialisation.
//
// The claims JSON is one object; [Issue] writes the fields in this order:
//
//	{"v":1,
//	 "jti":"<base64url, 16 random bytes>",
//	 "iss":"ed25519:<base64url>",      issuer: the granting vault's identity
//	 "sub":"ed25519:<base64url>",      subject: the grantee's identity
//	 "aud":"<issuer's container id>",
//	 "res":"<resource name>",
//	 "scope":["read","list"],          subset of read list write delete admin share
//	 "iat":1700000000,"nbf":1700000000,"exp":1700604800,   unix seconds
//	 "max_calls":100,                  optional, ≥ 1
//	 "rate":"60/h",                    optional, N/s|m|h|d (see [ParseRate])
//	 "tier":"live"}                    "live" or "cached"
//
// [Parse] is strict: the prefix, exactly two dots, only base64url
// characters, no padding, a 64-byte signature, and a claims object whose
// keys are exactly the names above (case-sensitive, unescaped, no
// duplicates, no unknown keys) with every non-optional field present and
// valid. Parse does not verify the signature; [Parsed.Authorize] does, then
// runs the SPEC §7.1 execution checks in a fixed order, each failing with
// its own [Error] (see the Err* variables and [Code]).
//
// # Revocation
//
// A revocation {jti, issuer, ts, reason} is transmitted as
//
//	{"revocation":"<base64url(revocation JSON)>","sig":"<base64url(signature)>"}
//
// with an Ed25519 signature by the issuer over
// "ocmt/v1/revocation" ‖ 0x00 ‖ revocation JSON bytes. [VerifyRevocation]
// accepts it only if signed by the capability's issuer and fresh (±5 min).
//
// # Bookkeeping
//
// max_calls and rate are enforced through a [Counter]; [Limiter] is an
// in-memory one (per jti, concurrency-safe). Revocation lookups are the
// caller's ([Check.Revoked]).
package capability
