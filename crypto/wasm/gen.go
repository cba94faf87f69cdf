//go:build !(js && wasm)

// Regenerating the browser build (SPEC §9):
//
//	crypto/wasm/build.sh
//
// (or `go generate ./crypto/wasm`, which runs the same script) builds this
// package for GOOS=js GOARCH=wasm with
//
//	go build -trimpath -buildvcs=false -ldflags='-s -w' -o ui/static/wasm/kdf.wasm ./crypto/wasm
//
// and copies $(go env GOROOT)/lib/wasm/wasm_exec.js to
// ui/static/wasm/wasm_exec.js. Rerun it whenever the KDF
// (crypto/internal/kdf), its dependencies or the Go toolchain change;
// ui/wasm_test.go fails when the committed kdf.wasm differs from a fresh
// build with the same toolchain. Even an edit that only moves lines in
// main.go or crypto/internal/kdf changes the bytes (the binary keeps line
// tables for stack traces), so rebuild after any edit there.

//go:generate sh ./build.sh

package main

import "os"

// main exists so that `go build ./...` works on every platform; the real
// program (main.go) only builds for GOOS=js GOARCH=wasm.
func main() {
	os.Stderr.WriteString("crypto/wasm runs in a browser: build it with crypto/wasm/build.sh\n")
	os.Exit(2)
}
