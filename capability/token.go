package capability

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/ocmt/ocmt/crypto"
)

// Prefix begins every token (SPEC §7.1). It is part of the signed bytes.
const Prefix = "ocap1."

// MaxTokenSize bounds a token's length in bytes, for [Parse] and [Issue].
const MaxTokenSize = 4096

// sigB64Len is the length of an unpadded base64url Ed25519 signature.
var sigB64Len = base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize)

// claimsJSON is the wire form; its field order is the order [Issue] writes.
type claimsJSON struct {
	V        int      `json:"v"`
	JTI      string   `json:"jti"`
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      string   `json:"aud"`
	Res      string   `json:"res"`
	Scope    []string `json:"scope"`
	Iat      int64    `json:"iat"`
	Nbf      int64    `json:"nbf"`
	Exp      int64    `json:"exp"`
	MaxCalls int64    `json:"max_calls,omitempty"`
	Rate     string   `json:"rate,omitempty"`
	Tier     string   `json:"tier"`
}

// claimKeys are the claim names in claimsJSON order; bit i of a key mask
// is claimKeys[i].
var claimKeys = []string{"v", "jti", "iss", "sub", "aud", "res", "scope", "iat", "nbf", "exp", "max_calls", "rate", "tier"}

const (
	bitMaxCalls = 1 << 10
	bitRate     = 1 << 11
	// requiredClaims is every key except max_calls and rate.
	requiredClaims = (1<<13 - 1) &^ (bitMaxCalls | bitRate)
)

// Issue validates c, fills its defaults (see [Claims]) and returns the
// token signed by id (SPEC §7.1):
//
//	"ocap1." ‖ b64url(claims JSON) ‖ "." ‖ b64url(Ed25519(id, "ocap1." ‖ b64url(claims JSON)))
//
// Errors wrap [ErrMalformed] (invalid claims, c.Issuer not id's key, or a
// token longer than [MaxTokenSize]) or come from crypto/rand.
func Issue(id *crypto.Identity, c Claims) (string, error) {
	pub := signPublic(id)
	if c.Issuer == nil {
		c.Issuer = pub
	} else if !pub.Equal(c.Issuer) {
		return "", malformed("issuer is not the signing identity")
	}
	if c.JTI.IsZero() {
		j, err := NewJTI()
		if err != nil {
			return "", err
		}
		c.JTI = j
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = c.IssuedAt
	}
	if c.Tier == "" {
		c.Tier = TierLive
	}
	c.IssuedAt = c.IssuedAt.Truncate(time.Second)
	c.NotBefore = c.NotBefore.Truncate(time.Second)
	c.Expires = c.Expires.Truncate(time.Second)
	if err := c.validate(); err != nil {
		return "", err
	}
	w := claimsJSON{
		V:        Version,
		JTI:      c.JTI.String(),
		Iss:      crypto.FormatEd25519(c.Issuer),
		Sub:      crypto.FormatEd25519(c.Subject),
		Aud:      c.Audience,
		Res:      c.Resource,
		Scope:    make([]string, len(c.Scope)),
		Iat:      c.IssuedAt.Unix(),
		Nbf:      c.NotBefore.Unix(),
		Exp:      c.Expires.Unix(),
		MaxCalls: int64(c.MaxCalls),
		Rate:     c.Rate.String(),
		Tier:     string(c.Tier),
	}
	for i, op := range c.Scope {
		w.Scope[i] = string(op)
	}
	body, err := json.Marshal(w)
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding
	n := len(Prefix) + b64.EncodedLen(len(body)) + 1 + sigB64Len
	if n > MaxTokenSize {
		return "", malformed("token too large")
	}
	tok := make([]byte, len(Prefix)+b64.EncodedLen(len(body)), n)
	copy(tok, Prefix)
	b64.Encode(tok[len(Prefix):], body)
	sig := id.Sign(tok)
	tok = append(tok, '.')
	tok = b64.AppendEncode(tok, sig)
	return string(tok), nil
}

// signPublic returns id's Ed25519 public key without deriving the X25519
// one as id.Public would (a scalar multiplication, slower than signing).
func signPublic(id *crypto.Identity) ed25519.PublicKey {
	return id.SignPrivate.Public().(ed25519.PublicKey)
}

// Parsed is a syntactically valid token, not yet verified. Make it with
// [Parse]; the zero Parsed fails every check.
type Parsed struct {
	claims Claims
	signed []byte // "ocap1.<claims-b64>" exactly as transmitted
	sig    [ed25519.SignatureSize]byte
}

