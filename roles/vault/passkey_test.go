package vault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// softAuthenticator is a minimal WebAuthn authenticator for the relying
// party tests: one ES256 credential, "none" attestation, user present and
// verified, a sign counter, and a PRF output (what a browser would get for
// the vault's salt) that the test turns into the KEK as passkey.js does.
type softAuthenticator struct {
	key     *ecdsa.PrivateKey
	credID  []byte
	counter uint32
	rpID    string
	origin  string
	prf     []byte
}

func newSoftAuthenticator(t testing.TB, rpID, origin string) *softAuthenticator {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &softAuthenticator{key: key, credID: make([]byte, 16), rpID: rpID, origin: origin, prf: make([]byte, 32)}
	rand.Read(a.credID)
	rand.Read(a.prf)
	return a
}

// kek is HKDF-SHA256(PRF output, no salt, "ocmt/v1/kek/passkey"), base64.
func (a *softAuthenticator) kek(t testing.TB) string {
	k, err := hkdf.Key(sha256.New, a.prf, nil, "ocmt/v1/kek/passkey", 32)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

var b64u = base64.RawURLEncoding.EncodeToString

// cborBytes is the CBOR header of a byte string of n bytes (n < 65536).
func cborHead(major byte, n int) []byte {
	switch {
	case n < 24:
		return []byte{major<<5 | byte(n)}
	case n < 256:
		return []byte{major<<5 | 24, byte(n)}
	default:
		return []byte{major<<5 | 25, byte(n >> 8), byte(n)}
	}
}

func cborBytes(b []byte) []byte { return append(cborHead(2, len(b)), b...) }
func cborText(s string) []byte  { return append(cborHead(3, len(s)), s...) }

// coseKey is the credential public key: {1:2 (EC2), 3:-7 (ES256), -1:1 (P-256), -2:x, -3:y}.
func (a *softAuthenticator) coseKey(t testing.TB) []byte {
	pub, err := a.key.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	raw := pub.Bytes() // 0x04 || x || y
	out := []byte{0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21}
	out = append(out, cborBytes(raw[1:33])...)
	out = append(out, 0x22)
	return append(out, cborBytes(raw[33:65])...)
}

func (a *softAuthenticator) authData(t testing.TB, attested bool) []byte {
	h := sha256.Sum256([]byte(a.rpID))
	b := append([]byte{}, h[:]...)
	flags := byte(0x01 | 0x04) // user present, user verified
	if attested {
		flags |= 0x40
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint32(b, a.counter)
	if attested {
		b = append(b, make([]byte, 16)...) // AAGUID
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.credID)))
		b = append(b, a.credID...)
		b = append(b, a.coseKey(t)...)
	}
	return b
}

func clientData(typ, challenge, origin string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
	return b
}

// create answers navigator.credentials.create() for options (the
// "publicKey" member of register/begin).
func (a *softAuthenticator) create(t testing.TB, options map[string]any) map[string]any {
	t.Helper()
	a.counter++
	cd := clientData("webauthn.create", options["challenge"].(string), a.origin)
	att := []byte{0xa3}
	att = append(att, cborText("fmt")...)
	att = append(att, cborText("none")...)
	att = append(att, cborText("attStmt")...)
	att = append(att, 0xa0)
	att = append(att, cborText("authData")...)
	att = append(att, cborBytes(a.authData(t, true))...)
	return map[string]any{
		"id": b64u(a.credID), "rawId": b64u(a.credID), "type": "public-key",
		"response":               map[string]any{"clientDataJSON": b64u(cd), "attestationObject": b64u(att), "transports": []string{"internal"}},
		"clientExtensionResults": map[string]any{},
	}
}

// get answers navigator.credentials.get() for options; origin and rpID
// are the authenticator's (a test changes them to play a phishing site).
func (a *softAuthenticator) get(t testing.TB, options map[string]any, userID string) map[string]any {
	t.Helper()
	a.counter++
	cd := clientData("webauthn.get", options["challenge"].(string), a.origin)
	ad := a.authData(t, false)
	cdh := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), cdh[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"id": b64u(a.credID), "rawId": b64u(a.credID), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64u(cd), "authenticatorData": b64u(ad),
			"signature": b64u(sig), "userHandle": b64u([]byte(userID))},
		"clientExtensionResults": map[string]any{},
	}
}

