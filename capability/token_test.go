package capability_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
)

func isErr(err error, target *capability.Error) bool { return errors.Is(err, target) }

func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(t, func(c *capability.Claims) {
		c.MaxCalls = 100
		c.Rate = capability.Rate{Calls: 60, Per: time.Hour}
		c.Tier = capability.TierCached
		c.NotBefore = t0.Add(time.Minute)
	})
	p, err := capability.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	want := f.claims
	want.Issuer = f.issuer.Public().Ed25519
	want.MaxCalls = 100
	want.Rate = capability.Rate{Calls: 60, Per: time.Hour}
	want.Tier = capability.TierCached
	want.NotBefore = t0.Add(time.Minute)
	got := p.Claims()
	if !claimsEqual(got, want) {
		t.Fatalf("claims\n got %+v\nwant %+v", got, want)
	}
	if err := p.VerifySignature(); err != nil {
		t.Fatal(err)
	}
	if p.JTI() != f.claims.JTI {
		t.Fatalf("JTI = %v", p.JTI())
	}
	if !strings.HasPrefix(tok, string(p.SignedBytes())+".") || len(p.Signature()) != 64 {
		t.Fatal("SignedBytes/Signature do not match the token")
	}
	chk := f.check()
	chk.Now = t0.Add(2 * time.Minute)
	chk.Calls = &capability.Limiter{}
	wantOnly(t, p.Authorize(chk), nil)
}

func claimsEqual(a, b capability.Claims) bool {
	return a.JTI == b.JTI && a.Issuer.Equal(b.Issuer) && a.Subject.Equal(b.Subject) &&
		a.Audience == b.Audience && a.Resource == b.Resource &&
		fmt.Sprint(a.Scope) == fmt.Sprint(b.Scope) && a.IssuedAt.Equal(b.IssuedAt) &&
		a.NotBefore.Equal(b.NotBefore) && a.Expires.Equal(b.Expires) &&
		a.MaxCalls == b.MaxCalls && a.Rate == b.Rate && a.Tier == b.Tier
}

// TestKnownAnswer pins the exact encoding: field order, base64url without
// padding, and the deterministic Ed25519 signature (RFC 8032) over
// "ocap1.<claims-b64>". Other implementations can check against it.
func TestKnownAnswer(t *testing.T) {
	f := newFixture(t)
	wantBody := `{"v":1,"jti":"oQAAAAAAAAAAAAAAAAAAXg","iss":"` + f.issuer.Public().Ed25519Text() +
		`","sub":"` + f.subject.Public().Ed25519Text() + `","aud":"ctr_alice","res":"calendar",` +
		`"scope":["read","list"],"iat":1700000000,"nbf":1700000000,"exp":1700604800,"tier":"live"}`
	if got := string(body(t, f.token)); got != wantBody {
		t.Fatalf("claims JSON\n got %s\nwant %s", got, wantBody)
	}
	if want := signRaw(f.issuer, []byte(wantBody)); f.token != want {
		t.Fatalf("token\n got %s\nwant %s", f.token, want)
	}
	// Pinned bytes: issuer seed 0x01…, subject seed 0x02….
	const wantToken = "ocap1.eyJ2IjoxLCJqdGkiOiJvUUFBQUFBQUFBQUFBQUFBQUFBQVhnIiwiaXNzIjoiZWQyNTUxOTppb2pqM1hRSjhaWDlVdHN0UExwZGNzcG5DYjhkbEJJYjgzU0lBYlFQYjF3Iiwic3ViIjoiZWQyNTUxOTpnVGwzRHFoOUYxOVdvMVJtdzB4LXpNdU5pcEcwN2plaVhmWVBXNF9KczVRIiwiYXVkIjoiY3RyX2FsaWNlIiwicmVzIjoiY2FsZW5kYXIiLCJzY29wZSI6WyJyZWFkIiwibGlzdCJdLCJpYXQiOjE3MDAwMDAwMDAsIm5iZiI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwNjA0ODAwLCJ0aWVyIjoibGl2ZSJ9" +
		".0urhhZVmcrqlEOzzpRQOS6OqFLuTYJ_8wlckXrPtL6hnVUL4YOSYOe3NJrchstlHbX6uKlwTVCwsDUrEOUx2BQ"
	if f.token != wantToken {
		t.Fatalf("token = %s", f.token)
	}
}

