//go:build js && wasm

// Command wasm is the browser build of the vault's key derivation (SPEC §9):
// it registers the JavaScript global
//
//	ocmtDeriveKey(password: string, saltB64: string,
//	              memoryKiB: number, iterations: number, parallelism: number)
//	  → Promise<string>   // standard base64 of the 32-byte KEK
//
// which runs the same Go code as crypto.DeriveKEK in the container
// (crypto/internal/kdf.Derive, of which DeriveKEK is a type-converting
// wrapper; importing package crypto itself would add about 0.9 MB of
// crypto/rand, Ed25519 and JSON code that the browser never runs). The
// salt and the result are standard base64 (as in GET /params and POST
// /unlock). The password is encoded as UTF-8; the page should normalise it
// (String.prototype.normalize("NFC")) before the call so that the same
// password typed on different systems gives the same key. Invalid
// parameters or salt reject the promise with an Error.
//
// The global exists as soon as go.run(instance) has been called (main runs
// synchronously up to its final block). The derivation itself is CPU-bound
// and runs to completion before the promise settles, blocking the thread it
// runs on, so pages should load the module in a Web Worker if they want to
// keep the UI responsive.
//
// It also registers the recovery phrase and backup key functions
// (ocmtNewPhrase, ocmtPhraseKey, ocmtNewBackupKey, ocmtBackupKeyKey;
// recovery.go, issue 10), which link github.com/tyler-smith/go-bip39 and
// the standard library's PBKDF2/HKDF: kdf.wasm grew from 2.0 MB to 3.4 MB
// (0.6 MB to 1.0 MB gzipped) with them.
//
// Build with crypto/wasm/build.sh (see gen.go).
package main

import (
	"encoding/base64"
	"syscall/js"

	"github.com/ocmt/ocmt/crypto/internal/kdf"
)

func main() {
	js.Global().Set("ocmtDeriveKey", js.FuncOf(deriveKey))
	registerRecovery() // ocmtNewPhrase, ocmtPhraseKey, ocmtNewBackupKey, ocmtBackupKeyKey (recovery.go)
	select {}          // keep the Go runtime (and the callback) alive
}

// deriveKey implements ocmtDeriveKey; it returns a Promise.
func deriveKey(_ js.Value, args []js.Value) any {
	// The executor runs synchronously inside Promise's constructor, so it
	// can be released as soon as the promise exists.
	executor := js.FuncOf(func(_ js.Value, pa []js.Value) any {
		resolve, reject := pa[0], pa[1]
		go func() {
			key, err := derive(args)
			if err != nil {
				reject.Invoke(js.Global().Get("Error").New(err.Error()))
				return
			}
			resolve.Invoke(key)
		}()
		return nil
	})
	defer executor.Release()
	return js.Global().Get("Promise").New(executor)
}

// derive validates the JavaScript arguments and runs crypto.DeriveKEK.
func derive(args []js.Value) (string, error) {
	if len(args) != 5 || args[0].Type() != js.TypeString || args[1].Type() != js.TypeString ||
		args[2].Type() != js.TypeNumber || args[3].Type() != js.TypeNumber || args[4].Type() != js.TypeNumber {
		return "", errUsage
	}
	salt, err := base64.StdEncoding.Strict().DecodeString(args[1].String())
	if err != nil {
		return "", errSalt
	}
	m, okM := uint32Arg(args[2])
	t, okT := uint32Arg(args[3])
	p, okP := uint32Arg(args[4])
	if !okM || !okT || !okP || p > 255 {
		return "", errUsage
	}
	password := []byte(args[0].String())
	defer clear(password)
	key, err := kdf.Derive(password, salt, kdf.Params{
		Alg: kdf.Argon2id, MemoryKiB: m, Iterations: t, Parallelism: uint8(p),
	})
	if err != nil {
		return "", err
	}
	defer clear(key[:])
	return base64.StdEncoding.EncodeToString(key[:]), nil
}

// uint32Arg converts a JavaScript number that must be an integer in uint32
// range.
func uint32Arg(v js.Value) (uint32, bool) {
	f := v.Float()
	if f < 0 || f > 4294967295 || f != float64(uint32(f)) {
		return 0, false
	}
	return uint32(f), true
}

type usageError string

func (e usageError) Error() string { return string(e) }

const (
	errUsage usageError = "ocmtDeriveKey(password: string, saltB64: string, memoryKiB: number, iterations: number, parallelism: number)"
	errSalt  usageError = "ocmtDeriveKey: salt is not standard base64"
)
