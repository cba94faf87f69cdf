package capability

import (
	"errors"
	"strings"
)

// Error is a capability failure with a stable machine code for the wire
// (SPEC §11 error bodies: {"error":{"code":"<snake_case>","message":…}}).
// The package's sentinels below are *Error values; functions return them
// either bare or wrapped with a detail that never quotes the input, so test
// with errors.Is and read the code with [Code] or Code().
type Error struct {
	code string
	msg  string
}

// Error returns the readable message, e.g. "capability: expired".
func (e *Error) Error() string { return e.msg }

// Code returns the snake_case machine code, e.g. "capability_expired".
func (e *Error) Code() string { return e.code }

// Token errors, in the order [Parsed.Authorize] checks them.
var (
	// ErrMalformed: the token (or claims given to [Issue]) is not
	// syntactically valid (SPEC §7.1 encoding and claims).
	ErrMalformed = &Error{"capability_malformed", "capability: malformed token"}
	// ErrBadSignature: the signature does not verify under the token's iss
	// key over the transmitted "ocap1.<claims>" bytes; this is also what
	// any alteration of the claims produces.
	ErrBadSignature = &Error{"capability_bad_signature", "capability: bad signature"}
	// ErrNotIssuer: the token was issued by someone other than the
	// executing vault's owner.
	ErrNotIssuer = &Error{"capability_not_issuer", "capability: token issued by someone other than the executing vault's owner"}
	// ErrAudience: aud is not this container's id.
	ErrAudience = &Error{"capability_wrong_audience", "capability: token is for another container"}
	// ErrNotSubject: the authenticated requester is not the token's subject.
	ErrNotSubject = &Error{"capability_not_subject", "capability: requester is not the token's subject"}
	// ErrExpired: now is at or after exp + skew.
	ErrExpired = &Error{"capability_expired", "capability: expired"}
	// ErrNotYetValid: now is before nbf − skew.
	ErrNotYetValid = &Error{"capability_not_yet_valid", "capability: not yet valid"}
	// ErrScope: the requested operation is not in the token's scope.
	ErrScope = &Error{"capability_out_of_scope", "capability: operation outside the granted scope"}
	// ErrRevoked: the token's jti has been revoked.
	ErrRevoked = &Error{"capability_revoked", "capability: revoked"}
	// ErrBudgetExhausted: max_calls calls have already been made.
	ErrBudgetExhausted = &Error{"capability_budget_exhausted", "capability: call budget exhausted"}
	// ErrRateLimited: the call would exceed the token's rate.
	ErrRateLimited = &Error{"capability_rate_limited", "capability: rate limit exceeded"}
	// ErrCheckConfig: the [Check] itself is incomplete (a programming
	// error, not the requester's fault); Authorize fails closed with it.
	ErrCheckConfig = &Error{"capability_check_misconfigured", "capability: execution check is misconfigured"}
)

// Revocation errors, in the order [VerifyRevocation] checks them.
var (
	// ErrRevocationMalformed: the revocation is not syntactically valid.
	ErrRevocationMalformed = &Error{"revocation_malformed", "capability: malformed revocation"}
	// ErrRevocationSignature: the revocation is not signed by the
	// capability's issuer (wrong issuer field or bad signature).
	ErrRevocationSignature = &Error{"revocation_bad_signature", "capability: revocation not signed by the capability's issuer"}
	// ErrRevocationStale: ts is older than now − max skew.
	ErrRevocationStale = &Error{"revocation_stale", "capability: revocation is stale"}
	// ErrRevocationFuture: ts is later than now + max skew.
	ErrRevocationFuture = &Error{"revocation_future", "capability: revocation is dated in the future"}
)

// Code returns the machine code of the first [Error] in err's chain, or ""
// if there is none.
func Code(err error) string {
	var c interface{ Code() string }
	if errors.As(err, &c) {
		return c.Code()
	}
	return ""
}

// Message is err's text for people, without the Go package prefix:
// "call budget exhausted" rather than "capability: call budget exhausted".
func Message(err error) string {
	return strings.TrimPrefix(err.Error(), "capability: ")
}

// detailError wraps a sentinel with a detail (never input text).
type detailError struct {
	base   *Error
	detail string
}

func (e *detailError) Error() string { return e.base.msg + ": " + e.detail }
func (e *detailError) Code() string  { return e.base.code }
func (e *detailError) Unwrap() error { return e.base }

func (e *Error) with(detail string) error { return &detailError{e, detail} }

// malformed is ErrMalformed with a detail.
func malformed(detail string) error { return ErrMalformed.with(detail) }
