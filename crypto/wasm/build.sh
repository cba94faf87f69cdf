#!/bin/sh
# Builds the browser KDF (crypto/wasm) into ui/static/wasm/ and copies the
# matching wasm_exec.js from the Go toolchain. Run from anywhere inside the
# repository; see crypto/wasm/gen.go. The flags must stay in sync with
# ui/wasm_test.go, which rebuilds and compares the bytes.
set -eu
cd "$(dirname "$0")/../.."
out=ui/static/wasm
mkdir -p "$out"
GOOS=js GOARCH=wasm GOFLAGS= go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$out/kdf.wasm" ./crypto/wasm
root=$(go env GOROOT)
src="$root/lib/wasm/wasm_exec.js"
[ -f "$src" ] || src="$root/misc/wasm/wasm_exec.js" # Go < 1.24
cp "$src" "$out/wasm_exec.js"
chmod 0644 "$out/kdf.wasm" "$out/wasm_exec.js"
ls -l "$out/kdf.wasm" "$out/wasm_exec.js"
