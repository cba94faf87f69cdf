package crypto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// newTestVault returns a vault over body with a random KEK (no KDF run).
func newTestVault(t testing.TB, body []byte) (*VaultFile, KEK, DEK) {
	t.Helper()
	kek := randomKEK(t)
	salt, _ := NewSalt()
	v, dek, err := NewVaultFile(&kek, salt, DefaultKDFParams(), body)
	if err != nil {
		t.Fatal(err)
	}
	return v, kek, dek
}

// splitVault returns the header and sealed body of a marshalled vault.
func splitVault(t testing.TB, b []byte) (header, body []byte) {
	t.Helper()
	n := binary.BigEndian.Uint32(b[8:])
	return b[12 : 12+n], b[16+n:]
}

// assembleVault builds file bytes from a header and a sealed body.
func assembleVault(header, body []byte) []byte {
	out := []byte(VaultMagic)
	out = binary.BigEndian.AppendUint32(out, uint32(len(header)))
	out = append(out, header...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
	return append(out, body...)
}

func TestVaultFileRoundTrip(t *testing.T) {
	body := []byte(`{"apikeys":{"anthropic":"sk-test"}}`)
	v, kek, dek := newTestVault(t, body)
	b := v.Marshal()
	if !bytes.HasPrefix(b, []byte("OCMTVLT1")) {
		t.Fatalf("magic: %q", b[:8])
	}
	header, sealed := splitVault(t, b)
	if len(sealed) != len(body)+Overhead || len(b) != 16+len(header)+len(sealed) {
		t.Errorf("layout: header %d, body %d, file %d", len(header), len(sealed), len(b))
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(header, &h); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"v", "kdf", "salt", "created", "wraps"} {
		if _, ok := h[k]; !ok {
			t.Errorf("header lacks %q: %s", k, header)
		}
	}
	if string(h["v"]) != "1" || !strings.HasPrefix(string(header), `{"v":1,"kdf":{"alg":"argon2id","memoryKiB":65536,"iterations":3,"parallelism":4},"salt":"`) {
		t.Errorf("header = %s", header)
	}
	if bytes.Contains(b, body) {
		t.Error("body plaintext visible in the file")
	}

	p, err := ParseVaultFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Marshal(), b) {
		t.Error("Marshal(Parse(b)) != b")
	}
	if p.KDF() != DefaultKDFParams() || !bytes.Equal(p.Salt(), v.Salt()) || len(p.Salt()) != SaltSize {
		t.Errorf("KDF %+v salt %x", p.KDF(), p.Salt())
	}
	if d := time.Since(p.Created()); d < 0 || d > time.Minute {
		t.Errorf("Created = %v", p.Created())
	}
	got, err := p.Unlock(&kek)
	if err != nil || !got.Equal(&dek) {
		t.Fatalf("Unlock: %v", err)
	}
	pt, err := p.OpenBody(&got)
	if err != nil || !bytes.Equal(pt, body) {
		t.Fatalf("OpenBody = %q, %v", pt, err)
	}

	// A wrong password is ErrDecrypt.
	wrong := randomKEK(t)
	if _, err := p.Unlock(&wrong); err != ErrDecrypt {
		t.Errorf("Unlock(wrong) = %v", err)
	}
	wrongDEK, _ := NewDEK()
	if _, err := p.OpenBody(&wrongDEK); err != ErrDecrypt {
		t.Errorf("OpenBody(wrong DEK) = %v", err)
	}

	// SealBody replaces the body and keeps the header.
	if err := p.SealBody(&got, []byte("v2")); err != nil {
		t.Fatal(err)
	}
	p2, err := ParseVaultFile(p.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := p2.Unlock(&kek)
	if pt, err := p2.OpenBody(&d2); err != nil || string(pt) != "v2" {
		t.Errorf("after SealBody: %q, %v", pt, err)
	}
	if err := p2.SealBody(&wrongDEK, []byte("lost")); err != ErrDecrypt {
		t.Errorf("SealBody with a wrong DEK = %v, want ErrDecrypt", err)
	}
	if err := p2.SealBody(&d2, make([]byte, MaxBodySize+1)); !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("SealBody(too large) = %v", err)
	}
	// Empty body is fine.
	e, _, _ := newTestVault(t, nil)
	if _, err := ParseVaultFile(e.Marshal()); err != nil {
		t.Errorf("empty body: %v", err)
	}
}

