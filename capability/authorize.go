package capability

import (
	"crypto/ed25519"
	"time"
)

// DefaultSkew is the clock-skew tolerance of [Check] when Skew is 0.
const DefaultSkew = 60 * time.Second

// Counter does the call bookkeeping for max_calls and rate. [Limiter] is
// an in-memory Counter; the vault may supply a persistent one.
type Counter interface {
	// Use atomically checks one call at now against maxCalls (0 =
	// unlimited) and rate (zero = unlimited) for jti and, only if both
	// allow it, records the call. It returns nil, or an error wrapping
	// [ErrBudgetExhausted] (checked first) or [ErrRateLimited].
	Use(jti JTI, maxCalls int, rate Rate, now time.Time) error
}

// Check is the context of one execution of a capability by the issuing
// vault (SPEC §7.1 "Executing a capability checks"). Every field except
// Now, Skew and Calls is required; a missing one makes [Parsed.Authorize]
// fail closed with [ErrCheckConfig].
type Check struct {
	// Self is the executing vault's own Ed25519 identity key; the token's
	// iss must equal it.
	Self ed25519.PublicKey
	// Audience is this container's id; the token's aud must equal it.
	Audience string
	// Requester is the requester's Ed25519 key as authenticated by the
	// relay envelope (trusted input); it must equal the token's sub.
	Requester ed25519.PublicKey
	// Operation is the requested operation; it must be in the scope.
	Operation Op
	// Now is the current time; zero means time.Now().
	Now time.Time
	// Skew tolerates clock differences on nbf and exp: the token is valid
	// for nbf − Skew ≤ Now < exp + Skew. 0 means DefaultSkew (60 s);
	// negative is a configuration error.
	Skew time.Duration
	// Revoked reports whether jti was revoked (locally; the relay keeps its
	// own blocklist). Required.
	Revoked func(jti JTI) bool
	// Calls records calls against max_calls and rate. It may be nil only
	// for tokens that carry neither; it is called only after every other
	// check passed, so refused requests use no budget.
	Calls Counter
}

// Authorize verifies the token and runs the SPEC §7.1 execution checks in
// this order, returning the first failure (each a distinct [Error]):
//
//	syntax (done by Parse)       ErrMalformed
//	signature by iss             ErrBadSignature
//	iss == chk.Self              ErrNotIssuer
//	aud == chk.Audience          ErrAudience
//	sub == chk.Requester         ErrNotSubject
//	time window ± skew           ErrExpired, ErrNotYetValid
//	operation in scope           ErrScope
//	not revoked                  ErrRevoked
//	call budget (max_calls)      ErrBudgetExhausted
//	rate                         ErrRateLimited
//
// An incomplete chk gives [ErrCheckConfig] before any token check. On
// success the call has been counted by chk.Calls (if the token has limits).
// The remaining §7.1 checks (resource still connected, audit) are the
// caller's.
func (p *Parsed) Authorize(chk Check) error {
	if len(chk.Self) != ed25519.PublicKeySize || len(chk.Requester) != ed25519.PublicKeySize ||
		chk.Audience == "" || chk.Operation == "" || chk.Revoked == nil || chk.Skew < 0 {
		return ErrCheckConfig
	}
	if p.signed == nil {
		return ErrMalformed
	}
	c := &p.claims
	if (c.MaxCalls > 0 || !c.Rate.IsZero()) && chk.Calls == nil {
		return ErrCheckConfig.with("token has call limits but no counter")
	}
	if err := p.VerifySignature(); err != nil {
		return err
	}
	if !chk.Self.Equal(c.Issuer) {
		return ErrNotIssuer
	}
	if chk.Audience != c.Audience {
		return ErrAudience
	}
	if !chk.Requester.Equal(c.Subject) {
		return ErrNotSubject
	}
	now, skew := chk.Now, chk.Skew
	if now.IsZero() {
		now = time.Now()
	}
	if skew == 0 {
		skew = DefaultSkew
	}
	if !now.Before(c.Expires.Add(skew)) {
		return ErrExpired
	}
	if now.Before(c.NotBefore.Add(-skew)) {
		return ErrNotYetValid
	}
	if !c.Allows(chk.Operation) {
		return ErrScope
	}
	if chk.Revoked(c.JTI) {
		return ErrRevoked
	}
	if c.MaxCalls > 0 || !c.Rate.IsZero() {
		return chk.Calls.Use(c.JTI, c.MaxCalls, c.Rate, now)
	}
	return nil
}
