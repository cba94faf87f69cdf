package vault

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/crypto"
)

// capsForTest is loadCapsLocked for tests, which know the record decodes.
// k.mu held.
func (s *Server) capsForTest() *capState {
	cs, err := s.loadCapsLocked()
	if err != nil {
		panic(err)
	}
	return cs
}

// rewriteBody replaces the sealed body of the vault in v.dir with what
// edit makes of its JSON (records map for version 2), sealed under the
// DEK got from kek, as a damaged or older release's file would be.
func rewriteBody(t *testing.T, dir string, kek crypto.KEK, edit func(map[string]json.RawMessage) []byte) {
	t.Helper()
	path := filepath.Join(dir, vaultFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := crypto.ParseVaultFile(b)
	if err != nil {
		t.Fatal(err)
	}
	dek, err := f.Unlock(&kek)
	if err != nil {
		t.Fatal(err)
	}
	body, err := f.OpenBody(&dek)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	var recs map[string]json.RawMessage
	json.Unmarshal(top["records"], &recs)
	if err := f.SealBody(&dek, edit(recs)); err != nil {
		t.Fatal(err)
	}
	if err := crypto.WriteFileAtomic(path, f.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readRecords returns the records of the body on disk.
func readRecords(t *testing.T, dir string, kek crypto.KEK) (int, map[string]json.RawMessage) {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, vaultFileName))
	f, err := crypto.ParseVaultFile(b)
	if err != nil {
		t.Fatal(err)
	}
	dek, err := f.Unlock(&kek)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := f.OpenBody(&dek)
	var top struct {
		V       int                        `json:"v"`
		Records map[string]json.RawMessage `json:"records"`
	}
	json.Unmarshal(body, &top)
	return top.V, top.Records
}

// TestCorruptRecordLosesNothing: one record of the body that fails to
// decode is never read as empty; the vault opens with the others, reading
// that record and every save are refused (500 vault_state_unreadable,
// naming it), and the file on disk keeps every byte.
func TestCorruptRecordLosesNothing(t *testing.T) {
	v := newTestVault(t, "")
	kek := v.create("correct horse battery staple")
	v.do("PUT", "/vault/apikeys/anthropic", map[string]string{"key": "sk-keep-me"})
	v.do("PUT", "/vault/integrations/crm", map[string]string{"type": "http", "baseUrl": "https://crm.example", "authHeader": "Authorization", "authValue": "Bearer crm-keep"})
	const bad = `{"issued":{"cap1":{"jti":7}},"received":"not a map"}`
	rewriteBody(t, v.dir, kek, func(r map[string]json.RawMessage) []byte {
		r[recCapabilities] = json.RawMessage(bad)
		r["fromTheFuture"] = json.RawMessage(`{"x":1}`)
		b, _ := json.Marshal(map[string]any{"v": bodyVersion, "records": r})
		return b
	})
	before, _ := os.ReadFile(filepath.Join(v.dir, vaultFileName))

	v2 := newTestVault(t, v.dir)
	if st, b := v2.unlockWith(kek); st != 200 {
		t.Fatalf("unlock with one broken record: %d %v", st, b)
	}
	if _, l := v2.do("GET", "/vault/apikeys", nil); !strings.Contains(mustJSON(l), "anthropic") {
		t.Fatalf("API keys lost: %v", l)
	}
	if _, l := v2.do("GET", "/vault/integrations", nil); !strings.Contains(mustJSON(l), "crm") {
		t.Fatalf("integrations lost: %v", l)
	}
	if st, b := v2.do("GET", "/vault/capabilities", nil); st != 500 || errCode(b) != "vault_state_unreadable" || !strings.Contains(mustJSON(b), recCapabilities) {
		t.Fatalf("reading the broken record: %d %v", st, b)
	}
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"PUT", "/vault/apikeys/openai", map[string]string{"key": "sk-new"}},
		{"DELETE", "/vault/apikeys/anthropic", nil},
		{"PUT", "/vault/ways/phrase", map[string]string{"derivedKey": b64(bytes.Repeat([]byte{7}, 32))}},
	} {
		st, b := v2.do(req.method, req.path, req.body)
		if st != 500 || errCode(b) != "vault_state_unreadable" {
			t.Errorf("%s %s with a broken record: %d %v", req.method, req.path, st, b)
		}
	}
	after, _ := os.ReadFile(filepath.Join(v.dir, vaultFileName))
	if !bytes.Equal(before, after) {
		t.Fatal("the vault file changed while a record was unreadable")
	}
	// Memory was not changed by the refused writes either.
	if _, l := v2.do("GET", "/vault/apikeys", nil); strings.Contains(mustJSON(l), "openai") {
		t.Fatalf("refused write changed memory: %v", l)
	}
	// Repaired by hand, everything is there, the unknown record included.
	rewriteBody(t, v.dir, kek, func(r map[string]json.RawMessage) []byte {
		if string(r[recCapabilities]) != bad {
			t.Fatalf("broken record not kept verbatim: %s", r[recCapabilities])
		}
		r[recCapabilities] = json.RawMessage(`{"issued":{},"received":{}}`)
		b, _ := json.Marshal(map[string]any{"v": bodyVersion, "records": r})
		return b
	})
	v3 := newTestVault(t, v.dir)
	v3.unlockWith(kek)
	if st, b := v3.do("PUT", "/vault/apikeys/openai", map[string]string{"key": "sk-new"}); st != 200 {
		t.Fatalf("write after repair: %d %v", st, b)
	}
	_, recs := readRecords(t, v.dir, kek)
	if string(recs["fromTheFuture"]) != `{"x":1}` {
		t.Fatalf("unknown record dropped: %s", recs["fromTheFuture"])
	}
	if !strings.Contains(string(recs[recIntegrations]), "crm-keep") || !strings.Contains(string(recs[recAPIKeys]), "sk-keep-me") {
		t.Fatal("records lost after repair")
	}
}

