package vault

// passkeyInfo is one registered passkey (record "ways"); placeholder until
// passkey unlock lands.
type passkeyInfo struct {
	Name    string `json:"name"`
	AddedAt int64  `json:"addedAt"`
}
