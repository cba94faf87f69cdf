package vault

import "github.com/go-webauthn/webauthn/webauthn"

// passkeyInfo is one registered passkey, kept in the sealed body (record
// "ways", Ways.Passkeys by wrap id).
type passkeyInfo struct {
	Name       string              `json:"name"`     // the user's name for the device, 1..64 characters
	AddedAt    int64               `json:"addedAt"`  // unix seconds
	LastUsed   int64               `json:"lastUsed"` // unix seconds of the last unlock with it; 0 = never
	Credential webauthn.Credential `json:"credential"`
}
