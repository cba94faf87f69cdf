package ui

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/crypto"
)

// The browser KDF lives in static/wasm: kdf.wasm is crypto/wasm built by
// crypto/wasm/build.sh, wasm_exec.js is the Go toolchain's loader. These
// tests check that the committed build is current and that it derives the
// same keys as package crypto.

// goVersionRE finds the toolchain version the runtime embeds in a binary.
var goVersionRE = regexp.MustCompile(`go1\.\d+(?:\.\d+)?(?:rc\d+)?`)

func TestWasmKDFAssets(t *testing.T) {
	for _, tc := range []struct{ name, ctype string }{
		{"wasm/kdf.wasm", "application/wasm"},
		{"wasm/wasm_exec.js", "text/javascript; charset=utf-8"},
	} {
		a, ok := assets.byName[tc.name]
		if !ok {
			t.Fatalf("static/%s missing", tc.name)
		}
		if a.ctype != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.name, a.ctype, tc.ctype)
		}
		src, _ := fs.ReadFile(staticFS, "static/"+tc.name)
		if !bytes.Equal(a.body, src) {
			t.Errorf("%s: served bytes differ from the file (asset rewriting touched it)", tc.name)
		}
		if !strings.HasPrefix(AssetURL(tc.name), "/static/wasm/") {
			t.Errorf("AssetURL(%q) = %q", tc.name, AssetURL(tc.name))
		}
	}
	if b := assets.byName["wasm/kdf.wasm"].body; !bytes.HasPrefix(b, []byte("\x00asm")) {
		t.Error("kdf.wasm is not a WebAssembly module")
	}
}

// TestWasmKDFCurrent rebuilds crypto/wasm with the flags of
// crypto/wasm/build.sh and compares the bytes with the committed
// static/wasm/kdf.wasm. Go builds are reproducible for a given toolchain,
// module graph and flags (-trimpath removes paths, -buildvcs=false the VCS
// stamp), so a difference means the committed file is stale. A different
// toolchain produces different bytes, so the test skips when the local Go
// version is not the one embedded in the committed file.
func TestWasmKDFCurrent(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	committed, err := fs.ReadFile(staticFS, "static/wasm/kdf.wasm")
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goBin, "env", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("go env GOVERSION: %v", err)
	}
	local := strings.TrimSpace(string(out))
	built := map[string]bool{}
	for _, v := range goVersionRE.FindAll(committed, -1) {
		built[string(v)] = true
	}
	if !built[local] {
		t.Skipf("static/wasm/kdf.wasm was built with another toolchain (%v), local is %s: rebuild with crypto/wasm/build.sh to compare", built, local)
	}
	fresh := filepath.Join(t.TempDir(), "kdf.wasm")
	cmd := exec.Command(goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", fresh, "./crypto/wasm")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, committed) {
		t.Errorf("static/wasm/kdf.wasm is stale (%d bytes, fresh build %d bytes): run crypto/wasm/build.sh", len(committed), len(b))
	}
	t.Logf("kdf.wasm: %d bytes, built with %s", len(b), local)

	// wasm_exec.js must match the toolchain that built kdf.wasm: the
	// loader and the runtime's import object change between releases.
	goroot, err := exec.Command(goBin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	var loader []byte
	for _, p := range []string{"lib/wasm/wasm_exec.js", "misc/wasm/wasm_exec.js"} {
		if loader, err = os.ReadFile(filepath.Join(strings.TrimSpace(string(goroot)), p)); err == nil {
			break
		}
	}
	if committedJS, _ := fs.ReadFile(staticFS, "static/wasm/wasm_exec.js"); !bytes.Equal(loader, committedJS) {
		t.Error("static/wasm/wasm_exec.js differs from the toolchain's: run crypto/wasm/build.sh")
	}
}

