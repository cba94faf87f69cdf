//go:build js && wasm

package main

import (
	"encoding/base64"
	"syscall/js"

	"github.com/ocmt/ocmt/crypto/internal/social"
)

// Social recovery in the browser (issue 10, item 2): two more globals,
// registered before main runs,
//
//	ocmtSocialKeyPair() → {publicKey: string, privateKey: string}
//	  // a one-time X25519 key pair (standard base64, 32 bytes each)
//	ocmtSocialRecover(publicKey: string, privateKey: string, owner: string,
//	                  requestId: string, sealedShares: string[])
//	  → {derivedKey: string, used: number} | {error: string, used: number}
//
// ocmtSocialRecover opens each released share (sealed by a contact's vault
// to the one-time key), keeps the ones for this owner and request, and
// with at least the threshold of them rebuilds the recovery secret and
// returns the social KEK (HKDF-SHA256, "ocmt/v1/kek/social"; standard
// base64) that POST /vault/recovery/reset {"kind":"social"} takes. It runs
// the same Go code as the container (crypto/internal/social); the secret
// and the shares never leave this function.
func init() {
	js.Global().Set("ocmtSocialKeyPair", js.FuncOf(socialKeyPair))
	js.Global().Set("ocmtSocialRecover", js.FuncOf(socialRecover))
}

func socialKeyPair(_ js.Value, _ []js.Value) any {
	pub, priv, err := social.NewKeyPair()
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	defer clear(priv[:])
	return map[string]any{"publicKey": base64.StdEncoding.EncodeToString(pub[:]), "privateKey": base64.StdEncoding.EncodeToString(priv[:])}
}

func socialRecover(_ js.Value, args []js.Value) any {
	fail := func(msg string, used int) any { return map[string]any{"error": msg, "used": used} }
	if len(args) != 5 || args[0].Type() != js.TypeString || args[1].Type() != js.TypeString || args[2].Type() != js.TypeString ||
		args[3].Type() != js.TypeString || args[4].Type() != js.TypeObject {
		return fail("ocmtSocialRecover(publicKey, privateKey, owner, requestId, sealedShares[])", 0)
	}
	var pub, priv [32]byte
	defer clear(priv[:])
	pb, err1 := base64.StdEncoding.DecodeString(args[0].String())
	kb, err2 := base64.StdEncoding.DecodeString(args[1].String())
	if err1 != nil || err2 != nil || len(pb) != 32 || len(kb) != 32 {
		return fail("the one-time key is not 32 bytes of base64", 0)
	}
	copy(pub[:], pb)
	copy(priv[:], kb)
	clear(kb)
	var sealed [][]byte
	for i, n := 0, args[4].Length(); i < n && i < 64; i++ {
		if v := args[4].Index(i); v.Type() == js.TypeString {
			if b, err := base64.StdEncoding.DecodeString(v.String()); err == nil {
				sealed = append(sealed, b)
			}
		}
	}
	kek, used, err := social.Recover(&pub, &priv, args[2].String(), args[3].String(), sealed)
	defer clear(kek[:])
	if err != nil {
		return fail("not enough shares yet", used)
	}
	return map[string]any{"derivedKey": base64.StdEncoding.EncodeToString(kek[:]), "used": used}
}
