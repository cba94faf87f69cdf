package crypto

// WrappedDEKSize is the length of a wrapped DEK: [Overhead] + [KeySize]
// (24-byte nonce ‖ 32-byte encrypted DEK ‖ 16-byte tag = 72 bytes).
const WrappedDEKSize = Overhead + KeySize

// wrapADPrefix starts the associated data of every DEK wrap; see WrapAD.
const wrapADPrefix = "ocmt/v1/wrap/"

// Wrap kinds used in vault headers (SPEC §6): each is one way into the
// vault, a copy of the DEK wrapped under a different KEK. The password
// wrap is bound to the vault's salt (WrapAD("password", salt)); every
// other kind is bound to its kind and id ([VaultFile.AddWrap]), which stay
// the same when the password changes.
const (
	// WrapPassword is the KEK the browser derives from the password with
	// Argon2id; exactly one per vault.
	WrapPassword = "password"
	// WrapPhrase is the KEK derived from the BIP39 recovery phrase; id "".
	WrapPhrase = "phrase"
	// WrapBackupKey is the KEK derived from the printed backup key; id "".
	WrapBackupKey = "backup-key"
	// WrapSocial is the KEK derived from the recovery secret that is
	// Shamir-split among trusted contacts; id "".
	WrapSocial = "social"
	// WrapPasskey is the KEK derived from a passkey's PRF output; one per
	// registered device, id chosen by the vault.
	WrapPasskey = "passkey"
	// WrapHibernate is a short-lived wrap under a key the agent role holds
	// in memory while a container is stopped for hibernation; the vault
	// role keeps it in its own file, not in the vault header.
	WrapHibernate = "hibernate"
)

// WrapAD returns the associated data for a DEK wrap of the given kind:
//
//	"ocmt/v1/wrap/" ‖ kind ‖ binding
//
// The vault's password wrap uses WrapAD("password", salt), so a wrap cannot
// be moved into a vault with a different salt. Other kinds choose their own
// binding (for example a device id). Different kinds are normally wrapped
// under different keys, so the kind in the AD is defence in depth.
func WrapAD(kind string, binding []byte) []byte {
	ad := make([]byte, 0, len(wrapADPrefix)+len(kind)+len(binding))
	ad = append(ad, wrapADPrefix...)
	ad = append(ad, kind...)
	return append(ad, binding...)
}

// WrapDEK seals dek under kek with [Seal] (XChaCha20-Poly1305, random
// nonce) and associated data ad, typically [WrapAD]. The result is
// [WrappedDEKSize] (72) bytes: nonce ‖ encrypted DEK ‖ tag.
func WrapDEK(kek *KEK, dek *DEK, ad []byte) ([]byte, error) {
	return Seal((*[32]byte)(kek), dek[:], ad)
}

// UnwrapDEK reverses [WrapDEK]. A wrong key, wrong ad or modified input
// returns [ErrDecrypt]; so does input of the wrong length.
func UnwrapDEK(kek *KEK, wrapped, ad []byte) (DEK, error) {
	if len(wrapped) != WrappedDEKSize {
		return DEK{}, ErrDecrypt
	}
	pt, err := Open((*[32]byte)(kek), wrapped, ad)
	if err != nil {
		return DEK{}, ErrDecrypt
	}
	var dek DEK
	copy(dek[:], pt)
	clear(pt)
	return dek, nil
}
