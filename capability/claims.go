package capability

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Version is the only claims version ("v") this package issues or accepts.
const Version = 1

// Limits on claim values; tokens outside them are [ErrMalformed].
const (
	// MaxNameSize bounds aud and res (bytes of UTF-8).
	MaxNameSize = 256
	// MaxCallsLimit bounds max_calls.
	MaxCallsLimit = 1 << 30
	// MaxRateCalls bounds N in a rate "N/unit".
	MaxRateCalls = 1_000_000
	// maxUnix is 9999-12-31T23:59:59Z: keeps time arithmetic far from overflow.
	maxUnix = 253402300799
)

// JTISize is the length of a token id in bytes (SPEC §7.1: 16 random bytes).
const JTISize = 16

// JTI is a capability token id. Its text form (String, MarshalText and the
// "jti" claim) is the unpadded base64url (RFC 4648 §5) of the 16 bytes, 22
// characters. The zero JTI is never issued.
type JTI [JTISize]byte

// NewJTI returns a random JTI from crypto/rand.
func NewJTI() (JTI, error) {
	var j JTI
	_, err := rand.Read(j[:])
	return j, err
}

// ParseJTI parses the 22-character text form. Errors wrap [ErrMalformed].
func ParseJTI(s string) (JTI, error) {
	var j JTI
	if len(s) != base64.RawURLEncoding.EncodedLen(JTISize) || !isB64URL(s) {
		return j, malformed("bad jti")
	}
	if _, err := base64.RawURLEncoding.Strict().Decode(j[:], []byte(s)); err != nil {
		return JTI{}, malformed("bad jti")
	}
	return j, nil
}

// String returns the unpadded base64url form.
func (j JTI) String() string { return base64.RawURLEncoding.EncodeToString(j[:]) }

// IsZero reports whether j is all zeros (unset).
func (j JTI) IsZero() bool { return j == JTI{} }

// MarshalText returns the unpadded base64url form.
func (j JTI) MarshalText() ([]byte, error) { return []byte(j.String()), nil }

// UnmarshalText parses the unpadded base64url form (see [ParseJTI]).
func (j *JTI) UnmarshalText(b []byte) error {
	v, err := ParseJTI(string(b))
	if err != nil {
		return err
	}
	*j = v
	return nil
}

// Op is an operation a capability may grant (SPEC §7.1 "scope", the
// permission names of §7.3). Each is granted separately: admin does not
// imply the others.
type Op string

// The operations.
const (
	OpRead   Op = "read"
	OpList   Op = "list"
	OpWrite  Op = "write"
	OpDelete Op = "delete"
	OpAdmin  Op = "admin"
	OpShare  Op = "share"
)

// Valid reports whether o is one of the six operations.
func (o Op) Valid() bool {
	switch o {
	case OpRead, OpList, OpWrite, OpDelete, OpAdmin, OpShare:
		return true
	}
	return false
}

// Tier says how a capability is served (SPEC §7.2): live from the issuer's
// running container, or from a cached snapshot pushed to the relay.
type Tier string

// The tiers.
const (
	TierLive   Tier = "live"
	TierCached Tier = "cached"
)

// Rate is a call rate "N/unit": at most Calls calls per Per, where Per is
// one second, minute, hour or day. Its text form is e.g. "60/h"
// ([ParseRate]). The zero Rate means no rate limit.
type Rate struct {
	// Calls is N, 1..MaxRateCalls.
	Calls int
	// Per is time.Second, time.Minute, time.Hour or 24*time.Hour.
	Per time.Duration
}

// Day is the "d" rate unit.
const Day = 24 * time.Hour

// ParseRate parses "N/u": N a decimal integer 1..MaxRateCalls without sign
// or leading zeros, u one of s, m, h, d (lower case), no spaces. Errors wrap
// [ErrMalformed].
func ParseRate(s string) (Rate, error) {
	num, unit, ok := strings.Cut(s, "/")
	if !ok || num == "" || len(num) > 7 || num[0] == '0' {
		return Rate{}, malformed("bad rate")
	}
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return Rate{}, malformed("bad rate")
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > MaxRateCalls {
		return Rate{}, malformed("bad rate")
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	case "d":
		per = Day
	default:
		return Rate{}, malformed("bad rate")
	}
	return Rate{Calls: n, Per: per}, nil
}