func TestIssueDefaults(t *testing.T) {
	f := newFixture(t)
	before := time.Now().Truncate(time.Second)
	tok := f.issue(t, func(c *capability.Claims) {
		c.JTI, c.IssuedAt = capability.JTI{}, time.Time{}
		c.Expires = time.Now().Add(time.Hour)
	})
	p, err := capability.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Claims()
	if c.JTI.IsZero() || c.IssuedAt.Before(before) || !c.NotBefore.Equal(c.IssuedAt) ||
		c.Tier != capability.TierLive || !c.Issuer.Equal(f.issuer.Public().Ed25519) {
		t.Fatalf("defaults not filled: %+v", c)
	}
	if !bytes.HasPrefix(body(t, tok), []byte(`{"v":1,"jti":"`+c.JTI.String()+`",`)) {
		t.Fatalf("body = %s", body(t, tok))
	}
	p2, err := capability.Parse(f.issue(t, func(c *capability.Claims) { c.JTI = capability.JTI{} }))
	if err != nil || p2.JTI() == c.JTI {
		t.Fatalf("two issued tokens share a jti (%v)", err)
	}
}

func TestIssueRejects(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("x", capability.MaxNameSize+1)
	cases := map[string]func(*capability.Claims){
		"issuer not signer":  func(c *capability.Claims) { c.Issuer = f.other.Public().Ed25519 },
		"no subject":         func(c *capability.Claims) { c.Subject = nil },
		"short subject":      func(c *capability.Claims) { c.Subject = c.Subject[:31] },
		"no audience":        func(c *capability.Claims) { c.Audience = "" },
		"audience too long":  func(c *capability.Claims) { c.Audience = long },
		"audience not utf-8": func(c *capability.Claims) { c.Audience = "ctr\xff" },
		"control in res":     func(c *capability.Claims) { c.Resource = "cal\nendar" },
		"no resource":        func(c *capability.Claims) { c.Resource = "" },
		"no scope":           func(c *capability.Claims) { c.Scope = nil },
		"unknown op":         func(c *capability.Claims) { c.Scope = []capability.Op{"execute"} },
		"duplicate op":       func(c *capability.Claims) { c.Scope = []capability.Op{"read", "read"} },
		"no expiry":          func(c *capability.Claims) { c.Expires = time.Time{} },
		"exp == nbf":         func(c *capability.Claims) { c.Expires = t0 },
		"exp before nbf":     func(c *capability.Claims) { c.NotBefore = c.Expires.Add(time.Second) },
		"negative max":       func(c *capability.Claims) { c.MaxCalls = -1 },
		"huge max":           func(c *capability.Claims) { c.MaxCalls = capability.MaxCallsLimit + 1 },
		"bad rate unit":      func(c *capability.Claims) { c.Rate = capability.Rate{Calls: 1, Per: 2 * time.Hour} },
		"zero rate calls":    func(c *capability.Claims) { c.Rate = capability.Rate{Per: time.Hour} },
		"bad tier":           func(c *capability.Claims) { c.Tier = "warm" },
		"year 10000":         func(c *capability.Claims) { c.Expires = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			c := f.claims
			edit(&c)
			_, err := capability.Issue(f.issuer, c)
			wantOnly(t, err, capability.ErrMalformed)
		})
	}
}

