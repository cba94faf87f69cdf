package crypto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestIdentityRoundTrip(t *testing.T) {
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	b := id.Bytes()
	if len(b) != IdentitySize {
		t.Fatalf("Bytes = %d bytes", len(b))
	}
	id2, err := IdentityFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := id.Public(), id2.Public()
	if !bytes.Equal(p1.Ed25519, p2.Ed25519) || p1.X25519 != p2.X25519 {
		t.Error("public keys differ after Bytes/IdentityFromBytes")
	}
	if !Verify(p1.Ed25519, []byte("m"), id2.Sign([]byte("m"))) {
		t.Error("signature by restored identity does not verify")
	}
	if _, err := IdentityFromBytes(b[:63]); err == nil {
		t.Error("short identity accepted")
	}
	other, _ := NewIdentity()
	if bytes.Equal(other.Public().Ed25519, p1.Ed25519) || other.Public().X25519 == p1.X25519 {
		t.Error("NewIdentity repeated a key")
	}
	if Verify(p1.Ed25519[:31], []byte("m"), id.Sign([]byte("m"))) || Verify(p1.Ed25519, []byte("m"), nil) {
		t.Error("Verify accepted a malformed key or signature")
	}
}

func TestPublicKeysText(t *testing.T) {
	id, _ := NewIdentity()
	pub := id.Public()
	ed, x := pub.Ed25519Text(), pub.X25519Text()
	if !strings.HasPrefix(ed, "ed25519:") || !strings.HasPrefix(x, "x25519:") || strings.ContainsAny(ed+x, "=+/") {
		t.Fatalf("text forms %q %q", ed, x)
	}
	b, err := json.Marshal(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"ed25519":"` + ed + `","x25519":"` + x + `"}`; string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
	var back PublicKeys
	if err := json.Unmarshal(b, &back); err != nil || !bytes.Equal(back.Ed25519, pub.Ed25519) || back.X25519 != pub.X25519 {
		t.Errorf("JSON round trip: %v", err)
	}
	for _, bad := range []string{
		`{"ed25519":"` + x + `","x25519":"` + x + `"}`,
		`{"ed25519":"` + ed + `","x25519":"` + ed + `"}`,
		`{"ed25519":"` + ed + `=","x25519":"` + x + `"}`,
		`{"ed25519":"` + ed[:len(ed)-2] + `","x25519":"` + x + `"}`,
		`{"ed25519":"` + ed + `"}`,
	} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestBox(t *testing.T) {
	alice, _ := NewIdentity()
	bob, _ := NewIdentity()
	eve, _ := NewIdentity()
	ap, bp, ep := alice.Public().X25519, bob.Public().X25519, eve.Public().X25519
	sealed, err := alice.SealBox(&bp, []byte("hello bob"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := bob.OpenBox(&ap, sealed); err != nil || string(got) != "hello bob" {
		t.Fatalf("OpenBox = %q, %v", got, err)
	}
	if _, err := bob.OpenBox(&ep, sealed); err != ErrDecrypt {
		t.Error("OpenBox accepted the wrong sender")
	}
	if _, err := eve.OpenBox(&ap, sealed); err != ErrDecrypt {
		t.Error("a third party opened the box")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := bob.OpenBox(&ap, sealed); err != ErrDecrypt {
		t.Error("OpenBox accepted a tampered box")
	}
	var zero [32]byte // a low-order point
	if _, err := alice.SealBox(&zero, []byte("x")); err == nil {
		t.Error("SealBox to a low-order key accepted")
	}
	if _, err := bob.OpenBox(&zero, sealed); err != ErrDecrypt {
		t.Error("OpenBox from a low-order key accepted")
	}
}

func TestKeyRecord(t *testing.T) {
	id, _ := NewIdentity()
	s, err := id.SignKeyRecord(KeyRecord{Subject: "user-1", IssuedAt: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	r, err := VerifyKeyRecord(s)
	if err != nil {
		t.Fatal(err)
	}
	pub := id.Public()
	if r != (KeyRecord{Ed25519: pub.Ed25519Text(), X25519: pub.X25519Text(), Subject: "user-1", IssuedAt: 1700000000}) {
		t.Errorf("record = %+v", r)
	}
	body, _ := base64.RawURLEncoding.DecodeString(s.Record)
	if want := `{"ed25519":"` + pub.Ed25519Text() + `","x25519":"` + pub.X25519Text() + `","subject":"user-1","iat":1700000000}`; string(body) != want {
		t.Errorf("record JSON = %s, want %s", body, want)
	}
	if j, _ := json.Marshal(s); !strings.HasPrefix(string(j), `{"record":"`) || !strings.Contains(string(j), `","sig":"`) {
		t.Errorf("wire form %s", j)
	}
	// The signature is over the domain-separated message, not bare JSON.
	if Verify(pub.Ed25519, body, mustB64(t, s.Sig)) {
		t.Error("signature verifies over the bare JSON: no domain separation")
	}

	other, _ := NewIdentity()
	resign := func(body string) SignedKeyRecord { // signed correctly by other, over body
		return SignedKeyRecord{Record: base64.RawURLEncoding.EncodeToString([]byte(body)), Sig: base64.RawURLEncoding.EncodeToString(other.Sign(keyRecordMessage([]byte(body))))}
	}
	op := other.Public()
	good := `{"ed25519":"` + op.Ed25519Text() + `","x25519":"` + op.X25519Text() + `","subject":"u","iat":1}`
	if _, err := VerifyKeyRecord(resign(good)); err != nil {
		t.Fatalf("hand-made record rejected: %v", err)
	}
	// Parsing uses the transmitted bytes: whitespace that a re-serialisation
	// would drop is fine because the signature covers exactly these bytes.
	if _, err := VerifyKeyRecord(resign(" " + good + "\n")); err != nil {
		t.Errorf("record with whitespace rejected: %v", err)
	}
	flipped := []byte(s.Record)
	flipped[10] ^= 1
	for name, bad := range map[string]SignedKeyRecord{
		"record changed":   {Record: string(flipped), Sig: s.Sig},
		"sig changed":      {Record: s.Record, Sig: other.signedB64(t)},
		"other's key":      {Record: resign(good).Record, Sig: s.Sig},
		"padded base64":    {Record: s.Record + "=", Sig: s.Sig},
		"std base64":       {Record: base64.StdEncoding.EncodeToString(body), Sig: s.Sig},
		"empty":            {},
		"unknown field":    resign(strings.TrimSuffix(good, "}") + `,"admin":true}`),
		"trailing data":    resign(good + "{}"),
		"two objects":      resign(good + good),
		"no subject":       resign(strings.Replace(good, `"u"`, `""`, 1)),
		"bad iat":          resign(strings.Replace(good, `"iat":1`, `"iat":0`, 1)),
		"bad x25519":       resign(strings.Replace(good, "x25519:", "x448:", 1)),
		"not json":         resign("hello"),
		"too large":        resign(good + strings.Repeat(" ", MaxKeyRecordSize)),
		"signed by holder": {Record: resign(good).Record, Sig: base64.RawURLEncoding.EncodeToString(id.Sign(keyRecordMessage([]byte(good))))},
	} {
		if _, err := VerifyKeyRecord(bad); !errors.Is(err, ErrKeyRecord) {
			t.Errorf("%s: err = %v, want ErrKeyRecord", name, err)
		}
	}
	// Signing refuses records about other keys or without a subject.
	if _, err := id.SignKeyRecord(KeyRecord{Ed25519: op.Ed25519Text(), Subject: "u"}); err == nil {
		t.Error("signed a record for another identity's key")
	}
	if _, err := id.SignKeyRecord(KeyRecord{}); err == nil {
		t.Error("signed a record without subject")
	}
	if s, err := id.SignKeyRecord(KeyRecord{Subject: "u"}); err != nil {
		t.Error(err)
	} else if r, _ := VerifyKeyRecord(s); r.IssuedAt == 0 {
		t.Error("IssuedAt not filled in")
	}
}

