package capability_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/capability"
)

func TestRevocationRoundTrip(t *testing.T) {
	f := newFixture(t)
	r, err := capability.SignRevocation(f.issuer, f.claims.JTI, "Bob left the team", t0)
	if err != nil {
		t.Fatal(err)
	}
	// Through the wire form.
	wire, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(wire), `{"revocation":"`) || !strings.Contains(string(wire), `","sig":"`) {
		t.Fatalf("wire form %s", wire)
	}
	var back capability.Revocation
	if err := json.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	c, err := capability.VerifyRevocation(back, f.issuer.Public().Ed25519, t0.Add(time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.JTI != f.claims.JTI || !c.Issuer.Equal(f.issuer.Public().Ed25519) || !c.Time.Equal(t0) || c.Reason != "Bob left the team" {
		t.Fatalf("claims %+v", c)
	}
	js, _ := base64.RawURLEncoding.DecodeString(r.Revocation)
	want := `{"jti":"` + f.claims.JTI.String() + `","issuer":"` + f.issuer.Public().Ed25519Text() + `","ts":1700000000,"reason":"Bob left the team"}`
	if string(js) != want {
		t.Fatalf("revocation JSON\n got %s\nwant %s", js, want)
	}
}

func TestRevocationErrors(t *testing.T) {
	f := newFixture(t)
	alice := f.issuer.Public().Ed25519
	good, err := capability.SignRevocation(f.issuer, f.claims.JTI, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	byMallory, _ := capability.SignRevocation(f.other, f.claims.JTI, "", t0)
	js, _ := base64.RawURLEncoding.DecodeString(good.Revocation)
	reencode := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	// Mallory's signature on a revocation naming Alice as issuer.
	forged := capability.Revocation{Revocation: good.Revocation, Sig: byMallory.Sig}
	tampered := capability.Revocation{
		Revocation: reencode(strings.Replace(string(js), `"ts":1700000000`, `"ts":1700000001`, 1)),
		Sig:        good.Sig,
	}
	// A token signature is not a revocation signature (domain separation).
	tokSig := f.token[strings.LastIndexByte(f.token, '.')+1:]
	crossProto := capability.Revocation{
		Revocation: f.token[len(capability.Prefix):strings.LastIndexByte(f.token, '.')],
		Sig:        tokSig,
	}
	withJSON := func(s string) capability.Revocation {
		return capability.Revocation{Revocation: reencode(s), Sig: good.Sig}
	}
	cases := []struct {
		name   string
		r      capability.Revocation
		issuer []byte
		now    time.Time
		skew   time.Duration
		want   *capability.Error
	}{
		{"valid", good, alice, t0, 0, nil},
		{"valid at -5m", good, alice, t0.Add(5 * time.Minute), 0, nil},
		{"valid at +5m", good, alice, t0.Add(-5 * time.Minute), 0, nil},
		{"stale", good, alice, t0.Add(5*time.Minute + time.Second), 0, capability.ErrRevocationStale},
		{"future", good, alice, t0.Add(-5*time.Minute - time.Second), 0, capability.ErrRevocationFuture},
		{"custom skew", good, alice, t0.Add(9 * time.Minute), 10 * time.Minute, nil},
		{"not the token's issuer", byMallory, alice, t0, 0, capability.ErrRevocationSignature},
		{"forged issuer field", forged, alice, t0, 0, capability.ErrRevocationSignature},
		{"tampered", tampered, alice, t0, 0, capability.ErrRevocationSignature},
		{"no issuer key", good, nil, t0, 0, capability.ErrRevocationSignature},
		{"signature beats staleness", byMallory, alice, t0.Add(time.Hour), 0, capability.ErrRevocationSignature},
		{"token parts as revocation", crossProto, alice, t0, 0, capability.ErrRevocationMalformed},
		{"empty", capability.Revocation{}, alice, t0, 0, capability.ErrRevocationMalformed},
		{"sig short", capability.Revocation{Revocation: good.Revocation, Sig: good.Sig[1:]}, alice, t0, 0, capability.ErrRevocationMalformed},
		{"padded", capability.Revocation{Revocation: good.Revocation + "=", Sig: good.Sig}, alice, t0, 0, capability.ErrRevocationMalformed},
		{"newline", capability.Revocation{Revocation: good.Revocation[:5] + "\n" + good.Revocation[5:], Sig: good.Sig}, alice, t0, 0, capability.ErrRevocationMalformed},
		{"too large", withJSON(strings.TrimSuffix(string(js), "}") + strings.Repeat(" ", 1100) + "}"), alice, t0, 0, capability.ErrRevocationMalformed},
		{"unknown field", withJSON(strings.TrimSuffix(string(js), "}") + `,"x":1}`), alice, t0, 0, capability.ErrRevocationMalformed},
		{"duplicate field", withJSON(strings.TrimSuffix(string(js), "}") + `,"ts":1}`), alice, t0, 0, capability.ErrRevocationMalformed},
		{"missing reason", withJSON(strings.Replace(string(js), `,"reason":""`, "", 1)), alice, t0, 0, capability.ErrRevocationMalformed},
		{"bad jti", withJSON(strings.Replace(string(js), f.claims.JTI.String(), "AAAA", 1)), alice, t0, 0, capability.ErrRevocationMalformed},
		{"ts zero", withJSON(strings.Replace(string(js), `"ts":1700000000`, `"ts":0`, 1)), alice, t0, 0, capability.ErrRevocationMalformed},
		{"reason too long", withJSON(strings.Replace(string(js), `"reason":""`, `"reason":"`+strings.Repeat("r", 257)+`"`, 1)), alice, t0, 0, capability.ErrRevocationMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := capability.VerifyRevocation(tc.r, tc.issuer, tc.now, tc.skew)
			wantOnly(t, err, tc.want)
		})
	}
}

func TestSignRevocationRejects(t *testing.T) {
	f := newFixture(t)
	for name, fn := range map[string]func() error{
		"zero jti": func() error {
			_, err := capability.SignRevocation(f.issuer, capability.JTI{}, "", t0)
			return err
		},
		"long reason": func() error {
			_, err := capability.SignRevocation(f.issuer, f.claims.JTI, strings.Repeat("r", 257), t0)
			return err
		},
		"reason not utf-8": func() error {
			_, err := capability.SignRevocation(f.issuer, f.claims.JTI, "\xff", t0)
			return err
		},
		"zero time": func() error {
			_, err := capability.SignRevocation(f.issuer, f.claims.JTI, "", time.Time{})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) { wantOnly(t, fn(), capability.ErrRevocationMalformed) })
	}
}

// TestVerifyStoredRevocation: an old revocation shown again still
// verifies with the issuer's key (no freshness window), and only with it.
func TestVerifyStoredRevocation(t *testing.T) {
	f := newFixture(t)
	r, err := capability.SignRevocation(f.issuer, f.claims.JTI, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := capability.VerifyStoredRevocation(r, f.issuer.Public().Ed25519)
	if err != nil || c.JTI != f.claims.JTI {
		t.Fatalf("stored revocation: %+v %v", c, err)
	}
	if _, err := capability.VerifyRevocation(r, f.issuer.Public().Ed25519, t0.Add(time.Hour), 0); err == nil {
		t.Fatal("an hour-old revocation passed the freshness check")
	}
	if _, err := capability.VerifyStoredRevocation(r, f.other.Public().Ed25519); err == nil {
		t.Fatal("verified with another key")
	}
	forged, _ := capability.SignRevocation(f.other, f.claims.JTI, "", t0)
	if _, err := capability.VerifyStoredRevocation(forged, f.issuer.Public().Ed25519); err == nil {
		t.Fatal("a revocation signed by someone else verified as the issuer's")
	}
}