func TestAuthorizeErrors(t *testing.T) {
	f := newFixture(t)
	alteredRes := bytes.Replace(body(t, f.token), []byte(`"calendar"`), []byte(`"calendas"`), 1)
	// Mallory re-signs Alice's claims with her keys in a different field
	// order: the signature is valid, but not by the executing vault.
	reordered := fmt.Sprintf(`{"tier":"live","scope":["read","list"],"sub":%q,"iss":%q,"res":"calendar",`+
		`"aud":"ctr_alice","jti":%q,"exp":1700604800,"nbf":1700000000,"iat":1700000000,"v":1}`,
		f.subject.Public().Ed25519Text(), f.other.Public().Ed25519Text(), f.claims.JTI)
	// The same, claiming Alice as issuer but signed by Mallory.
	forged := strings.Replace(reordered, f.other.Public().Ed25519Text(), f.issuer.Public().Ed25519Text(), 1)
	sigFlip := []byte(f.token)
	i := strings.LastIndexByte(f.token, '.') + 1
	sigFlip[i] ^= 'A' ^ 'B' // the first sig char is a full 6-bit digit
	if sigFlip[i] != 'A' && sigFlip[i] != 'B' {
		sigFlip[i] = 'A'
	}
	limited := f.issue(t, func(c *capability.Claims) { c.MaxCalls = 2 })
	rated := f.issue(t, func(c *capability.Claims) { c.Rate = capability.Rate{Calls: 2, Per: time.Hour} })
	spent := func(n int) *capability.Limiter {
		l := &capability.Limiter{}
		for range n {
			if err := l.Use(f.claims.JTI, 0, capability.Rate{}, t0); err != nil {
				t.Fatal(err)
			}
		}
		return l
	}
	throttled := &capability.Limiter{}
	for range 2 {
		if err := throttled.Use(f.claims.JTI, 0, capability.Rate{Calls: 2, Per: time.Hour}, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name  string
		token string
		edit  func(*capability.Check)
		want  *capability.Error
	}{
		{"valid", f.token, nil, nil},
		{"valid with list", f.token, func(c *capability.Check) { c.Operation = capability.OpList }, nil},
		{"malformed", "ocap1.e30.AAAA", nil, capability.ErrMalformed},
		{"malformed prefix", strings.Replace(f.token, "ocap1.", "ocap2.", 1), nil, capability.ErrMalformed},
		{"bad signature", string(sigFlip), nil, capability.ErrBadSignature},
		{"altered claims", withBody(t, f.token, alteredRes), nil, capability.ErrBadSignature},
		{"forged issuer", signRaw(f.other, []byte(forged)), nil, capability.ErrBadSignature},
		{"not issuer", signRaw(f.other, []byte(reordered)), nil, capability.ErrNotIssuer},
		{"wrong audience", f.token, func(c *capability.Check) { c.Audience = "ctr_mallory" }, capability.ErrAudience},
		{"not subject", f.token, func(c *capability.Check) { c.Requester = f.other.Public().Ed25519 }, capability.ErrNotSubject},
		{"issuer as requester", f.token, func(c *capability.Check) { c.Requester = f.issuer.Public().Ed25519 }, capability.ErrNotSubject},
		{"expired", f.token, func(c *capability.Check) { c.Now = t0.Add(8 * 24 * time.Hour) }, capability.ErrExpired},
		{"not yet valid", f.token, func(c *capability.Check) { c.Now = t0.Add(-time.Hour) }, capability.ErrNotYetValid},
		{"outside scope", f.token, func(c *capability.Check) { c.Operation = capability.OpWrite }, capability.ErrScope},
		{"admin does not imply read", f.issue(t, func(c *capability.Claims) { c.Scope = []capability.Op{"admin"} }), nil, capability.ErrScope},
		{"revoked", f.token, func(c *capability.Check) {
			c.Revoked = func(j capability.JTI) bool { return j == f.claims.JTI }
		}, capability.ErrRevoked},
		{"budget left", limited, func(c *capability.Check) { c.Calls = spent(1) }, nil},
		{"budget exhausted", limited, func(c *capability.Check) { c.Calls = spent(2) }, capability.ErrBudgetExhausted},
		{"rate limited", rated, func(c *capability.Check) { c.Calls = throttled }, capability.ErrRateLimited},
		{"limits without counter", limited, nil, capability.ErrCheckConfig},
		{"no revocation check", f.token, func(c *capability.Check) { c.Revoked = nil }, capability.ErrCheckConfig},
		{"no self", f.token, func(c *capability.Check) { c.Self = nil }, capability.ErrCheckConfig},
		{"no operation", f.token, func(c *capability.Check) { c.Operation = "" }, capability.ErrCheckConfig},
		{"negative skew", f.token, func(c *capability.Check) { c.Skew = -1 }, capability.ErrCheckConfig},
		// Order: earlier checks win.
		{"bad sig beats audience", string(sigFlip), func(c *capability.Check) { c.Audience = "x" }, capability.ErrBadSignature},
		{"audience beats expiry", f.token, func(c *capability.Check) {
			c.Audience, c.Now = "x", t0.Add(30*24*time.Hour)
		}, capability.ErrAudience},
		{"expiry beats scope", f.token, func(c *capability.Check) {
			c.Operation, c.Now = capability.OpWrite, t0.Add(30*24*time.Hour)
		}, capability.ErrExpired},
		{"revoked beats budget", limited, func(c *capability.Check) {
			c.Calls, c.Revoked = spent(2), func(capability.JTI) bool { return true }
		}, capability.ErrRevoked},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chk := f.check()
			if tc.edit != nil {
				tc.edit(&chk)
			}
			err := authorize(tc.token, chk)
			wantOnly(t, err, tc.want)
			seen[capability.Code(err)] = true
		})
	}
	for _, e := range allErrors {
		if !strings.HasPrefix(e.Code(), "revocation_") && !seen[e.Code()] {
			t.Errorf("no case produced %s", e.Code())
		}
	}
}