func (id *Identity) signedB64(t *testing.T) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString(id.Sign([]byte("something else")))
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTranscriptRecords(t *testing.T) {
	dek, _ := NewDEK()
	key, _ := TranscriptKey(&dek)
	var recs [][]byte
	for i := range uint64(3) {
		r, err := SealRecord(&key, "session-a", i, []byte{byte('a' + i)})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	for i, r := range recs {
		got, err := OpenRecord(&key, "session-a", uint64(i), r)
		if err != nil || string(got) != string(rune('a'+i)) {
			t.Errorf("record %d: %q, %v", i, got, err)
		}
	}
	otherDEK, _ := NewDEK()
	otherKey, _ := TranscriptKey(&otherDEK)
	secretsKey, _ := DeriveSubKey(&dek, LabelSecrets)
	for name, open := range map[string]func() ([]byte, error){
		"swapped 0 and 1":      func() ([]byte, error) { return OpenRecord(&key, "session-a", 0, recs[1]) },
		"shifted after delete": func() ([]byte, error) { return OpenRecord(&key, "session-a", 1, recs[2]) },
		"other session":        func() ([]byte, error) { return OpenRecord(&key, "session-b", 0, recs[0]) },
		"session prefix":       func() ([]byte, error) { return OpenRecord(&key, "session-", 0, recs[0]) },
		"other vault":          func() ([]byte, error) { return OpenRecord(&otherKey, "session-a", 0, recs[0]) },
		"secrets key":          func() ([]byte, error) { return OpenRecord(&secretsKey, "session-a", 0, recs[0]) },
		"truncated":            func() ([]byte, error) { return OpenRecord(&key, "session-a", 0, recs[0][:10]) },
		"empty session":        func() ([]byte, error) { return OpenRecord(&key, "", 0, recs[0]) },
	} {
		if got, err := open(); err != ErrDecrypt {
			t.Errorf("%s: %q, %v; want ErrDecrypt", name, got, err)
		}
	}
	// The AD encoding is injective: a session id cannot absorb index bytes.
	if bytes.Equal(recordAD("a", 0x6200000000000000), recordAD("ab", 0)) {
		t.Error("recordAD collision")
	}
	if got := recordAD("s", 258); string(got) != "ocmt/v1/transcript\x00\x00\x00\x01s\x00\x00\x00\x00\x00\x00\x01\x02" {
		t.Errorf("recordAD = %q", got)
	}
	if _, err := SealRecord(&key, "", 0, nil); err == nil {
		t.Error("empty session id accepted")
	}
	if _, err := SealRecord(&key, strings.Repeat("x", MaxSessionIDLen+1), 0, nil); err == nil {
		t.Error("long session id accepted")
	}
}
