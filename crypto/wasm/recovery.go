//go:build js && wasm

package main

import (
	"encoding/base64"
	"syscall/js"

	"github.com/ocmt/ocmt/crypto/internal/recovery"
)

// The recovery ways in (issue 10), registered by registerRecovery:
//
//	ocmtNewPhrase(entropyB64: string)   → Promise<string>  // 12 BIP39 English words for 16 bytes of entropy
//	ocmtPhraseKey(mnemonic: string)     → Promise<string>  // standard base64 of the 32-byte phrase KEK
//	ocmtNewBackupKey(entropyB64: string) → Promise<string> // printable backup key "XXXX-XXXX-…" (8 groups) for 16 bytes
//	ocmtBackupKeyKey(text: string)      → Promise<string>  // standard base64 of the 32-byte backup-key KEK
//
// They run crypto/internal/recovery, the code behind crypto.PhraseKEK,
// crypto.BackupKey.Text, crypto.ParseBackupKey and crypto.BackupKeyKEK.
// The entropy must come from crypto.getRandomValues. A phrase or backup
// key that does not parse rejects with an Error whose message is written
// for the user ("Word 4 ("sausages") is not a recovery phrase word…").
func registerRecovery() {
	g := js.Global()
	g.Set("ocmtNewPhrase", promiseFunc(func(a string) (string, error) {
		e, err := entropyArg(a)
		if err != nil {
			return "", err
		}
		defer clear(e)
		return recovery.NewPhrase(e)
	}))
	g.Set("ocmtPhraseKey", promiseFunc(func(m string) (string, error) {
		k, err := recovery.PhraseKEK(m)
		defer clear(k[:])
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(k[:]), nil
	}))
	g.Set("ocmtNewBackupKey", promiseFunc(func(a string) (string, error) {
		e, err := entropyArg(a)
		if err != nil {
			return "", err
		}
		defer clear(e)
		return recovery.FormatBackupKey(e)
	}))
	g.Set("ocmtBackupKeyKey", promiseFunc(func(text string) (string, error) {
		r, err := recovery.ParseBackupKey(text)
		defer clear(r[:])
		if err != nil {
			return "", err
		}
		k := recovery.BackupKeyKEK(r)
		defer clear(k[:])
		return base64.StdEncoding.EncodeToString(k[:]), nil
	}))
}

// entropyArg decodes 16 bytes of standard base64.
func entropyArg(a string) ([]byte, error) {
	e, err := base64.StdEncoding.Strict().DecodeString(a)
	if err != nil || len(e) != recovery.PhraseEntropySize {
		return nil, recovery.ErrEntropy
	}
	return e, nil
}

// promiseFunc wraps f(string) as a JavaScript function returning a Promise
// that resolves to f's string or rejects with an Error carrying its
// message. A missing or non-string argument rejects with errRecoveryUsage.
func promiseFunc(f func(string) (string, error)) js.Func {
	return js.FuncOf(func(_ js.Value, args []js.Value) any {
		executor := js.FuncOf(func(_ js.Value, pa []js.Value) any {
			resolve, reject := pa[0], pa[1]
			if len(args) != 1 || args[0].Type() != js.TypeString {
				reject.Invoke(js.Global().Get("Error").New(string(errRecoveryUsage)))
				return nil
			}
			in := args[0].String()
			go func() {
				out, err := f(in)
				if err != nil {
					reject.Invoke(js.Global().Get("Error").New(err.Error()))
					return
				}
				resolve.Invoke(out)
			}()
			return nil
		})
		defer executor.Release()
		return js.Global().Get("Promise").New(executor)
	})
}

const errRecoveryUsage usageError = "ocmt recovery functions take one string argument"