func authorize(token string, chk capability.Check) error {
	p, err := capability.Parse(token)
	if err != nil {
		return err
	}
	return p.Authorize(chk)
}

func TestTimeWindowBoundaries(t *testing.T) {
	f := newFixture(t)
	nbf, exp := t0.Add(time.Hour), t0.Add(2*time.Hour)
	tok := f.issue(t, func(c *capability.Claims) { c.NotBefore, c.Expires = nbf, exp })
	cases := []struct {
		now  time.Time
		skew time.Duration
		want *capability.Error
	}{
		{nbf.Add(-capability.DefaultSkew - time.Second), 0, capability.ErrNotYetValid},
		{nbf.Add(-capability.DefaultSkew), 0, nil},
		{exp.Add(capability.DefaultSkew - time.Nanosecond), 0, nil},
		{exp.Add(capability.DefaultSkew), 0, capability.ErrExpired},
		{nbf.Add(-time.Second), time.Nanosecond, capability.ErrNotYetValid},
		{nbf, time.Nanosecond, nil},
		{exp, time.Nanosecond, nil},
		{exp.Add(time.Nanosecond), time.Nanosecond, capability.ErrExpired},
		{exp.Add(9 * time.Minute), 10 * time.Minute, nil},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v/%v", tc.now.Sub(t0), tc.skew), func(t *testing.T) {
			chk := f.check()
			chk.Now, chk.Skew = tc.now, tc.skew
			wantOnly(t, authorize(tok, chk), tc.want)
		})
	}
}

