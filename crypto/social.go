package crypto

import "github.com/ocmt/ocmt/crypto/internal/social"

// Social recovery (issue 10, item 2; SPEC §6). The owner's vault makes a
// 32-byte recovery secret S, splits it into M shares of which K rebuild
// it (Shamir over GF(2^8), github.com/hashicorp/vault/shamir), seals each
// share to one trusted contact's X25519 key with an anonymous NaCl box,
// and wraps the DEK under SocialKEK(S) (wrap kind [WrapSocial], id "").
// To recover, the owner's browser makes a one-time X25519 key pair; each
// approving contact's vault opens its share and seals it again to that
// one-time key; the browser opens K of them, rebuilds S and derives the
// same KEK (crypto/wasm runs this package's code).

// Social recovery sizes and bounds.
const (
	SocialSecretSize   = social.SecretSize   // bytes of S
	SocialShareSize    = social.ShareSize    // bytes of one share (S's size + 1)
	SocialMinThreshold = social.MinThreshold // smallest K
	SocialMaxContacts  = social.MaxContacts  // largest M
	// LabelSocialKEK is the HKDF info of the social KEK.
	LabelSocialKEK = social.KEKInfo
)

// Social recovery errors.
var (
	ErrSocialThreshold = social.ErrThreshold // K or M out of bounds
	ErrSocialShares    = social.ErrShares    // too few or malformed shares
	ErrSocialLowOrder  = social.ErrLowOrder  // a low-order X25519 key
	ErrSocialOpen      = social.ErrOpen      // a sealed share did not open
)

// SocialShare is one share of a recovery secret and what binds it (owner
// user id, request id or "", epoch, threshold); see the byte form on
// social.Share: Marshal and UnmarshalSocialShare.
type SocialShare = social.Share

// UnmarshalSocialShare parses SocialShare.Marshal's output.
func UnmarshalSocialShare(b []byte) (*SocialShare, error) { return social.UnmarshalShare(b) }

// NewSocialSecret returns a fresh random recovery secret S (32 bytes).
func NewSocialSecret() ([]byte, error) { return social.NewSecret() }

// SplitSocialSecret splits S into n shares, k of which rebuild it
// (2 ≤ k ≤ n ≤ 10; [ErrSocialThreshold] otherwise).
func SplitSocialSecret(secret []byte, n, k int) ([][]byte, error) { return social.Split(secret, n, k) }

// CombineSocialShares rebuilds S from shares; with fewer than the
// threshold the result is wrong, not an error.
func CombineSocialShares(shares [][]byte) ([]byte, error) { return social.Combine(shares) }

// SocialKEK returns HKDF-SHA256(ikm = S, salt = nil, info =
// "ocmt/v1/kek/social"), the KEK of the social DEK wrap.
func SocialKEK(secret []byte) (KEK, error) {
	k, err := social.KEK(secret)
	return KEK(k), err
}

// SealToX25519 seals msg anonymously to the X25519 public key pub (NaCl
// box.SealAnonymous); a low-order key is refused.
func SealToX25519(pub *[32]byte, msg []byte) ([]byte, error) { return social.Seal(pub, msg) }

// OpenSealed opens SealToX25519's output with the identity's X25519 key
// pair; any failure is [ErrSocialOpen].
func (id *Identity) OpenSealed(sealed []byte) ([]byte, error) {
	pub := id.Public().X25519
	return social.Open(&pub, &id.BoxPrivate, sealed)
}

// NewSocialKeyPair returns a one-time X25519 key pair for a recovery
// request (the browser makes its own with the same code).
func NewSocialKeyPair() (pub, priv *[32]byte, err error) { return social.NewKeyPair() }

// RecoverSocialKEK opens the sealed released shares with the request's
// one-time key pair and, given at least the threshold of valid ones for
// owner and request, returns the social KEK and how many shares it used.
func RecoverSocialKEK(pub, priv *[32]byte, owner, request string, sealed [][]byte) (KEK, int, error) {
	k, n, err := social.Recover(pub, priv, owner, request, sealed)
	return KEK(k), n, err
}

// SocialSafetyCode is the 6-digit code of a request's one-time public
// key, shown to the owner and to each contact so they can compare it.
func SocialSafetyCode(pub []byte) string { return social.SafetyCode(pub) }

// CheckX25519Public refuses a low-order X25519 public key
// ([ErrSocialLowOrder]), such as a recovery request's one-time key.
func CheckX25519Public(pub *[32]byte) error { return social.CheckPublic(pub) }

// OpenSealedWith opens SealToX25519's output with the key pair (pub,
// priv), such as a recovery request's one-time pair.
func OpenSealedWith(pub, priv *[32]byte, sealed []byte) ([]byte, error) {
	return social.Open(pub, priv, sealed)
}