// IsZero reports whether r is the zero Rate (no limit).
func (r Rate) IsZero() bool { return r == Rate{} }

// String returns the text form "N/u", or "" for the zero Rate. A Rate that
// is neither zero nor valid prints as "invalid".
func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	if r.validate() != nil {
		return "invalid"
	}
	var u string
	switch r.Per {
	case time.Second:
		u = "s"
	case time.Minute:
		u = "m"
	case time.Hour:
		u = "h"
	default:
		u = "d"
	}
	return strconv.Itoa(r.Calls) + "/" + u
}

func (r Rate) validate() error {
	if r.Calls < 1 || r.Calls > MaxRateCalls {
		return malformed("bad rate")
	}
	switch r.Per {
	case time.Second, time.Minute, time.Hour, Day:
		return nil
	}
	return malformed("bad rate")
}

// Claims are the content of a capability token (SPEC §7.1). Times are
// whole unix seconds on the wire; [Issue] truncates them.
type Claims struct {
	// JTI is the token id; [Issue] fills a random one if zero.
	JTI JTI
	// Issuer is the granting vault's Ed25519 identity key ("iss"); [Issue]
	// fills it from the signing identity if nil and refuses any other.
	Issuer ed25519.PublicKey
	// Subject is the grantee's Ed25519 identity key ("sub").
	Subject ed25519.PublicKey
	// Audience is the issuer's container id ("aud"), 1..MaxNameSize bytes.
	Audience string
	// Resource names the shared resource ("res"), 1..MaxNameSize bytes.
	Resource string
	// Scope lists the granted operations, at least one, no duplicates.
	Scope []Op
	// IssuedAt is "iat"; [Issue] uses the current time if zero.
	IssuedAt time.Time
	// NotBefore is "nbf"; [Issue] uses IssuedAt if zero.
	NotBefore time.Time
	// Expires is "exp", required and after NotBefore.
	Expires time.Time
	// MaxCalls is the optional call budget ("max_calls"); 0 = unlimited.
	MaxCalls int
	// Rate is the optional call rate ("rate"); zero = unlimited.
	Rate Rate
	// Tier is "tier"; [Issue] uses TierLive if empty.
	Tier Tier
}

// Allows reports whether op is in c.Scope.
func (c *Claims) Allows(op Op) bool {
	for _, s := range c.Scope {
		if s == op {
			return true
		}
	}
	return false
}

// validate checks every field; errors wrap ErrMalformed.
func (c *Claims) validate() error {
	if c.JTI.IsZero() {
		return malformed("zero jti")
	}
	if len(c.Issuer) != ed25519.PublicKeySize {
		return malformed("bad iss")
	}
	if len(c.Subject) != ed25519.PublicKeySize {
		return malformed("bad sub")
	}
	if !validName(c.Audience) {
		return malformed("bad aud")
	}
	if !validName(c.Resource) {
		return malformed("bad res")
	}
	if len(c.Scope) == 0 || len(c.Scope) > 6 {
		return malformed("bad scope")
	}
	for i, op := range c.Scope {
		if !op.Valid() {
			return malformed("unknown operation in scope")
		}
		for _, prev := range c.Scope[:i] {
			if prev == op {
				return malformed("duplicate operation in scope")
			}
		}
	}
	for _, t := range [...]time.Time{c.IssuedAt, c.NotBefore, c.Expires} {
		if u := t.Unix(); u <= 0 || u > maxUnix {
			return malformed("time out of range")
		}
	}
	if !c.Expires.After(c.NotBefore) {
		return malformed("exp not after nbf")
	}
	if c.MaxCalls < 0 || c.MaxCalls > MaxCallsLimit {
		return malformed("bad max_calls")
	}
	if !c.Rate.IsZero() {
		if err := c.Rate.validate(); err != nil {
			return err
		}
	}
	if c.Tier != TierLive && c.Tier != TierCached {
		return malformed("bad tier")
	}
	return nil
}

// validName reports whether s is 1..MaxNameSize bytes of UTF-8 without
// control characters.
func validName(s string) bool {
	if s == "" || len(s) > MaxNameSize || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// isB64URL reports whether s holds only base64url alphabet characters
// (RFC 4648 §5, no padding). It also rules out CR and LF, which
// encoding/base64 would otherwise silently skip.
func isB64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