// TestEveryClaimByteIsSigned changes each character of the claims part in
// turn: the result is either malformed or fails the signature, never
// accepted.
func TestEveryClaimByteIsSigned(t *testing.T) {
	f := newFixture(t)
	end := strings.LastIndexByte(f.token, '.')
	var bad, malformed int
	for i := len(capability.Prefix); i < end; i++ {
		b := []byte(f.token)
		if b[i] == 'x' {
			b[i] = 'y'
		} else {
			b[i] = 'x'
		}
		err := authorize(string(b), f.check())
		switch {
		case errors.Is(err, capability.ErrBadSignature):
			bad++
		case errors.Is(err, capability.ErrMalformed):
			malformed++
		default:
			t.Fatalf("byte %d: got %v", i, err)
		}
	}
	if bad == 0 {
		t.Fatal("no alteration reached the signature check")
	}
	t.Logf("%d alterations: %d bad signature, %d malformed", bad+malformed, bad, malformed)

	// And every single claims JSON byte of a value, changed so that the
	// claims stay valid, is a bad signature.
	js := body(t, f.token)
	for _, v := range []string{`"ctr_alice"`, `"calendar"`, `1700604800`} {
		at := bytes.Index(js, []byte(v)) + 2
		alt := bytes.Clone(js)
		alt[at]++
		wantOnly(t, authorize(withBody(t, f.token, alt), f.check()), capability.ErrBadSignature)
	}
}

// TestSignedBytesAreTransmittedBytes: a token whose claims JSON has
// unusual but valid whitespace verifies, because the signature covers the
// transmitted bytes, and a re-serialisation would not match.
func TestSignedBytesAreTransmittedBytes(t *testing.T) {
	f := newFixture(t)
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body(t, f.token), "", "  "); err != nil {
		t.Fatal(err)
	}
	tok := signRaw(f.issuer, pretty.Bytes())
	wantOnly(t, authorize(tok, f.check()), nil)
	// Same claims, original signature: fails.
	wantOnly(t, authorize(withBody(t, f.token, pretty.Bytes()), f.check()), capability.ErrBadSignature)
}

