package vault

// Placeholders for the social-recovery records (replaced by the social
// recovery implementation).

// socialConfig is the owner's trusted-contacts setup (record "ways").
type socialConfig struct{}

// heldShare is a social-recovery share this vault keeps for another user.
type heldShare struct{}