// Parse checks the syntax of token (see the package documentation) and
// returns its claims with the signed bytes and signature. It does NOT
// verify the signature or any of the §7.1 execution checks: use
// [Parsed.Authorize]. Errors wrap [ErrMalformed] and never quote token.
func Parse(token string) (Parsed, error) {
	if len(token) > MaxTokenSize {
		return Parsed{}, malformed("too large")
	}
	rest, ok := strings.CutPrefix(token, Prefix)
	if !ok {
		return Parsed{}, malformed("missing ocap1. prefix")
	}
	claimsB64, sigB64, ok := strings.Cut(rest, ".")
	if !ok {
		return Parsed{}, malformed("want three dot-separated parts")
	}
	if len(sigB64) != sigB64Len || !isB64URL(claimsB64) || !isB64URL(sigB64) {
		return Parsed{}, malformed("not base64url")
	}
	var p Parsed
	if _, err := base64.RawURLEncoding.Strict().Decode(p.sig[:], []byte(sigB64)); err != nil {
		return Parsed{}, malformed("signature not base64url")
	}
	body, err := base64.RawURLEncoding.Strict().DecodeString(claimsB64)
	if err != nil {
		return Parsed{}, malformed("claims not base64url")
	}
	var w claimsJSON
	if err := json.Unmarshal(body, &w); err != nil {
		return Parsed{}, malformed("claims not valid JSON")
	}
	mask, ok := scanKeys(body, claimKeys)
	if !ok {
		return Parsed{}, malformed("unknown, duplicate or escaped claim name")
	}
	if mask&requiredClaims != requiredClaims {
		return Parsed{}, malformed("missing claim")
	}
	if err := w.toClaims(mask, &p.claims); err != nil {
		return Parsed{}, err
	}
	p.signed = []byte(token[:len(Prefix)+len(claimsB64)])
	return p, nil
}

// toClaims converts and validates the wire form; mask says which keys
// were present.
func (w *claimsJSON) toClaims(mask uint32, c *Claims) error {
	if w.V != Version {
		return malformed("unsupported version")
	}
	var err error
	if c.JTI, err = ParseJTI(w.JTI); err != nil {
		return err
	}
	if c.Issuer, err = crypto.ParseEd25519(w.Iss); err != nil {
		return malformed("bad iss")
	}
	if c.Subject, err = crypto.ParseEd25519(w.Sub); err != nil {
		return malformed("bad sub")
	}
	c.Audience, c.Resource = w.Aud, w.Res
	if len(w.Scope) > 6 {
		return malformed("bad scope")
	}
	c.Scope = make([]Op, len(w.Scope))
	for i, s := range w.Scope {
		c.Scope[i] = Op(s)
	}
	for _, u := range [...]int64{w.Iat, w.Nbf, w.Exp} {
		if u <= 0 || u > maxUnix {
			return malformed("time out of range")
		}
	}
	c.IssuedAt, c.NotBefore, c.Expires = time.Unix(w.Iat, 0), time.Unix(w.Nbf, 0), time.Unix(w.Exp, 0)
	if mask&bitMaxCalls != 0 {
		// Present means limited: 0 (or null) is not a way to say unlimited.
		if w.MaxCalls < 1 || w.MaxCalls > MaxCallsLimit {
			return malformed("bad max_calls")
		}
		c.MaxCalls = int(w.MaxCalls)
	}
	if mask&bitRate != 0 {
		if c.Rate, err = ParseRate(w.Rate); err != nil {
			return err
		}
	}
	c.Tier = Tier(w.Tier)
	return c.validate()
}

// Claims returns a copy of the token's claims (unverified until
// [Parsed.Authorize] or [Parsed.VerifySignature] succeeds).
func (p *Parsed) Claims() Claims {
	c := p.claims
	c.Scope = append([]Op(nil), p.claims.Scope...)
	return c
}

// JTI returns the token id.
func (p *Parsed) JTI() JTI { return p.claims.JTI }

// SignedBytes returns a copy of the signed message, "ocap1.<claims-b64>"
// exactly as transmitted.
func (p *Parsed) SignedBytes() []byte { return append([]byte(nil), p.signed...) }

// Signature returns a copy of the 64-byte Ed25519 signature.
func (p *Parsed) Signature() []byte { return append([]byte(nil), p.sig[:]...) }

// VerifySignature checks the Ed25519 signature (RFC 8032 §5.1.7) over the
// transmitted "ocap1.<claims-b64>" bytes against the token's own iss key.
// It proves only that iss signed these claims; who iss is must still be
// checked ([Parsed.Authorize] requires iss to be the executing vault).
// Returns [ErrBadSignature] on failure.
func (p *Parsed) VerifySignature() error {
	if p.signed == nil || !crypto.Verify(p.claims.Issuer, p.signed, p.sig[:]) {
		return ErrBadSignature
	}
	return nil
}

// scanKeys checks that b, a JSON document already validated by
// encoding/json, is an object whose keys are all in names, written without
// escapes, each at most once (encoding/json alone would accept "EXP" for
// "exp" and let a duplicate key win silently). It returns the bit mask of
// the keys seen (bit i = names[i]). It never panics, whatever b holds.
func scanKeys(b []byte, names []string) (mask uint32, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return 0, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		start := i + 1
		end := start
		for end < len(b) && b[end] != '"' && b[end] != '\\' {
			end++
		}
		if end >= len(b) || b[end] != '"' {
			return 0, false // escaped or unterminated key
		}
		key := b[start:end]
		idx := -1
		for k, n := range names {
			if string(key) == n {
				idx = k
				break
			}
		}
		if idx < 0 || mask&(1<<idx) != 0 {
			return 0, false
		}
		mask |= 1 << idx
		i = skipWS(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i = skipValue(b, i+1)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case '}':
			return mask, true
		case ',':
			i = skipWS(b, i+1)
		default:
			return 0, false
		}
	}
}

// skipValue returns the index of the ',' or '}' that ends the value
// starting at i, or len(b).
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
		case ',':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return len(b)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