func TestParseStrictness(t *testing.T) {
	f := newFixture(t)
	valid := string(body(t, f.token))
	rep := func(old, new string) string {
		if !strings.Contains(valid, old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return strings.Replace(valid, old, new, 1)
	}
	addField := func(field string) string { return strings.TrimSuffix(valid, "}") + "," + field + "}" }
	sigPart := f.token[strings.LastIndexByte(f.token, '.')+1:]
	claimsPart := f.token[len(capability.Prefix):strings.LastIndexByte(f.token, '.')]

	tokens := map[string]string{
		"empty":              "",
		"no prefix":          strings.TrimPrefix(f.token, "ocap1."),
		"upper prefix":       "OCAP1." + strings.TrimPrefix(f.token, "ocap1."),
		"other version":      "ocap2." + strings.TrimPrefix(f.token, "ocap1."),
		"two parts":          "ocap1." + claimsPart + sigPart,
		"four parts":         f.token + ".AAAA",
		"empty claims":       "ocap1.." + sigPart,
		"padding":            "ocap1." + claimsPart + "=." + sigPart,
		"std alphabet":       "ocap1." + strings.ReplaceAll(claimsPart, "_", "/") + "x+." + sigPart,
		"newline":            "ocap1." + claimsPart[:10] + "\n" + claimsPart[10:] + "." + sigPart,
		"space":              f.token + " ",
		"sig short":          f.token[:len(f.token)-1],
		"sig long":           f.token + "A",
		"sig padded":         f.token + "==",
		"sig trailing bits":  f.token[:len(f.token)-1] + "B",
		"claims len 1 mod 4": "ocap1." + claimsPart + "AAAAB." + sigPart,
		"too large":          dummySig(valid[:len(valid)-1] + strings.Repeat(" ", 3000) + "}"),
	}
	bodies := map[string]string{
		"not json":        "hello",
		"array":           "[]",
		"null":            "null",
		"empty object":    "{}",
		"trailing data":   valid + "{}",
		"unknown field":   addField(`"admin":true`),
		"duplicate field": addField(`"res":"other"`),
		"duplicate exp":   addField(`"exp":4102444800`),
		"case variant":    addField(`"EXP":4102444800`),
		"escaped key":     rep(`"res"`, `"r\u0065s"`),
		"v 2":             rep(`"v":1`, `"v":2`),
		"v string":        rep(`"v":1`, `"v":"1"`),
		"v float":         rep(`"v":1`, `"v":1.0`),
		"jti short":       rep(`"jti":"oQAAAAAAAAAAAAAAAAAAXg"`, `"jti":"oQAAAAAAAAAAAAAAAAAAX"`),
		"jti padded":      rep(`"jti":"oQAAAAAAAAAAAAAAAAAAXg"`, `"jti":"oQAAAAAAAAAAAAAAAAAAXg=="`),
		"jti zero":        rep(`"jti":"oQAAAAAAAAAAAAAAAAAAXg"`, `"jti":"AAAAAAAAAAAAAAAAAAAAAA"`),
		"jti bits":        rep(`"jti":"oQAAAAAAAAAAAAAAAAAAXg"`, `"jti":"oQAAAAAAAAAAAAAAAAAAXh"`),
		"iss no prefix":   rep(`"iss":"ed25519:`, `"iss":"`),
		"iss x25519":      rep(`"iss":"ed25519:`, `"iss":"x25519:`),
		"iss short":       rep(f.issuer.Public().Ed25519Text(), f.issuer.Public().Ed25519Text()[:40]),
		"sub null":        rep(`"sub":"`+f.subject.Public().Ed25519Text()+`"`, `"sub":null`),
		"aud empty":       rep(`"aud":"ctr_alice"`, `"aud":""`),
		"aud number":      rep(`"aud":"ctr_alice"`, `"aud":7`),
		"res control":     rep(`"res":"calendar"`, `"res":"cal\u0000endar"`),
		"res too long":    rep(`"res":"calendar"`, `"res":"`+strings.Repeat("r", capability.MaxNameSize+1)+`"`),
		"scope empty":     rep(`["read","list"]`, `[]`),
		"scope null":      rep(`["read","list"]`, `null`),
		"scope string":    rep(`["read","list"]`, `"read"`),
		"scope unknown":   rep(`["read","list"]`, `["read","execute"]`),
		"scope upper":     rep(`["read","list"]`, `["READ"]`),
		"scope duplicate": rep(`["read","list"]`, `["read","read"]`),
		"scope seven":     rep(`["read","list"]`, `["read","list","write","delete","admin","share","read"]`),
		"iat zero":        rep(`"iat":1700000000`, `"iat":0`),
		"iat negative":    rep(`"iat":1700000000`, `"iat":-1`),
		"iat float":       rep(`"iat":1700000000`, `"iat":1700000000.5`),
		"iat exponent":    rep(`"iat":1700000000`, `"iat":17e8`),
		"iat string":      rep(`"iat":1700000000`, `"iat":"1700000000"`),
		"exp == nbf":      rep(`"exp":1700604800`, `"exp":1700000000`),
		"exp < nbf":       rep(`"exp":1700604800`, `"exp":1600000000`),
		"exp year 10000":  rep(`"exp":1700604800`, `"exp":253402300800`),
		"exp overflow":    rep(`"exp":1700604800`, `"exp":99999999999999999999`),
		"max_calls 0":     addField(`"max_calls":0`),
		"max_calls -1":    addField(`"max_calls":-1`),
		"max_calls null":  addField(`"max_calls":null`),
		"max_calls huge":  addField(`"max_calls":1073741825`),
		"max_calls float": addField(`"max_calls":1.5`),
		"rate empty":      addField(`"rate":""`),
		"rate week":       addField(`"rate":"60/w"`),
		"rate upper":      addField(`"rate":"60/H"`),
		"rate zero":       addField(`"rate":"0/h"`),
		"rate leading 0":  addField(`"rate":"060/h"`),
		"rate space":      addField(`"rate":"60 /h"`),
		"rate sign":       addField(`"rate":"+60/h"`),
		"rate too big":    addField(`"rate":"1000001/s"`),
		"rate number":     addField(`"rate":60`),
		"tier upper":      rep(`"tier":"live"`, `"tier":"LIVE"`),
		"tier other":      rep(`"tier":"live"`, `"tier":"warm"`),
	}
	for _, k := range []string{"v", "jti", "iss", "sub", "aud", "res", "scope", "iat", "nbf", "exp", "tier"} {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(valid), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, k)
		b, _ := json.Marshal(m)
		bodies["missing "+k] = string(b)
	}
	for name, b := range bodies {
		tokens["claims "+name] = dummySig(b)
	}
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			_, err := capability.Parse(tok)
			wantOnly(t, err, capability.ErrMalformed)
			if strings.Contains(err.Error(), "ctr_alice") || strings.Contains(err.Error(), "calendar") {
				t.Errorf("error quotes input: %v", err)
			}
		})
	}

	accepted := map[string]string{
		"reordered":       `{"tier":"live","v":1,` + strings.TrimPrefix(rep(`,"tier":"live"`, ""), `{"v":1,`),
		"whitespace":      strings.ReplaceAll(strings.ReplaceAll(valid, ",\"", " ,\n\t\""), "\":", "\" : "),
		"optional fields": addField(`"max_calls":1,"rate":"1000000/s"`),
		"rate day":        addField(`"rate":"5/d"`),
		"cached":          rep(`"tier":"live"`, `"tier":"cached"`),
		"escaped value":   rep(`"res":"calendar"`, `"res":"cal\u00e9ndar"`),
		"all ops":         rep(`["read","list"]`, `["read","list","write","delete","admin","share"]`),
	}
	for name, b := range accepted {
		t.Run("ok "+name, func(t *testing.T) {
			if _, err := capability.Parse(dummySig(b)); err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
		})
	}
	// The size limit is on the whole token.
	pad := capability.MaxTokenSize - len(dummySig(valid))
	big := valid[:len(valid)-1] + strings.Repeat(" ", pad*3/4-2) + "}"
	if tok := dummySig(big); len(tok) > capability.MaxTokenSize {
		t.Fatalf("test bug: %d", len(tok))
	} else if _, err := capability.Parse(tok); err != nil {
		t.Fatalf("token of %d bytes: %v", len(tok), err)
	}
}

