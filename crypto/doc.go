// Package crypto is the vault's cryptography (SPEC §5.1–5.3): typed keys,
// password key derivation, sealing, key wrapping, sub-keys, the identity
// key pair, the vault file format, atomic file writes and transcript
// records. It only composes vetted implementations (golang.org/x/crypto
// argon2, chacha20poly1305, hkdf, curve25519, nacl/box and the standard
// library's ed25519, hmac, sha256 and crypto/rand); it implements no
// primitive itself.
//
// # Keys
//
//	password ──Argon2id(salt, m, t, p)──▶ KEK   (in the browser, RFC 9106)
//	KEK ──wraps──▶ DEK (random, 256 bits; also wrapped by recovery/device keys)
//	DEK ──HKDF-SHA256(label)──▶ SubKey    (RFC 5869)
//	    LabelSecrets     "ocmt/v1/secrets"      seals the vault body
//	    LabelTranscripts "ocmt/v1/transcripts"  seals transcript records
//	    LabelIdentity    "ocmt/v1/identity"     reserved for identity keys
//
// [KEK], [DEK] and [SubKey] are distinct 32-byte array types: String
// redacts, Equal compares in constant time, Zero wipes, and text/JSON
// marshalling fails. Sealing is XChaCha20-Poly1305
// (draft-irtf-cfrg-xchacha-03) with a random 24-byte nonce: [Seal] returns
// nonce ‖ ciphertext ‖ tag; [Open] returns [ErrDecrypt] for every failure.
// Signatures are Ed25519 (RFC 8032).
//
// The browser runs [DeriveKEK] compiled to WebAssembly (crypto/wasm, served
// from ui/static/wasm), so both sides share one implementation (SPEC §9).
//
// # Vault file format
//
// A vault file (version 1) is, byte by byte:
//
//	offset      size  field
//	0           8     magic "OCMTVLT1" (ASCII)
//	8           4     H = header length, uint32 big-endian, 1 ≤ H ≤ 65536
//	12          H     header: UTF-8 JSON object, see below
//	12+H        4     B = sealed body length, uint32 big-endian,
//	                  40 ≤ B ≤ 16 MiB + 40
//	16+H        B     sealed body: nonce (24) ‖ ciphertext (B−40) ‖ tag (16)
//	16+H+B            end of file; trailing bytes are an error
//
// The header, with fields in this order (JSON byte strings are standard
// base64 with padding):
//
//	{"v":1,
//	 "kdf":{"alg":"argon2id","memoryKiB":65536,"iterations":3,"parallelism":4},
//	 "salt":"<base64, 16..64 random bytes (CheckSalt); 16 when created>",
//	 "created":<unix seconds>,
//	 "wraps":[{"kind":"password","wrapped":"<base64, 72 bytes>"},
//	          {"kind":"device","id":"<id>","wrapped":"…"}, …]}
//
// Every wrap is [WrapDEK]'s output, nonce (24) ‖ encrypted DEK (32) ‖ tag
// (16). There is exactly one "password" wrap; it is sealed under the KEK with
// associated data "ocmt/v1/wrap/password" ‖ salt (raw salt bytes), so it
// cannot be moved to a vault with another salt. Other kinds ("recovery",
// "device", …) are sealed by their own keys with associated data chosen by
// their owner, conventionally [WrapAD](kind, binding); this package stores
// them and never interprets them.
//
// The body is sealed with XChaCha20-Poly1305 under
// DeriveSubKey(DEK, "ocmt/v1/secrets") with the exact H header bytes as
// associated data, so any change to the header (KDF parameters, salt,
// wraps) makes [VaultFile.OpenBody] fail. The body plaintext is opaque to
// this package (the vault role stores JSON there). Changing the password
// ([VaultFile.Rewrap]) re-wraps the DEK and re-seals the same body under the
// new header. Unknown header fields and any "v" other than 1 are rejected;
// a future format will either bump "v" or the magic.
//
// Write vault files with [WriteFileAtomic] (temp file, fsync, rename,
// directory fsync) and remove crash leftovers with [CleanTempFiles].
//
// # Transcript records
//
// Each record of a chat transcript is sealed separately under
// [TranscriptKey](DEK) with associated data
//
//	"ocmt/v1/transcript" ‖ uint32 BE len(sessionID) ‖ sessionID ‖ uint64 BE index
//
// so records cannot be reordered or moved between sessions ([SealRecord],
// [OpenRecord]). Framing records in a file is the vault role's job.
//
// # Identity
//
// An [Identity] is a random Ed25519 signing key and a random X25519 key;
// its public halves have text forms "ed25519:<base64url>" and
// "x25519:<base64url>" (unpadded). A [KeyRecord] publishes them to the
// management directory, signed by the Ed25519 key over
// "ocmt/v1/keyrecord" ‖ 0x00 ‖ record JSON and transmitted as
// {"record":"<base64url JSON>","sig":"<base64url>"} ([SignedKeyRecord]).
package crypto