// registerPasskey runs register/begin and /finish with a; it returns the
// passkey's id.
func (v *tv) registerPasskey(a *softAuthenticator, name string) string {
	v.t.Helper()
	st, begin := v.do("POST", "/vault/passkeys/register/begin", map[string]string{"name": name})
	if st != http.StatusOK {
		v.t.Fatalf("register/begin: %d %v", st, begin)
	}
	opts := begin["publicKey"].(map[string]any)
	prf := opts["extensions"].(map[string]any)["prf"].(map[string]any)["eval"].(map[string]any)["first"].(string)
	want := sha256.Sum256([]byte("ocmt/v1/prf/usr_test"))
	if prf != b64u(want[:]) {
		v.t.Errorf("prf.eval.first = %s, want SHA-256(\"ocmt/v1/prf/\" + user id)", prf)
	}
	if uv := opts["authenticatorSelection"].(map[string]any)["userVerification"]; uv != "required" {
		v.t.Errorf("registration userVerification = %v, want required", uv)
	}
	st, fin := v.do("POST", "/vault/passkeys/register/finish", map[string]any{
		"ceremonyId": begin["ceremonyId"], "credential": a.create(v.t, opts), "derivedKey": a.kek(v.t)})
	if st != http.StatusCreated {
		v.t.Fatalf("register/finish: %d %v", st, fin)
	}
	return fin["id"].(string)
}

// passkeyUnlock runs unlock/begin and /finish with a; change, if not nil,
// edits the assertion before it is sent.
func (v *tv) passkeyUnlock(a *softAuthenticator, kek string, change func(map[string]any)) (int, map[string]any) {
	v.t.Helper()
	st, begin := v.do("POST", "/vault/passkeys/unlock/begin", nil)
	if st != http.StatusOK {
		return st, begin
	}
	cred := a.get(v.t, begin["publicKey"].(map[string]any), "usr_test")
	if change != nil {
		change(cred)
	}
	return v.do("POST", "/vault/passkeys/unlock/finish", map[string]any{"ceremonyId": begin["ceremonyId"], "credential": cred, "derivedKey": kek})
}

