package capability

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/ocmt/ocmt/crypto"
)

// revocationContext is prepended to the revocation JSON before signing
// (domain separation: a revocation signature is never a valid signature
// of a token, key record or relay message, and vice versa).
const revocationContext = "ocmt/v1/revocation\x00"

// DefaultRevocationSkew is the freshness window of [VerifyRevocation]
// when maxSkew is 0 (SPEC §7.1: ±5 min).
const DefaultRevocationSkew = 5 * time.Minute

// Size limits of revocations (bytes).
const (
	// MaxReasonSize bounds the UTF-8 reason.
	MaxReasonSize = 256
	// maxRevocationJSON bounds the decoded revocation JSON.
	maxRevocationJSON = 1024
)

// RevocationClaims is the content of a revocation (SPEC §7.1). JSON form,
// in this order (the signed encoding):
//
//	{"jti":"<base64url>","issuer":"ed25519:<base64url>","ts":1700000000,"reason":"…"}
//
// ts is unix seconds.
type RevocationClaims struct {
	// JTI is the revoked token's id.
	JTI JTI
	// Issuer is the Ed25519 key of the token's issuer, who signs this.
	Issuer ed25519.PublicKey
	// Time is when the revocation was made ("ts"), whole seconds.
	Time time.Time
	// Reason is a free text of at most MaxReasonSize bytes, or "".
	Reason string
}

type revocationJSON struct {
	JTI    string `json:"jti"`
	Issuer string `json:"issuer"`
	TS     int64  `json:"ts"`
	Reason string `json:"reason"`
}

var revocationKeys = []string{"jti", "issuer", "ts", "reason"}

// Revocation is a signed revocation as transmitted to the relay:
//
//	{"revocation":"<base64url(revocation JSON)>","sig":"<base64url(signature)>"}
//
// base64url is RFC 4648 §5 without padding; the signature is Ed25519
// (RFC 8032) by the issuer over "ocmt/v1/revocation" ‖ 0x00 ‖ revocation
// JSON bytes, checked against the transmitted bytes.
type Revocation struct {
	Revocation string `json:"revocation"`
	Sig        string `json:"sig"`
}

// SignRevocation returns the revocation of the token jti issued by id,
// dated ts (truncated to seconds). Errors wrap [ErrRevocationMalformed]
// (zero jti, reason too long or not UTF-8, ts out of range).
func SignRevocation(id *crypto.Identity, jti JTI, reason string, ts time.Time) (Revocation, error) {
	if jti.IsZero() {
		return Revocation{}, ErrRevocationMalformed.with("zero jti")
	}
	if len(reason) > MaxReasonSize || !utf8.ValidString(reason) {
		return Revocation{}, ErrRevocationMalformed.with("bad reason")
	}
	if u := ts.Unix(); u <= 0 || u > maxUnix {
		return Revocation{}, ErrRevocationMalformed.with("ts out of range")
	}
	body, err := json.Marshal(revocationJSON{
		JTI:    jti.String(),
		Issuer: crypto.FormatEd25519(signPublic(id)),
		TS:     ts.Unix(),
		Reason: reason,
	})
	if err != nil {
		return Revocation{}, err
	}
	return Revocation{
		Revocation: base64.RawURLEncoding.EncodeToString(body),
		Sig:        base64.RawURLEncoding.EncodeToString(id.Sign(revocationMessage(body))),
	}, nil
}

// VerifyRevocation accepts r only if it is well formed, signed by
// tokenIssuer (the revoked capability's issuer, known to the caller) with
// a matching issuer field, and fresh: now − maxSkew ≤ ts ≤ now + maxSkew.
// maxSkew ≤ 0 means [DefaultRevocationSkew]. Errors, in check order:
// [ErrRevocationMalformed], [ErrRevocationSignature],
// [ErrRevocationStale], [ErrRevocationFuture].
func VerifyRevocation(r Revocation, tokenIssuer ed25519.PublicKey, now time.Time, maxSkew time.Duration) (RevocationClaims, error) {
	c, err := VerifyStoredRevocation(r, tokenIssuer)
	if err != nil {
		return c, err
	}
	if maxSkew <= 0 {
		maxSkew = DefaultRevocationSkew
	}
	if c.Time.Before(now.Add(-maxSkew)) {
		return RevocationClaims{}, ErrRevocationStale
	}
	if c.Time.After(now.Add(maxSkew)) {
		return RevocationClaims{}, ErrRevocationFuture
	}
	return c, nil
}

// VerifyStoredRevocation is [VerifyRevocation] without the freshness
// check, for a revocation accepted earlier and shown again (the relay
// hands its stored copy to a refused caller, whose vault checks it with
// the issuer key of the token it holds; a revocation stays true however
// old it is). The caller must also check that the returned JTI is the
// capability it asked about. Errors: [ErrRevocationMalformed],
// [ErrRevocationSignature].
func VerifyStoredRevocation(r Revocation, tokenIssuer ed25519.PublicKey) (RevocationClaims, error) {
	bad := func(detail string) (RevocationClaims, error) {
		return RevocationClaims{}, ErrRevocationMalformed.with(detail)
	}
	if base64.RawURLEncoding.DecodedLen(len(r.Revocation)) > maxRevocationJSON {
		return bad("too large")
	}
	if len(r.Sig) != sigB64Len || !isB64URL(r.Sig) || !isB64URL(r.Revocation) {
		return bad("not base64url")
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(r.Sig)
	if err != nil {
		return bad("sig not base64url")
	}
	body, err := base64.RawURLEncoding.Strict().DecodeString(r.Revocation)
	if err != nil {
		return bad("revocation not base64url")
	}
	var w revocationJSON
	if err := json.Unmarshal(body, &w); err != nil {
		return bad("not valid JSON")
	}
	if mask, ok := scanKeys(body, revocationKeys); !ok || mask != 1<<len(revocationKeys)-1 {
		return bad("unknown, duplicate, escaped or missing field")
	}
	var c RevocationClaims
	if c.JTI, err = ParseJTI(w.JTI); err != nil || c.JTI.IsZero() {
		return bad("bad jti")
	}
	if c.Issuer, err = crypto.ParseEd25519(w.Issuer); err != nil {
		return bad("bad issuer")
	}
	if w.TS <= 0 || w.TS > maxUnix {
		return bad("ts out of range")
	}
	if len(w.Reason) > MaxReasonSize {
		return bad("reason too long")
	}
	c.Time, c.Reason = time.Unix(w.TS, 0), w.Reason
	if len(tokenIssuer) != ed25519.PublicKeySize || !tokenIssuer.Equal(c.Issuer) {
		return RevocationClaims{}, ErrRevocationSignature.with("issuer is not the capability's issuer")
	}
	if !crypto.Verify(tokenIssuer, revocationMessage(body), sig) {
		return RevocationClaims{}, ErrRevocationSignature
	}
	return c, nil
}

func revocationMessage(body []byte) []byte {
	m := make([]byte, 0, len(revocationContext)+len(body))
	return append(append(m, revocationContext...), body...)
}
