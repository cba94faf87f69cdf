package vault

// Social-recovery records of the sealed vault body (social.go).

// socialConfig is the owner's trusted-contacts setup: Ways.Social in
// record "ways", and the "social" object of GET /vault/ways. Its JSON:
//
//	{"threshold":3,"epoch":1765000000,"setAt":1765000000,
//	 "contacts":[{"userId":"usr_…","email":"bob@example.org","x25519":"x25519:…","held":true},…]}
//
// Epoch names the split (unix seconds when it was made; a new split has a
// larger one); SetAt is unix seconds. The shares themselves are not kept
// here: each contact's vault holds its own, sealed to that contact.
type socialConfig struct {
	Threshold int             `json:"threshold"`
	Epoch     uint32          `json:"epoch"`
	SetAt     int64           `json:"setAt"`
	Contacts  []socialContact `json:"contacts"`
}

// socialContact is one trusted contact of a socialConfig. X25519 is the
// key the share was sealed to (also used to tell a removed contact to
// drop its share); Email is for display only, as the management role
// gave it. Held is set when the contact's vault confirmed (a social.held
// envelope) that it keeps its share of this split: until then the share
// waits at the relay for the contact to unlock their vault (at most the
// relay's envelope TTL, 7 days by default).
type socialContact struct {
	UserID string `json:"userId"`
	Email  string `json:"email,omitempty"`
	X25519 string `json:"x25519"`
	Held   bool   `json:"held,omitempty"`
}

// heldShare is a social-recovery share this vault keeps for another user
// (record "heldShares", by the owner's user id). Sealed is the owner's
// crypto.SocialShare message sealed to this vault's X25519 key (an
// anonymous NaCl box): this vault opens it only to seal it again to a
// recovery request's one-time key (POST /social/held/{owner}/release).
type heldShare struct {
	Owner       string `json:"owner"`
	OwnerX25519 string `json:"ownerX25519"` // the owner's key, to open later envelopes (drops) from them
	Epoch       uint32 `json:"epoch"`
	Threshold   int    `json:"threshold"`
	Sealed      []byte `json:"sealed"`
	ReceivedAt  int64  `json:"receivedAt"` // unix seconds
}