func TestNewVaultFileErrors(t *testing.T) {
	kek := randomKEK(t)
	salt, _ := NewSalt()
	bad := DefaultKDFParams()
	bad.Iterations = 0
	for name, f := range map[string]func() error{
		"params": func() error { _, _, err := NewVaultFile(&kek, salt, bad, nil); return err },
		"salt":   func() error { _, _, err := NewVaultFile(&kek, salt[:7], DefaultKDFParams(), nil); return err },
		"too long": func() error {
			_, _, err := NewVaultFile(&kek, salt, DefaultKDFParams(), make([]byte, MaxBodySize+1))
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestVaultFileHeaderTampering(t *testing.T) {
	v, kek, dek := newTestVault(t, []byte("secret"))
	b := v.Marshal()
	header, body := splitVault(t, b)
	weaker := strings.NewReplacer(`"memoryKiB":65536`, `"memoryKiB":32768`, `"iterations":3`, `"iterations":2`)
	for name, h := range map[string]string{
		"weaker kdf":          weaker.Replace(string(header)),
		"later created":       strings.Replace(string(header), `"created":`, `"created":1`, 1),
		"whitespace":          string(header) + " ",
		"reordered key space": strings.Replace(string(header), `{"v":1,`, `{"v":1 ,`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			p, err := ParseVaultFile(assembleVault([]byte(h), body))
			if err != nil {
				t.Fatalf("parse: %v", err) // still well-formed; caught by OpenBody
			}
			d, err := p.Unlock(&kek)
			if err != nil {
				t.Fatalf("unlock: %v", err)
			}
			if _, err := p.OpenBody(&d); err != ErrDecrypt {
				t.Errorf("OpenBody after header change = %v, want ErrDecrypt", err)
			}
			if err := p.SealBody(&dek, []byte("x")); err != ErrDecrypt {
				t.Errorf("SealBody on a tampered file = %v, want ErrDecrypt", err)
			}
		})
	}

	// Parameters below the floor, or a degenerate salt, are refused at
	// parse time, before anyone derives a key with them (ocmt issue 8).
	for name, h := range map[string]string{
		"kdf below floor": strings.NewReplacer(`"memoryKiB":65536`, `"memoryKiB":8192`, `"iterations":3`, `"iterations":1`).Replace(string(header)),
		"one iteration":   strings.Replace(string(header), `"iterations":3`, `"iterations":1`, 1),
		"zero salt":       regexp.MustCompile(`"salt":"[^"]*"`).ReplaceAllString(string(header), `"salt":"AAAAAAAAAAAAAAAAAAAAAA=="`),
	} {
		_, err := ParseVaultFile(assembleVault([]byte(h), body))
		if !errors.Is(err, ErrVaultFormat) || !(errors.Is(err, ErrKDFWeak) || errors.Is(err, ErrSaltDegenerate)) {
			t.Errorf("%s: ParseVaultFile = %v, want ErrVaultFormat and ErrKDFWeak or ErrSaltDegenerate", name, err)
		}
	}

	// A password wrap moved from another vault (other salt) does not unlock.
	v2, kek2, _ := newTestVault(t, []byte("other"))
	var h1, h2 vaultHeader
	json.Unmarshal(header, &h1)
	h2b, _ := splitVault(t, v2.Marshal())
	json.Unmarshal(h2b, &h2)
	h1.Wraps = h2.Wraps
	moved, _ := json.Marshal(h1)
	p, err := ParseVaultFile(assembleVault(moved, body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Unlock(&kek2); err != ErrDecrypt {
		t.Errorf("moved wrap unlocked: %v", err)
	}
	// Body of another vault under this header fails.
	_, body2 := splitVault(t, v2.Marshal())
	p, _ = ParseVaultFile(assembleVault(header, body2))
	d, _ := p.Unlock(&kek)
	if _, err := p.OpenBody(&d); err != ErrDecrypt {
		t.Errorf("foreign body opened: %v", err)
	}
}

func TestParseVaultFileStrict(t *testing.T) {
	v, _, _ := newTestVault(t, []byte("x"))
	b := v.Marshal()
	header, body := splitVault(t, b)
	hdr := func(from, to string) []byte {
		if !strings.Contains(string(header), from) {
			t.Fatalf("header lacks %q", from)
		}
		return assembleVault([]byte(strings.Replace(string(header), from, to, 1)), body)
	}
	var h vaultHeader
	json.Unmarshal(header, &h)
	withHeader := func(f func(*vaultHeader)) []byte {
		c := h
		c.Wraps = append([]Wrap(nil), h.Wraps...)
		f(&c)
		raw, _ := json.Marshal(c)
		return assembleVault(raw, body)
	}
	extraWrap := Wrap{Kind: WrapPasskey, ID: "d1", Wrapped: make([]byte, WrappedDEKSize)}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrVaultFormat},
		{"magic only", []byte(VaultMagic), ErrVaultFormat},
		{"bad magic", append([]byte("OCMTVLT2"), b[8:]...), ErrVaultFormat},
		{"truncated", b[:len(b)-1], ErrVaultFormat},
		{"trailing", append(bytes.Clone(b), 0), ErrVaultFormat},
		{"header too long", assembleVault(make([]byte, MaxHeaderSize+1), body), ErrVaultFormat},
		{"body too short", assembleVault(header, body[:Overhead-1]), ErrVaultFormat},
		{"huge header length", append([]byte(VaultMagic), 0xff, 0xff, 0xff, 0xff), ErrVaultFormat},
		{"version 2", hdr(`"v":1`, `"v":2`), ErrVaultVersion},
		{"version 0", hdr(`"v":1`, `"v":0`), ErrVaultVersion},
		{"version string", hdr(`"v":1`, `"v":"1"`), ErrVaultFormat},
		{"no version", hdr(`"v":1,`, ``), ErrVaultFormat},
		{"not json", assembleVault([]byte("nope"), body), ErrVaultFormat},
		{"json array", assembleVault([]byte("[1]"), body), ErrVaultFormat},
		{"trailing json", assembleVault(append(bytes.Clone(header), "{}"...), body), ErrVaultFormat},
		{"unknown field", hdr(`"v":1,`, `"v":1,"x":1,`), ErrVaultFormat},
		{"bad kdf", hdr(`"iterations":3`, `"iterations":0`), ErrVaultFormat},
		{"bad alg", hdr(`"argon2id"`, `"scrypt"`), ErrVaultFormat},
		{"short salt", withHeader(func(h *vaultHeader) { h.Salt = h.Salt[:7] }), ErrVaultFormat},
		{"negative created", withHeader(func(h *vaultHeader) { h.Created = -1 }), ErrVaultFormat},
		{"no wraps", withHeader(func(h *vaultHeader) { h.Wraps = nil }), ErrVaultFormat},
		{"two password wraps", withHeader(func(h *vaultHeader) { h.Wraps = append(h.Wraps, Wrap{Kind: "password", Wrapped: h.Wraps[0].Wrapped}) }), ErrVaultFormat},
		{"no password wrap", withHeader(func(h *vaultHeader) { h.Wraps[0].Kind = "recovery" }), ErrVaultFormat},
		{"short wrap", withHeader(func(h *vaultHeader) { h.Wraps[0].Wrapped = h.Wraps[0].Wrapped[:71] }), ErrVaultFormat},
		{"bad kind", withHeader(func(h *vaultHeader) { h.Wraps = append(h.Wraps, Wrap{Kind: "Device", Wrapped: extraWrap.Wrapped}) }), ErrVaultFormat},
		{"bad id", withHeader(func(h *vaultHeader) {
			h.Wraps = append(h.Wraps, Wrap{Kind: "device", ID: "a/b", Wrapped: extraWrap.Wrapped})
		}), ErrVaultFormat},
		{"duplicate wrap", withHeader(func(h *vaultHeader) { h.Wraps = append(h.Wraps, extraWrap, extraWrap) }), ErrVaultFormat},
		{"password with id", withHeader(func(h *vaultHeader) { h.Wraps[0].ID = "x" }), ErrVaultFormat},
		{"too many wraps", withHeader(func(h *vaultHeader) {
			for i := range MaxWraps {
				h.Wraps = append(h.Wraps, Wrap{Kind: "device", ID: strings.Repeat("d", i+1), Wrapped: extraWrap.Wrapped})
			}
		}), ErrVaultFormat},
	} {
		if _, err := ParseVaultFile(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A valid extra wrap parses.
	if _, err := ParseVaultFile(withHeader(func(h *vaultHeader) { h.Wraps = append(h.Wraps, extraWrap) })); err != nil {
		t.Errorf("extra device wrap: %v", err)
	}
	// Parse copies its input.
	c := bytes.Clone(b)
	p, _ := ParseVaultFile(c)
	clear(c)
	if !bytes.Equal(p.Marshal(), b) {
		t.Error("ParseVaultFile kept a reference to its input")
	}
}

func TestVaultFileRewrap(t *testing.T) {
	body := []byte("the secrets")
	v, oldKEK, dek := newTestVault(t, body)
	recKey := randomKEK(t)
	recWrap, _ := WrapDEK(&recKey, &dek, WrapAD(WrapPhrase, nil))
	if err := v.PutWrap(&dek, Wrap{Kind: WrapPhrase, Wrapped: recWrap}); err != nil {
		t.Fatal(err)
	}
	newKEK := randomKEK(t)
	newSalt, _ := NewSalt()
	newParams := KDFParams{Alg: KDFArgon2id, MemoryKiB: 128 * 1024, Iterations: 4, Parallelism: 2}
	before := v.Marshal()

	wrong := randomKEK(t)
	if err := v.Rewrap(&wrong, &newKEK, newSalt, newParams); err != ErrDecrypt {
		t.Fatalf("Rewrap with wrong old key = %v", err)
	}
	bad := newParams
	bad.Alg = "x"
	if err := v.Rewrap(&oldKEK, &newKEK, newSalt, bad); err == nil {
		t.Error("Rewrap accepted bad params")
	}
	if err := v.Rewrap(&oldKEK, &newKEK, newSalt[:4], newParams); err == nil {
		t.Error("Rewrap accepted a short salt")
	}
	if !bytes.Equal(v.Marshal(), before) {
		t.Fatal("failed Rewrap changed the file")
	}

	if err := v.Rewrap(&oldKEK, &newKEK, newSalt, newParams); err != nil {
		t.Fatal(err)
	}
	p, err := ParseVaultFile(v.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if p.KDF() != newParams || !bytes.Equal(p.Salt(), newSalt) || !p.Created().Equal(v.Created()) {
		t.Errorf("header after Rewrap: %+v %x", p.KDF(), p.Salt())
	}
	if _, err := p.Unlock(&oldKEK); err != ErrDecrypt {
		t.Errorf("old password still unlocks: %v", err)
	}
	d, err := p.Unlock(&newKEK)
	if err != nil || !d.Equal(&dek) {
		t.Fatalf("new password: %v (same DEK: %v)", err, d.Equal(&dek))
	}
	if pt, err := p.OpenBody(&d); err != nil || !bytes.Equal(pt, body) {
		t.Errorf("body after Rewrap = %q, %v", pt, err)
	}
	// The old file (old header as AD) with the new body does not open: the
	// header change required the re-seal.
	oldHeader, _ := splitVault(t, before)
	_, newBody := splitVault(t, p.Marshal())
	mixed, _ := ParseVaultFile(assembleVault(oldHeader, newBody))
	if _, err := mixed.OpenBody(&dek); err != ErrDecrypt {
		t.Error("new body opens under the old header")
	}
	// The recovery wrap survived the password change.
	var rec []byte
	for _, w := range p.Wraps() {
		if w.Kind == WrapPhrase {
			rec = w.Wrapped
		}
	}
	if d, err := UnwrapDEK(&recKey, rec, WrapAD(WrapPhrase, nil)); err != nil || !d.Equal(&dek) {
		t.Errorf("recovery wrap after Rewrap: %v", err)
	}
}

func TestVaultFileWraps(t *testing.T) {
	v, kek, dek := newTestVault(t, []byte("b"))
	devKey := randomKEK(t)
	w1, _ := WrapDEK(&devKey, &dek, WrapAD(WrapPasskey, []byte("d1")))
	if err := v.PutWrap(&dek, Wrap{Kind: WrapPasskey, ID: "d1", Wrapped: w1}); err != nil {
		t.Fatal(err)
	}
	if err := v.PutWrap(&dek, Wrap{Kind: WrapPasskey, ID: "d2", Wrapped: w1}); err != nil {
		t.Fatal(err)
	}
	if err := v.PutWrap(&dek, Wrap{Kind: WrapPasskey, ID: "d1", Wrapped: w1}); err != nil { // replace
		t.Fatal(err)
	}
	if n := len(v.Wraps()); n != 3 {
		t.Errorf("%d wraps, want 3", n)
	}
	wrongDEK, _ := NewDEK()
	for name, err := range map[string]error{
		"password kind": v.PutWrap(&dek, Wrap{Kind: WrapPassword, Wrapped: w1}),
		"bad size":      v.PutWrap(&dek, Wrap{Kind: WrapPasskey, Wrapped: w1[:5]}),
		"bad kind":      v.PutWrap(&dek, Wrap{Kind: "", Wrapped: w1}),
		"wrong DEK":     v.PutWrap(&wrongDEK, Wrap{Kind: WrapPasskey, ID: "d3", Wrapped: w1}),
		"remove pw":     v.RemoveWrap(&dek, WrapPassword, ""),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := v.RemoveWrap(&dek, WrapPasskey, "d2"); err != nil {
		t.Fatal(err)
	}
	p, err := ParseVaultFile(v.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	ws := p.Wraps()
	if len(ws) != 2 || ws[0].Kind != WrapPassword || ws[1].ID != "d1" {
		t.Errorf("wraps = %+v", ws)
	}
	if d, err := UnwrapDEK(&devKey, ws[1].Wrapped, WrapAD(WrapPasskey, []byte("d1"))); err != nil || !d.Equal(&dek) {
		t.Errorf("device unwrap: %v", err)
	}
	d, _ := p.Unlock(&kek)
	if pt, err := p.OpenBody(&d); err != nil || string(pt) != "b" {
		t.Errorf("body: %q %v", pt, err)
	}
	// Removing a wrap from the header without re-sealing is detected.
	h, body := splitVault(t, p.Marshal())
	var hh vaultHeader
	json.Unmarshal(h, &hh)
	hh.Wraps = hh.Wraps[:1]
	raw, _ := json.Marshal(hh)
	q, _ := ParseVaultFile(assembleVault(raw, body))
	if _, err := q.OpenBody(&dek); err != ErrDecrypt {
		t.Error("dropped wrap went unnoticed")
	}
}

// FuzzParseVaultFile checks that ParseVaultFile never panics and that what
// it accepts marshals back to the same bytes. Seeds: a valid file, a file
// with an extra wrap and several mutations; run longer with
// go test -run=^$ -fuzz=FuzzParseVaultFile -fuzztime=30s ./crypto/
func FuzzParseVaultFile(f *testing.F) {
	v, _, dek := newTestVault(f, []byte(`{"k":"v"}`))
	b := v.Marshal()
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add(append(bytes.Clone(b), 0))
	f.Add([]byte(VaultMagic))
	f.Add([]byte{})
	header, body := splitVault(f, b)
	f.Add(assembleVault([]byte(strings.Replace(string(header), `"v":1`, `"v":2`, 1)), body))
	f.Add(assembleVault([]byte(`{"v":1}`), body))
	f.Add(assembleVault([]byte(`{"v":1,"kdf":null,"salt":null,"wraps":[{}]}`), body))
	f.Add(assembleVault(header, nil))
	w, _ := WrapDEK(&KEK{}, &dek, nil)
	v.PutWrap(&dek, Wrap{Kind: WrapPhrase, ID: "r", Wrapped: w})
	f.Add(v.Marshal())
	var kek KEK
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseVaultFile(b)
		if err != nil {
			if p != nil {
				t.Fatal("non-nil file with error")
			}
			return
		}
		if !bytes.Equal(p.Marshal(), b) {
			t.Fatal("accepted input does not marshal back to itself")
		}
		d, err := p.Unlock(&kek)
		if err == nil {
			p.OpenBody(&d)
		}
		p.KDF()
		p.Salt()
		p.Wraps()
	})
}