func TestParseRate(t *testing.T) {
	good := map[string]capability.Rate{
		"60/h":      {60, time.Hour},
		"1/s":       {1, time.Second},
		"100/m":     {100, time.Minute},
		"7/d":       {7, capability.Day},
		"1000000/s": {1_000_000, time.Second},
	}
	for s, want := range good {
		r, err := capability.ParseRate(s)
		if err != nil || r != want || r.String() != s {
			t.Errorf("ParseRate(%q) = %v, %v (String %q)", s, r, err, r.String())
		}
	}
	for _, s := range []string{"", "/h", "60", "60/", "60/hh", "60/H", "60/w", "0/h", "-1/h", "+1/h", "01/h",
		"1000001/s", "99999999999999999999/s", " 1/h", "1/h ", "1.5/h", "1//h", "٣/h"} {
		if r, err := capability.ParseRate(s); !errors.Is(err, capability.ErrMalformed) {
			t.Errorf("ParseRate(%q) = %v, %v; want ErrMalformed", s, r, err)
		}
	}
	if s := (capability.Rate{}).String(); s != "" {
		t.Errorf("zero Rate = %q", s)
	}
	if s := (capability.Rate{Calls: 1, Per: 2 * time.Hour}).String(); s != "invalid" {
		t.Errorf("invalid Rate = %q", s)
	}
}

