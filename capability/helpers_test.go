package capability_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
)

// t0 is the fixtures' issue time.
var t0 = time.Unix(1_700_000_000, 0)

// identity returns a deterministic identity whose 64 secret bytes are all
// seed (tests only).
func identity(t testing.TB, seed byte) *crypto.Identity {
	t.Helper()
	id, err := crypto.IdentityFromBytes(bytes.Repeat([]byte{seed}, crypto.IdentitySize))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type fixture struct {
	issuer, subject, other *crypto.Identity
	claims                 capability.Claims
	token                  string
}

// newFixture issues Alice's ("issuer") read/list grant on "calendar" to
// Bob ("subject") for 7 days; "other" is Mallory.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{issuer: identity(t, 1), subject: identity(t, 2), other: identity(t, 3)}
	f.claims = capability.Claims{
		JTI:      capability.JTI{0: 0xa1, 15: 0x5e},
		Subject:  f.subject.Public().Ed25519,
		Audience: "ctr_alice",
		Resource: "calendar",
		Scope:    []capability.Op{capability.OpRead, capability.OpList},
		IssuedAt: t0,
		Expires:  t0.Add(7 * 24 * time.Hour),
	}
	f.token = f.issue(t, nil)
	return f
}

// issue signs a copy of f.claims changed by edit (which may be nil).
func (f *fixture) issue(t testing.TB, edit func(*capability.Claims)) string {
	t.Helper()
	c := f.claims
	c.Scope = append([]capability.Op(nil), c.Scope...)
	if edit != nil {
		edit(&c)
	}
	tok, err := capability.Issue(f.issuer, c)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

// check is a passing execution context for f.token at t0 + 1 h.
func (f *fixture) check() capability.Check {
	return capability.Check{
		Self:      f.issuer.Public().Ed25519,
		Audience:  "ctr_alice",
		Requester: f.subject.Public().Ed25519,
		Operation: capability.OpRead,
		Now:       t0.Add(time.Hour),
		Revoked:   func(capability.JTI) bool { return false },
	}
}

// body returns the claims JSON of a token.
func body(t testing.TB, token string) []byte {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withBody replaces the claims of token by claims, keeping its signature.
func withBody(t testing.TB, token string, claims []byte) string {
	t.Helper()
	parts := strings.Split(token, ".")
	return capability.Prefix + base64.RawURLEncoding.EncodeToString(claims) + "." + parts[2]
}

// signRaw makes a token of arbitrary claims bytes signed by id.
func signRaw(id *crypto.Identity, claims []byte) string {
	signed := capability.Prefix + base64.RawURLEncoding.EncodeToString(claims)
	return signed + "." + base64.RawURLEncoding.EncodeToString(id.Sign([]byte(signed)))
}

// dummySig wraps claims into a token with an all-zero signature (for
// syntax tests: Parse does not verify).
func dummySig(claims string) string {
	return capability.Prefix + base64.RawURLEncoding.EncodeToString([]byte(claims)) + "." +
		base64.RawURLEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
}

// allErrors lists every sentinel of the package.
var allErrors = []*capability.Error{
	capability.ErrMalformed, capability.ErrBadSignature, capability.ErrNotIssuer,
	capability.ErrAudience, capability.ErrNotSubject, capability.ErrExpired,
	capability.ErrNotYetValid, capability.ErrScope, capability.ErrRevoked,
	capability.ErrBudgetExhausted, capability.ErrRateLimited, capability.ErrCheckConfig,
	capability.ErrRevocationMalformed, capability.ErrRevocationSignature,
	capability.ErrRevocationStale, capability.ErrRevocationFuture,
}

// wantOnly fails unless err is want (by errors.Is and Code) and no other
// sentinel; want nil means success.
func wantOnly(t testing.TB, err error, want *capability.Error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("got %v (code %q), want success", err, capability.Code(err))
		}
		return
	}
	if err == nil {
		t.Fatalf("got success, want %s", want.Code())
	}
	for _, e := range allErrors {
		if got := isErr(err, e); got != (e == want) {
			t.Errorf("errors.Is(%v, %s) = %v", err, e.Code(), got)
		}
	}
	if got := capability.Code(err); got != want.Code() {
		t.Errorf("Code = %q, want %q", got, want.Code())
	}
}
