package api

// Routes of the container vault's "ways back in" (issue 10; SPEC §6),
// defined once for the vault that serves them and for management, which
// rate-limits and audits them as metadata (the bodies carry keys that only
// the vault may read; management never parses them).
const (
	// VaultUnlockPath is POST {kind?, id?, challengeId, derivedKey, proof}.
	VaultUnlockPath = "/vault/unlock"
	// VaultLockPath is POST: lock the vault (the DEK is wiped).
	VaultLockPath = "/vault/lock"
	// VaultPasswordPath is POST: change the password (signOutAll drops every other way).
	VaultPasswordPath = "/vault/password"
	// VaultRecoveryResetPath is POST: a recovery way sets a new password.
	VaultRecoveryResetPath = "/vault/recovery/reset"
	// VaultWaysPath is GET (list) and, with "/{kind}", PUT/DELETE a way.
	VaultWaysPath = "/vault/ways"
	// VaultPasskeysPath is GET (list), with "/{id}" DELETE a passkey, and
	// the WebAuthn ceremonies below (roles/vault/passkey.go).
	VaultPasskeysPath = "/vault/passkeys"
	// VaultPasskeyRegisterPath is POST {ceremonyId, credential, derivedKey}: add a passkey.
	VaultPasskeyRegisterPath = VaultPasskeysPath + "/register/finish"
	// VaultPasskeyUnlockPath is POST {ceremonyId, credential, derivedKey}: unlock with a passkey.
	VaultPasskeyUnlockPath = VaultPasskeysPath + "/unlock/finish"
)