// TestPasskeyRelyingParty drives the vault's WebAuthn relying party with a
// software authenticator: register while unlocked, unlock while locked,
// and every refusal: a phishing origin, another RP ID, a bad signature, a
// replayed ceremony, a counter that did not advance, the right assertion
// with the wrong key, PRF output sent, a removed passkey; a password
// change and a recovery reset keep passkeys, "sign out all devices"
// disables them and prunes the public record.
func TestPasskeyRelyingParty(t *testing.T) {
	v := newTestVault(t, "")
	pw := v.create("correct horse battery staple")
	sizeBefore := fileSize(t, v.dir)
	a := newSoftAuthenticator(t, "ocmt.example", "https://ocmt.example")

	// Locked: no registration.
	v.do("POST", "/vault/lock", nil)
	if st, body := v.do("POST", "/vault/passkeys/register/begin", map[string]string{"name": "x"}); st != http.StatusLocked {
		t.Errorf("register/begin while locked: %d %v", st, body)
	}
	if st, body := v.do("POST", "/vault/passkeys/unlock/begin", nil); st != http.StatusNotFound || errCode(body) != "no_passkeys" {
		t.Errorf("unlock/begin without passkeys: %d %v", st, body)
	}
	if st, _ := v.unlockWith(pw); st != http.StatusOK {
		t.Fatal("password unlock failed")
	}
	if st, body := v.do("POST", "/vault/passkeys/register/begin", map[string]string{"name": " \t"}); st != http.StatusBadRequest || errCode(body) != "invalid_name" {
		t.Errorf("empty name: %d %v", st, body)
	}

	id := v.registerPasskey(a, "Test laptop")
	grow := fileSize(t, v.dir) - sizeBefore
	t.Logf("vault file grew by %d bytes for one passkey", grow)
	if grow >= 1024 {
		t.Errorf("vault file grew by %d bytes for one passkey, want < 1 KiB", grow)
	}
	pub, err := os.ReadFile(filepath.Join(v.dir, passkeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(pub), "Test laptop") || !strings.Contains(string(pub), id) {
		t.Errorf("public record: %s", pub)
	}
	if _, list := v.do("GET", "/vault/passkeys", nil); len(list["passkeys"].([]any)) != 1 {
		t.Errorf("list: %v", list)
	}
	// The same authenticator again: excluded, and refused if forced.
	if st, body := v.do("POST", "/vault/passkeys/register/begin", map[string]string{"name": "again"}); st != http.StatusOK || len(body["publicKey"].(map[string]any)["excludeCredentials"].([]any)) != 1 {
		t.Errorf("register/begin with one passkey: %d %v", st, body)
	}

	// Unlock with the passkey.
	v.do("POST", "/vault/lock", nil)
	st, body := v.passkeyUnlock(a, a.kek(t), nil)
	if st != http.StatusOK || v.locked() {
		t.Fatalf("passkey unlock: %d %v", st, body)
	}
	if st := body["expiresIn"]; st == nil {
		t.Errorf("passkey unlock answer: %v", body)
	}
	// The use is recorded right after the answer.
	for i := 0; ; i++ {
		_, list := v.do("GET", "/vault/passkeys", nil)
		if p := list["passkeys"].([]any)[0].(map[string]any); p["lastUsed"].(float64) != 0 {
			break
		}
		if i == 100 {
			t.Fatal("the passkey's last use was not recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}

	refuse := func(name string, wantStatus int, wantCode string, kek string, change func(map[string]any), prep func()) {
		t.Helper()
		v.do("POST", "/vault/lock", nil)
		v.s.keys.mu.Lock()
		v.s.keys.nextTry = v.s.keys.wall() // no backoff between cases
		v.s.keys.mu.Unlock()
		if prep != nil {
			prep()
			defer func() { a.origin, a.rpID = "https://ocmt.example", "ocmt.example" }()
		}
		st, body := v.passkeyUnlock(a, kek, change)
		if st != wantStatus || errCode(body) != wantCode || !v.locked() {
			t.Errorf("%s: %d %v (locked %v), want %d %s and still locked", name, st, body, v.locked(), wantStatus, wantCode)
		}
	}
	refuse("phishing origin", 401, "passkey_rejected", a.kek(t), nil, func() { a.origin = "https://ocmt.example.evil" })
	refuse("another RP ID", 401, "passkey_rejected", a.kek(t), nil, func() { a.rpID = "evil.example" })
	refuse("bad signature", 401, "passkey_rejected", a.kek(t), func(c map[string]any) {
		r := c["response"].(map[string]any)
		sig, _ := base64.RawURLEncoding.DecodeString(r["signature"].(string))
		sig[len(sig)-1] ^= 1
		r["signature"] = b64u(sig)
	}, nil)
	refuse("counter not past the last unlock", 401, "passkey_rejected", a.kek(t), nil, func() { a.counter = 1 }) // presents 2, the counter of the last unlock
	// A refused passkey leaves an open vault open.
	v.clk.add(10 * time.Minute)
	if st, _ := v.unlockWith(pw); st != http.StatusOK {
		t.Fatal("password unlock failed")
	}
	a.counter = 1
	if st, body := v.passkeyUnlock(a, a.kek(t), nil); st != 401 || errCode(body) != "passkey_rejected" || v.locked() {
		t.Errorf("regressed counter on an open vault: %d %v (locked %v), want 401 passkey_rejected and still open", st, body, v.locked())
	}
	refuse("right assertion, wrong key", 401, "wrong_key", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)), nil, nil)
	refuse("PRF output sent", 400, "prf_output_sent", a.kek(t), func(c map[string]any) {
		c["clientExtensionResults"] = map[string]any{"prf": map[string]any{"results": map[string]any{"first": b64u(a.prf)}}}
	}, nil)

	// A replayed ceremony.
	v.do("POST", "/vault/lock", nil)
	v.s.keys.mu.Lock()
	v.s.keys.nextTry = v.s.keys.wall()
	v.s.keys.mu.Unlock()
	_, begin := v.do("POST", "/vault/passkeys/unlock/begin", nil)
	cred := a.get(t, begin["publicKey"].(map[string]any), "usr_test")
	req := map[string]any{"ceremonyId": begin["ceremonyId"], "credential": cred, "derivedKey": a.kek(t)}
	if st, body := v.do("POST", "/vault/passkeys/unlock/finish", req); st != http.StatusOK {
		t.Fatalf("unlock: %d %v", st, body)
	}
	v.do("POST", "/vault/lock", nil)
	if st, body := v.do("POST", "/vault/passkeys/unlock/finish", req); st != http.StatusBadRequest || errCode(body) != "ceremony_invalid" || !v.locked() {
		t.Errorf("replay: %d %v", st, body)
	}

	// A second device; remove the first: it no longer unlocks, even with a
	// valid signature on a fresh challenge, while the second does.
	if st, _ := v.unlockWith(pw); st != http.StatusOK {
		t.Fatal("password unlock failed")
	}
	b := newSoftAuthenticator(t, "ocmt.example", "https://ocmt.example")
	id2 := v.registerPasskey(b, "Phone")
	if st, body := v.do("DELETE", "/vault/passkeys/"+id, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %v", st, body)
	}
	v.do("POST", "/vault/lock", nil)
	v.s.keys.mu.Lock()
	v.s.keys.nextTry = v.s.keys.wall()
	v.s.keys.mu.Unlock()
	st, body = v.passkeyUnlock(a, a.kek(t), nil)
	if st != http.StatusUnauthorized || errCode(body) != "passkey_rejected" || !v.locked() {
		t.Errorf("removed passkey: %d %v", st, body)
	}
	v.s.keys.mu.Lock()
	v.s.keys.nextTry = v.s.keys.wall()
	v.s.keys.mu.Unlock()
	if st, body := v.passkeyUnlock(b, b.kek(t), nil); st != http.StatusOK {
		t.Fatalf("second passkey: %d %v", st, body)
	}
	pub, _ = os.ReadFile(filepath.Join(v.dir, passkeyFileName))
	if strings.Contains(string(pub), id) || !strings.Contains(string(pub), id2) {
		t.Errorf("public record after removal: %s", pub)
	}

	// Changing the password keeps passkeys; "sign out all devices" removes them.
	_, fields := v.newPasswordFields("another horse battery staple", false)
	if st, body := v.do("POST", "/vault/password", v.proveWay("password", pw, fields)); st != http.StatusNoContent {
		t.Fatalf("password change: %d %v", st, body)
	}
	v.do("POST", "/vault/lock", nil)
	v.s.keys.mu.Lock()
	v.s.keys.nextTry = v.s.keys.wall()
	v.s.keys.mu.Unlock()
	if st, body := v.passkeyUnlock(b, b.kek(t), nil); st != http.StatusOK {
		t.Fatalf("passkey after a password change: %d %v", st, body)
	}
	// So does a recovery reset (here with the phrase), locked.
	phrase := randomKEK(t)
	if st, body := v.do("PUT", "/vault/ways/phrase", map[string]string{"derivedKey": b64(phrase[:])}); st != http.StatusOK {
		t.Fatalf("add phrase: %d %v", st, body)
	}
	v.do("POST", "/vault/lock", nil)
	pwA, fields := v.newPasswordFields("reset horse battery staple", false)
	if st, body := v.do("POST", "/vault/recovery/reset", v.proveWay("phrase", phrase, fields)); st != http.StatusOK {
		t.Fatalf("recovery reset: %d %v", st, body)
	}
	v.do("POST", "/vault/lock", nil)
	if st, body := v.passkeyUnlock(b, b.kek(t), nil); st != http.StatusOK {
		t.Fatalf("passkey after a recovery reset: %d %v", st, body)
	}
	_, fields = v.newPasswordFields("third horse battery staple", true)
	if st, body := v.do("POST", "/vault/password", v.proveWay("password", pwA, fields)); st != http.StatusNoContent {
		t.Fatalf("password change, sign out all: %d %v", st, body)
	}
	pub, _ = os.ReadFile(filepath.Join(v.dir, passkeyFileName))
	if strings.Contains(string(pub), id2) {
		t.Errorf("public record after sign out all: %s", pub)
	}
	v.do("POST", "/vault/lock", nil)
	if st, body := v.do("POST", "/vault/passkeys/unlock/begin", nil); st != http.StatusNotFound || errCode(body) != "no_passkeys" {
		t.Errorf("unlock/begin after sign out all: %d %v", st, body)
	}
}
