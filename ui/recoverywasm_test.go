package ui

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/crypto"
)

// recoveryHarness loads the served wasm_exec.js and kdf.wasm in node and
// calls the recovery functions named in each case read from stdin
// ({fn, arg}), printing one "RESULT:" line.
const recoveryHarness = `"use strict";
const fs = require("fs");
const path = require("path");
globalThis.crypto ??= require("crypto").webcrypto;
require(path.join(__dirname, "wasm_exec.js"));
(async () => {
  const go = new Go();
  const { instance } = await WebAssembly.instantiate(fs.readFileSync(path.join(__dirname, "kdf.wasm")), go.importObject);
  go.run(instance);
  const out = [];
  for (const c of JSON.parse(fs.readFileSync(0, "utf8"))) {
    const t0 = performance.now();
    try {
      const f = globalThis[c.fn];
      if (typeof f !== "function") throw new Error(c.fn + " not registered");
      const p = c.noArg ? f() : f(c.arg);
      if (!(p instanceof Promise)) throw new Error("not a Promise");
      out.push({ key: await p, ms: performance.now() - t0 });
    } catch (e) {
      out.push({ error: String(e && e.message), isError: e instanceof Error, ms: performance.now() - t0 });
    }
  }
  process.stdout.write("RESULT:" + JSON.stringify(out) + "\n");
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`

type recoveryCase struct {
	Fn    string `json:"fn"`
	Arg   string `json:"arg"`
	NoArg bool   `json:"noArg,omitempty"`
}

func runRecoveryWasm(t *testing.T, cases []recoveryCase) []wasmResult {
	t.Helper()
	return runWasmHarness(t, recoveryHarness, cases, len(cases))
}

// TestWasmRecoveryMatchesGo runs the recovery functions of the committed
// kdf.wasm under node and compares them with package crypto: the same
// phrase for the same entropy, the same KEKs for a phrase and a backup
// key, and readable rejections for bad input.
func TestWasmRecoveryMatchesGo(t *testing.T) {
	entropy := []byte{0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f}
	const vectorPhrase = "legal winner thank year wave sausage worth useful legal winner thank yellow" // BIP39 vector for 7f×16
	var bk crypto.BackupKey
	copy(bk[:], "0123456789abcdef")
	bkText := bk.Text()
	phraseKEK, err := crypto.PhraseKEK(vectorPhrase)
	if err != nil {
		t.Fatal(err)
	}
	bkKEK := crypto.BackupKeyKEK(&bk)
	b64 := base64.StdEncoding.EncodeToString
	good := []struct {
		c    recoveryCase
		want string
	}{
		{recoveryCase{Fn: "ocmtNewPhrase", Arg: b64(entropy)}, vectorPhrase},
		{recoveryCase{Fn: "ocmtPhraseKey", Arg: vectorPhrase}, b64(phraseKEK[:])},
		{recoveryCase{Fn: "ocmtPhraseKey", Arg: "  LEGAL winner\nthank year wave sausage worth useful legal winner thank yellow "}, b64(phraseKEK[:])},
		{recoveryCase{Fn: "ocmtNewBackupKey", Arg: b64(bk[:])}, bkText},
		{recoveryCase{Fn: "ocmtBackupKeyKey", Arg: bkText}, b64(bkKEK[:])},
		{recoveryCase{Fn: "ocmtBackupKeyKey", Arg: strings.ToLower(strings.ReplaceAll(bkText, "-", " "))}, b64(bkKEK[:])},
	}
	bad := []struct {
		c    recoveryCase
		want string
	}{
		{recoveryCase{Fn: "ocmtNewPhrase", Arg: b64(entropy[:15])}, "16 bytes"},
		{recoveryCase{Fn: "ocmtNewPhrase", Arg: "not base64!"}, "16 bytes"},
		{recoveryCase{Fn: "ocmtPhraseKey", Arg: strings.Replace(vectorPhrase, "sausage", "sausages", 1)}, `Word 6 ("sausages")`},
		{recoveryCase{Fn: "ocmtPhraseKey", Arg: strings.Replace(vectorPhrase, "yellow", "zoo", 1)}, "checksum"},
		{recoveryCase{Fn: "ocmtPhraseKey", Arg: "legal winner"}, "has 12 words; this has 2"},
		{recoveryCase{Fn: "ocmtBackupKeyKey", Arg: "0" + bkText[1:]}, "typo"},
		{recoveryCase{Fn: "ocmtBackupKeyKey", Arg: bkText[:10]}, "32 characters"},
		{recoveryCase{Fn: "ocmtBackupKeyKey", NoArg: true}, "one string argument"},
	}
	if bkText[0] == '0' {
		bad[5].c.Arg = "1" + bkText[1:]
	}
	var cases []recoveryCase
	for _, g := range good {
		cases = append(cases, g.c)
	}
	for _, b := range bad {
		cases = append(cases, b.c)
	}
	res := runRecoveryWasm(t, cases)
	for i, g := range good {
		if r := res[i]; r.Error != "" || r.Key != g.want {
			t.Errorf("%s(%q): wasm %q %q, Go %q", g.c.Fn, g.c.Arg, r.Key, r.Error, g.want)
		} else {
			t.Logf("%s: %.1f ms in wasm", g.c.Fn, r.MS)
		}
	}
	for i, b := range bad {
		if r := res[len(good)+i]; r.Key != "" || !r.IsError || !strings.Contains(r.Error, b.want) {
			t.Errorf("%s(%q): got %q error %q (Error object: %v), want a rejection mentioning %q", b.c.Fn, b.c.Arg, r.Key, r.Error, r.IsError, b.want)
		}
	}
}
