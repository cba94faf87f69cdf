package capability_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/ocmt/ocmt/capability"
)

// BenchmarkVerify is the whole execution check of a typical token (read +
// list on one resource for 7 days, with max_calls and rate): Parse, then
// Authorize (signature, issuer, audience, subject, time, scope, revocation
// lookup, Limiter bookkeeping). Compare with BenchmarkRawEd25519Verify;
// target ≥ 80% of its throughput.
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	tok := f.issue(b, func(c *capability.Claims) {
		c.MaxCalls = capability.MaxCallsLimit
		c.Rate = capability.Rate{Calls: capability.MaxRateCalls, Per: time.Second}
	})
	revoked := map[capability.JTI]bool{{7}: true}
	chk := f.check()
	chk.Revoked = func(j capability.JTI) bool { return revoked[j] }
	chk.Calls = &capability.Limiter{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		chk.Now = t0.Add(time.Hour + time.Duration(i)*time.Microsecond)
		p, err := capability.Parse(tok)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Authorize(chk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawEd25519Verify is crypto/ed25519.Verify of the same signed
// bytes and signature, the floor BenchmarkVerify is measured against.
func BenchmarkRawEd25519Verify(b *testing.B) {
	f := newFixture(b)
	tok := f.issue(b, func(c *capability.Claims) {
		c.MaxCalls = capability.MaxCallsLimit
		c.Rate = capability.Rate{Calls: capability.MaxRateCalls, Per: time.Second}
	})
	p, err := capability.Parse(tok)
	if err != nil {
		b.Fatal(err)
	}
	pub, msg, sig := f.issuer.Public().Ed25519, p.SignedBytes(), p.Signature()
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkParse is Parse alone (no signature check).
func BenchmarkParse(b *testing.B) {
	f := newFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := capability.Parse(f.token); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssue is Issue of a typical token (random jti, Ed25519 sign).
func BenchmarkIssue(b *testing.B) {
	f := newFixture(b)
	c := f.claims
	c.JTI = capability.JTI{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := capability.Issue(f.issuer, c); err != nil {
			b.Fatal(err)
		}
	}
}
