package capability_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/capability"
)

var claimNames = []string{"v", "jti", "iss", "sub", "aud", "res", "scope", "iat", "nbf", "exp", "max_calls", "rate", "tier"}

// FuzzParse feeds arbitrary text to Parse: it must never panic, and
// whatever it accepts must satisfy the documented syntax and survive
// VerifySignature and Authorize.
func FuzzParse(f *testing.F) {
	fx := newFixture(f)
	js := string(body(f, fx.token))
	f.Add(fx.token)
	f.Add(fx.issue(f, func(c *capability.Claims) {
		c.MaxCalls, c.Rate, c.Tier = 5, capability.Rate{Calls: 60, Per: time.Hour}, capability.TierCached
	}))
	f.Add("")
	f.Add("ocap1.")
	f.Add("ocap1..")
	f.Add("ocap1.e30.")
	f.Add(fx.token + ".")
	for _, b := range []string{
		"{}", "null", "[]", `{"v":1}`, js + " ", " " + js,
		strings.Replace(js, `"res"`, `"r\u0065s"`, 1),
		strings.Replace(js, `"res":"calendar"`, `"res":"a","res":"b"`, 1),
		strings.Replace(js, `"tier":"live"`, `"tier":"live","rate":"60/h","max_calls":3`, 1),
		strings.Replace(js, `["read","list"]`, `[{"a":[1,"]}"]}]`, 1),
		strings.Replace(js, `"aud":"ctr_alice"`, `"aud":"c\"t,r}"`, 1),
	} {
		f.Add(dummySig(b))
	}
	pub := fx.issuer.Public().Ed25519
	f.Fuzz(func(t *testing.T, s string) {
		p, err := capability.Parse(s)
		if err != nil {
			if capability.Code(err) != capability.ErrMalformed.Code() {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		checkAccepted(t, s, p)
		chk := fx.check()
		chk.Calls = &capability.Limiter{}
		chk.Self, chk.Requester = pub, pub
		if err := p.Authorize(chk); err != nil && capability.Code(err) == "" {
			t.Fatalf("Authorize returned an uncoded error %v", err)
		}
	})
}

// FuzzClaimsJSON fuzzes the claims JSON inside an otherwise well-formed
// token, where the interesting parsing happens.
func FuzzClaimsJSON(f *testing.F) {
	fx := newFixture(f)
	js := string(body(f, fx.token))
	for _, b := range []string{
		js, "{}", `{"v":1,"v":1}`, `{"V":1}`,
		strings.Replace(js, `"tier":"live"`, `"tier":"live","rate":"60/h","max_calls":3`, 1),
		strings.Replace(js, `,`, " ,\n ", -1),
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := dummySig(string(b))
		p, err := capability.Parse(s)
		if err != nil {
			if capability.Code(err) != capability.ErrMalformed.Code() {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		checkAccepted(t, s, p)
	})
}

// checkAccepted asserts the properties of a token Parse accepted.
func checkAccepted(t *testing.T, s string, p capability.Parsed) {
	t.Helper()
	if len(s) > capability.MaxTokenSize || strings.Count(s, ".") != 2 || !strings.HasPrefix(s, capability.Prefix) {
		t.Fatalf("accepted bad syntax %q", s)
	}
	if !strings.HasPrefix(s, string(p.SignedBytes())+".") || len(p.Signature()) != ed25519.SignatureSize {
		t.Fatal("signed bytes are not the transmitted prefix")
	}
	js, err := base64.RawURLEncoding.DecodeString(s[len(capability.Prefix):strings.LastIndexByte(s, '.')])
	if err != nil {
		t.Fatalf("accepted non-base64url claims: %v", err)
	}
	// The claim names are exact and known (checked independently of the
	// package's own key scanner).
	var m map[string]json.RawMessage
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatalf("accepted invalid JSON: %v", err)
	}
	for k := range m {
		if !slices.Contains(claimNames, k) {
			t.Fatalf("accepted unknown claim %q", k)
		}
	}
	c := p.Claims()
	if c.JTI.IsZero() || len(c.Issuer) != 32 || len(c.Subject) != 32 || c.Audience == "" || c.Resource == "" ||
		len(c.Scope) == 0 || !c.Expires.After(c.NotBefore) || c.MaxCalls < 0 ||
		(c.Tier != capability.TierLive && c.Tier != capability.TierCached) {
		t.Fatalf("accepted invalid claims %+v", c)
	}
	_ = p.VerifySignature()
}