// wasmHarness loads the served wasm_exec.js and kdf.wasm in node, calls
// ocmtDeriveKey for each case read from stdin (JSON) and prints one
// "RESULT:" line with the keys or errors and the time each call took.
const wasmHarness = `"use strict";
const fs = require("fs");
const path = require("path");
globalThis.crypto ??= require("crypto").webcrypto;
require(path.join(__dirname, "wasm_exec.js"));
(async () => {
  const go = new Go();
  const { instance } = await WebAssembly.instantiate(fs.readFileSync(path.join(__dirname, "kdf.wasm")), go.importObject);
  go.run(instance);
  if (typeof globalThis.ocmtDeriveKey !== "function") throw new Error("ocmtDeriveKey not registered");
  const out = [];
  for (const c of JSON.parse(fs.readFileSync(0, "utf8"))) {
    const t0 = performance.now();
    try {
      const p = globalThis.ocmtDeriveKey(...c.args);
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

type wasmCase struct {
	Args []any `json:"args"`
}

type wasmResult struct {
	Key     string  `json:"key"`
	Error   string  `json:"error"`
	IsError bool    `json:"isError"`
	MS      float64 `json:"ms"`
}

// runWasmKDF runs the harness over cases with the embedded (served) files.
func runWasmKDF(t *testing.T, cases []wasmCase) []wasmResult {
	t.Helper()
	return runWasmHarness(t, wasmHarness, cases, len(cases))
}

// runWasmHarness runs a node harness script beside the served kdf.wasm and
// wasm_exec.js, with cases as JSON on its stdin, and returns the n results
// it prints after "RESULT:". Without node it skips, or fails when CI=true.
func runWasmHarness(t *testing.T, harness string, cases any, n int) []wasmResult {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and node is not on PATH")
		}
		t.Skip("node not on PATH")
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"kdf.wasm":     assets.byName["wasm/kdf.wasm"].body,
		"wasm_exec.js": assets.byName["wasm/wasm_exec.js"].body,
		"harness.cjs":  []byte(harness),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	in, _ := json.Marshal(cases)
	cmd := exec.Command(node, filepath.Join(dir, "harness.cjs"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s\n%s", err, out, stderr.Bytes())
	}
	_, line, ok := bytes.Cut(out, []byte("RESULT:"))
	if !ok {
		t.Fatalf("no result from node:\n%s\n%s", out, stderr.Bytes())
	}
	var res []wasmResult
	if err := json.Unmarshal(bytes.TrimSpace(line), &res); err != nil || len(res) != n {
		t.Fatalf("bad result %s: %v", line, err)
	}
	return res
}

// TestWasmKDFMatchesGo derives keys with the committed kdf.wasm under node
// and with crypto.DeriveKEK, and requires identical results; invalid input
// must reject the promise with an Error.
func TestWasmKDFMatchesGo(t *testing.T) {
	salt := []byte("0123456789abcdef")
	small := crypto.KDFParams{Alg: crypto.KDFArgon2id, MemoryKiB: crypto.MinMemoryKiB, Iterations: crypto.MinIterations, Parallelism: 1}
	lanes := crypto.KDFParams{Alg: crypto.KDFArgon2id, MemoryKiB: crypto.MinMemoryKiB, Iterations: crypto.MinIterations, Parallelism: 4}
	type kdfCase struct {
		password string
		salt     []byte
		p        crypto.KDFParams
	}
	good := []kdfCase{
		{"correct horse battery staple", salt, small},
		{"pässwörd 🔑 パスワード", salt, lanes},
		{"", []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"), small},
	}
	var cases []wasmCase
	for _, c := range good {
		cases = append(cases, wasmCase{[]any{c.password, base64.StdEncoding.EncodeToString(c.salt), c.p.MemoryKiB, c.p.Iterations, c.p.Parallelism}})
	}
	salt64 := base64.StdEncoding.EncodeToString(salt)
	bad := []struct {
		args []any
		want string
	}{
		{[]any{"pw", salt64, 1024, 1, 1}, "memoryKiB"},
		{[]any{"pw", salt64, 8192, 1, 1}, "memoryKiB"}, // ocmt issue 8 item 6
		{[]any{"pw", salt64, crypto.MinMemoryKiB - 1, crypto.MinIterations, 1}, "memoryKiB"},
		{[]any{"pw", salt64, crypto.MinMemoryKiB, crypto.MinIterations - 1, 1}, "iterations"},
		{[]any{"pw", base64.StdEncoding.EncodeToString(make([]byte, 16)), crypto.MinMemoryKiB, crypto.MinIterations, 1}, "degenerate"},
		{[]any{"pw", salt64, crypto.MinMemoryKiB, 0, 1}, "iterations"},
		{[]any{"pw", salt64, crypto.MinMemoryKiB, crypto.MinIterations, 17}, "parallelism"},
		{[]any{"pw", salt64, crypto.MinMemoryKiB, 1, 256}, "ocmtDeriveKey("},
		{[]any{"pw", salt64, crypto.MinMemoryKiB, 1.5, 1}, "ocmtDeriveKey("},
		{[]any{"pw", salt64, "8192", 1, 1}, "ocmtDeriveKey("},
		{[]any{"pw", salt64}, "ocmtDeriveKey("},
		{[]any{"pw", "not base64!", crypto.MinMemoryKiB, 1, 1}, "base64"},
		{[]any{"pw", base64.StdEncoding.EncodeToString(salt[:15]), crypto.MinMemoryKiB, crypto.MinIterations, 1}, "salt"},
	}
	for _, b := range bad {
		cases = append(cases, wasmCase{b.args})
	}
	res := runWasmKDF(t, cases)
	for i, c := range good {
		want, err := crypto.DeriveKEK([]byte(c.password), c.salt, c.p)
		if err != nil {
			t.Fatal(err)
		}
		if r := res[i]; r.Error != "" || r.Key != base64.StdEncoding.EncodeToString(want[:]) {
			t.Errorf("case %d (%+v): wasm %q %q, Go %x", i, c.p, r.Key, r.Error, want[:])
		}
	}
	for i, b := range bad {
		if r := res[len(good)+i]; r.Key != "" || !r.IsError || !strings.Contains(r.Error, b.want) {
			t.Errorf("args %v: got key %q error %q (Error object: %v), want a rejection mentioning %q", b.args, r.Key, r.Error, r.IsError, b.want)
		}
	}
}

// TestWasmKDFDefaultParams derives one key with the SPEC defaults (64 MiB,
// t=3, p=4) in node and logs the time, which approximates what a browser
// user waits at unlock. Skipped with -short.
func TestWasmKDFDefaultParams(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: derives with 64 MiB")
	}
	salt := []byte("0123456789abcdef")
	p := crypto.DefaultKDFParams()
	res := runWasmKDF(t, []wasmCase{{[]any{"correct horse battery staple", base64.StdEncoding.EncodeToString(salt), p.MemoryKiB, p.Iterations, p.Parallelism}}})
	start := time.Now()
	want, err := crypto.DeriveKEK([]byte("correct horse battery staple"), salt, p)
	if err != nil {
		t.Fatal(err)
	}
	goTime := time.Since(start)
	if res[0].Key != base64.StdEncoding.EncodeToString(want[:]) {
		t.Fatalf("wasm %q %q differs from Go", res[0].Key, res[0].Error)
	}
	t.Logf("Argon2id m=64MiB t=3 p=4: wasm under node %.0f ms, native Go %d ms", res[0].MS, goTime.Milliseconds())
}