// TestBodyV1Migrates: a body written before issue 10 (settings as JSON
// strings) opens into the typed records and is saved as version 2; a v1
// body whose capabilities string is unreadable opens but is not rewritten.
func TestBodyV1Migrates(t *testing.T) {
	v := newTestVault(t, "")
	kek := v.create("correct horse battery staple")
	_, recs := readRecords(t, v.dir, kek)
	var identity []byte
	json.Unmarshal(recs[recIdentity], &identity)
	v1 := func(caps string) []byte {
		b, _ := json.Marshal(map[string]any{
			"identity": identity,
			"apiKeys":  map[string]any{"openai": map[string]any{"key": "sk-v1", "addedAt": time.Unix(1_700_000_000, 0).UTC()}},
			"settings": map[string]string{"defaultProvider": "openai", "capabilities": caps,
				"approvals": `[{"id":"ap1","expiresAt":1}]`, "theme": "dark"},
		})
		return b
	}
	rewriteBody(t, v.dir, kek, func(map[string]json.RawMessage) []byte {
		return v1(`{"issued":{"cap1":{"jti":"cap1","resource":"crm"}},"received":{}}`)
	})
	v2 := newTestVault(t, v.dir)
	if st, b := v2.unlockWith(kek); st != 200 {
		t.Fatalf("unlock v1: %d %v", st, b)
	}
	ver, recs := readRecords(t, v.dir, kek)
	if ver != bodyVersion {
		t.Fatalf("body not migrated on unlock: version %d", ver)
	}
	for name, want := range map[string]string{recDefaultProvider: `"openai"`, recCapabilities: `"cap1"`, recApprovals: `"ap1"`, recAPIKeys: "sk-v1", "settings.theme": `"dark"`} {
		if !strings.Contains(string(recs[name]), want) {
			t.Errorf("record %s = %s, want it to hold %s", name, recs[name], want)
		}
	}

	rewriteBody(t, v.dir, kek, func(map[string]json.RawMessage) []byte { return v1(`{"issued":`) })
	before, _ := os.ReadFile(filepath.Join(v.dir, vaultFileName))
	v3 := newTestVault(t, v.dir)
	if st, b := v3.unlockWith(kek); st != 200 {
		t.Fatalf("unlock v1 with a broken capabilities setting: %d %v", st, b)
	}
	if after, _ := os.ReadFile(filepath.Join(v.dir, vaultFileName)); !bytes.Equal(before, after) {
		t.Fatal("a v1 body with an unreadable record was rewritten")
	}
	if st, b := v3.do("GET", "/vault/capabilities", nil); st != 500 || errCode(b) != "vault_state_unreadable" {
		t.Fatalf("broken v1 capabilities read as: %d %v", st, b)
	}
}

func FuzzDecodeBody(f *testing.F) {
	f.Add([]byte(`{"v":2,"records":{"identity":"AAAA","capabilities":{"issued":1}}}`))
	f.Add([]byte(`{"identity":"AAAA","settings":{"capabilities":"{"}}`))
	f.Add([]byte(`{"v":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, rs, _, err := decodeBody(b)
		if err != nil {
			return
		}
		out, err := encodeBody(s, rs)
		if len(rs.broken) > 0 {
			if err == nil {
				t.Fatal("encoded a body with broken records")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := decodeBody(out); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
