package crypto

// WrappedDEKSize is the length of a wrapped DEK: [Overhead] + [KeySize]
// (24-byte nonce ‖ 32-byte encrypted DEK ‖ 16-byte tag = 72 bytes).
const WrappedDEKSize = Overhead + KeySize

// wrapADPrefix starts the associated data of every DEK wrap; see WrapAD.
const wrapADPrefix = "ocmt/v1/wrap/"

// Wrap kinds used in vault headers. Only WrapPassword is produced by this
// package; the others are reserved names for SPEC §6 (recovery phrase,
// hardware backup key, device/passkey keys), stored through
// [VaultFile.PutWrap].
const (
	WrapPassword = "password"
	WrapRecovery = "recovery"
	WrapDevice   = "device"
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