func TestJTIText(t *testing.T) {
	j, err := capability.NewJTI()
	if err != nil {
		t.Fatal(err)
	}
	s := j.String()
	if len(s) != 22 || strings.ContainsAny(s, "=+/") {
		t.Fatalf("JTI text %q", s)
	}
	var back capability.JTI
	if err := back.UnmarshalText([]byte(s)); err != nil || back != j {
		t.Fatalf("round trip: %v %v", back, err)
	}
	b, _ := json.Marshal(map[string]capability.JTI{"jti": j})
	if string(b) != `{"jti":"`+s+`"}` {
		t.Fatalf("JSON %s", b)
	}
	for _, bad := range []string{"", s[:21], s + "A", s[:21] + "=", strings.Repeat("/", 22), s[:10] + "\n" + s[11:]} {
		if _, err := capability.ParseJTI(bad); !errors.Is(err, capability.ErrMalformed) {
			t.Errorf("ParseJTI(%q) = %v", bad, err)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)+$`)
	seen := map[string]bool{}
	for _, e := range allErrors {
		if !snake.MatchString(e.Code()) || seen[e.Code()] {
			t.Errorf("code %q not snake_case or duplicated", e.Code())
		}
		seen[e.Code()] = true
		if !strings.HasPrefix(e.Error(), "capability: ") {
			t.Errorf("message %q", e.Error())
		}
	}
	if capability.Code(errors.New("x")) != "" || capability.Code(nil) != "" {
		t.Error("Code of a foreign error is not empty")
	}
	wrapped := fmt.Errorf("execute: %w", capability.ErrExpired)
	if capability.Code(wrapped) != "capability_expired" {
		t.Error("Code does not see through wrapping")
	}
}

func TestParsedCopies(t *testing.T) {
	f := newFixture(t)
	p, err := capability.Parse(f.token)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Claims()
	c.Scope[0] = capability.OpAdmin
	p.SignedBytes()[0] = 'X'
	p.Signature()[0] ^= 1
	chk := f.check()
	chk.Operation = capability.OpAdmin
	wantOnly(t, p.Authorize(chk), capability.ErrScope)
	wantOnly(t, p.VerifySignature(), nil)
	var zero capability.Parsed
	wantOnly(t, zero.VerifySignature(), capability.ErrBadSignature)
	wantOnly(t, zero.Authorize(f.check()), capability.ErrMalformed)
}

func Example() {
	alice, _ := crypto.NewIdentity() // the issuing vault
	bob, _ := crypto.NewIdentity()   // the grantee
	now := time.Now()
	token, err := capability.Issue(alice, capability.Claims{
		Subject:  bob.Public().Ed25519,
		Audience: "ctr_alice",
		Resource: "calendar",
		Scope:    []capability.Op{capability.OpRead},
		Expires:  now.Add(7 * 24 * time.Hour),
		MaxCalls: 100,
	})
	if err != nil {
		panic(err)
	}

	// Later, in Alice's vault, for a request relayed from Bob:
	p, err := capability.Parse(token)
	if err != nil {
		panic(err)
	}
	chk := capability.Check{
		Self:      alice.Public().Ed25519,
		Audience:  "ctr_alice",
		Requester: bob.Public().Ed25519,
		Operation: capability.OpWrite,
		Revoked:   func(capability.JTI) bool { return false },
		Calls:     &capability.Limiter{},
	}
	fmt.Println(capability.Code(p.Authorize(chk)))
	chk.Operation = capability.OpRead
	fmt.Println(p.Authorize(chk))
	// Output:
	// capability_out_of_scope
	// <nil>
}

// TestMessage: messages for people carry no Go package prefix.
func TestMessage(t *testing.T) {
	for _, err := range []error{capability.ErrBudgetExhausted, capability.ErrRevoked, capability.ErrExpired} {
		if m := capability.Message(err); strings.HasPrefix(m, "capability:") || m == "" || !strings.Contains(err.Error(), m) {
			t.Errorf("Message(%v) = %q", err, m)
		}
	}
}
