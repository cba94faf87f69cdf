package crypto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"
)

// Vault file constants (see the package documentation, "Vault file format").
const (
	// VaultMagic starts every vault file; its last character is the
	// major format generation, independent of the header "v" field.
	VaultMagic = "OCMTVLT1"
	// VaultVersion is the only header version ("v") this package reads and
	// writes.
	VaultVersion = 1
	// MaxHeaderSize bounds the JSON header (64 KiB).
	MaxHeaderSize = 64 << 10
	// MaxBodySize bounds the body plaintext (16 MiB); the sealed body may be
	// Overhead bytes longer.
	MaxBodySize = 16 << 20
	// MaxWraps bounds the number of DEK wraps in a header.
	MaxWraps = 32
	// maxWrapField bounds Wrap.Kind and Wrap.ID (bytes).
	maxWrapField = 64
)

var (
	// ErrVaultFormat is wrapped by every error about a malformed vault file.
	ErrVaultFormat = errors.New("crypto: malformed vault file")
	// ErrVaultVersion is wrapped when a vault header has a version other
	// than VaultVersion (for example a file written by a newer release).
	ErrVaultVersion = errors.New("crypto: unsupported vault file version")
	// ErrBodyTooLarge is returned for a body above MaxBodySize.
	ErrBodyTooLarge = errors.New("crypto: vault body exceeds 16 MiB")
)

// Wrap is one wrapped copy of the vault's DEK in the header. JSON form:
//
//	{"kind":"password","wrapped":"<base64 std, 72 bytes>"}
//	{"kind":"device","id":"laptop-1","wrapped":"…"}
type Wrap struct {
	// Kind says which key wraps the DEK: "password" ([WrapPassword], the
	// KEK), or a SPEC §6 kind such as "recovery" or "device". 1 to 64
	// bytes of a-z, 0-9 and '-'.
	Kind string `json:"kind"`
	// ID tells apart several wraps of one kind (e.g. one per device), or
	// "". At most 64 bytes of A-Z, a-z, 0-9, '-', '_' and '.'.
	ID string `json:"id,omitempty"`
	// Wrapped is the output of [WrapDEK]: WrappedDEKSize (72) bytes.
	Wrapped []byte `json:"wrapped"`
}

// vaultHeader is the JSON header; field order is the written order.
type vaultHeader struct {
	V       int       `json:"v"`
	KDF     KDFParams `json:"kdf"`
	Salt    []byte    `json:"salt"`    // base64 std
	Created int64     `json:"created"` // unix seconds
	Wraps   []Wrap    `json:"wraps"`
}

// VaultFile is a parsed or newly created vault file: the JSON header (KDF
// parameters, salt, wrapped DEKs) and the sealed body. The body plaintext is
// opaque bytes to this package. Methods that change the file either succeed
// completely or leave it unchanged. A VaultFile is not safe for concurrent
// use.
type VaultFile struct {
	headerRaw []byte      // exact header bytes: the body's associated data
	header    vaultHeader // parsed headerRaw
	body      []byte      // sealed body: nonce ‖ ciphertext ‖ tag
}

// NewVaultFile creates a vault: a fresh random DEK, wrapped under kek with
// associated data WrapAD("password", salt), and body sealed under
// DeriveSubKey(dek, LabelSecrets) with the header bytes as associated data.
// kek must have been derived with salt and p ([DeriveKEK]); p must pass
// [KDFParams.Validate], salt must pass [CheckSalt] and body at most
// [MaxBodySize]. It returns the file and the DEK, which the caller keeps in
// memory while the vault is unlocked and zeroes on lock.
func NewVaultFile(kek *KEK, salt []byte, p KDFParams, body []byte) (*VaultFile, DEK, error) {
	if err := p.Validate(); err != nil {
		return nil, DEK{}, err
	}
	if err := CheckSalt(salt); err != nil {
		return nil, DEK{}, err
	}
	if len(body) > MaxBodySize {
		return nil, DEK{}, ErrBodyTooLarge
	}
	dek, err := NewDEK()
	if err != nil {
		return nil, DEK{}, err
	}
	wrapped, err := WrapDEK(kek, &dek, WrapAD(WrapPassword, salt))
	if err != nil {
		return nil, DEK{}, err
	}
	h := vaultHeader{
		V:       VaultVersion,
		KDF:     p,
		Salt:    bytes.Clone(salt),
		Created: time.Now().Unix(),
		Wraps:   []Wrap{{Kind: WrapPassword, Wrapped: wrapped}},
	}
	v := &VaultFile{}
	if err := v.commit(&dek, h, body); err != nil {
		return nil, DEK{}, err
	}
	return v, dek, nil
}

// ParseVaultFile parses the bytes of a vault file. It is strict: wrong
// magic, lengths beyond the limits (header ≤ MaxHeaderSize, sealed body ≤
// MaxBodySize+Overhead), trailing bytes, malformed or unknown JSON header
// fields, invalid KDF parameters, a salt that fails [CheckSalt], a wrap of the
// wrong size, or not exactly one password wrap are errors wrapping
// [ErrVaultFormat]; a header "v" other than 1 wraps [ErrVaultVersion]. It
// never panics. b is copied. Parsing does not authenticate the header: that
// happens in [VaultFile.OpenBody], whose associated data is the header.
func ParseVaultFile(b []byte) (*VaultFile, error) {
	rest, ok := bytes.CutPrefix(b, []byte(VaultMagic))
	if !ok {
		return nil, vaultFormatError("bad magic")
	}
	headerRaw, rest, ok := cutLenPrefixed(rest, MaxHeaderSize)
	if !ok {
		return nil, vaultFormatError("bad header length")
	}
	body, rest, ok := cutLenPrefixed(rest, MaxBodySize+Overhead)
	if !ok || len(body) < Overhead {
		return nil, vaultFormatError("bad body length")
	}
	if len(rest) != 0 {
		return nil, vaultFormatError("trailing bytes")
	}
	var ver struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(headerRaw, &ver); err != nil || ver.V == nil {
		return nil, vaultFormatError("header is not a JSON object with a version")
	}
	if *ver.V != VaultVersion {
		return nil, &wrapErr{sentinel: ErrVaultVersion, msg: "only version 1 is supported"}
	}
	var h vaultHeader
	if err := decodeStrict(headerRaw, &h); err != nil {
		return nil, vaultFormatError("bad header JSON")
	}
	if err := h.check(); err != nil {
		return nil, err
	}
	return &VaultFile{headerRaw: bytes.Clone(headerRaw), header: h, body: bytes.Clone(body)}, nil
}

// cutLenPrefixed splits a uint32 big-endian length and that many bytes off
// b, refusing lengths above limit.
func cutLenPrefixed(b []byte, limit int) (field, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(limit) || uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// check validates a parsed header.
func (h *vaultHeader) check() error {
	if h.V != VaultVersion {
		return &wrapErr{sentinel: ErrVaultVersion, msg: "only version 1 is supported"}
	}
	if err := h.KDF.Validate(); err != nil {
		return &wrapErr{sentinel: ErrVaultFormat, msg: "kdf parameters: " + err.Error(), cause: err}
	}
	if err := CheckSalt(h.Salt); err != nil {
		return &wrapErr{sentinel: ErrVaultFormat, msg: "salt: " + err.Error(), cause: err}
	}
	if h.Created < 0 {
		return vaultFormatError("bad created time")
	}
	if len(h.Wraps) > MaxWraps {
		return vaultFormatError("too many wraps")
	}
	passwords := 0
	for i, w := range h.Wraps {
		if err := w.check(); err != nil {
			return err
		}
		if w.Kind == WrapPassword {
			passwords++
		}
		for _, o := range h.Wraps[:i] {
			if o.Kind == w.Kind && o.ID == w.ID {
				return vaultFormatError("duplicate wrap")
			}
		}
	}
	if passwords != 1 {
		return vaultFormatError("need exactly one password wrap")
	}
	return nil
}

// check validates one wrap's fields.
func (w *Wrap) check() error {
	if !validName(w.Kind, false) || (w.ID != "" && !validName(w.ID, true)) {
		return vaultFormatError("bad wrap kind or id")
	}
	if w.Kind == WrapPassword && w.ID != "" {
		return vaultFormatError("password wrap has an id")
	}
	if len(w.Wrapped) != WrappedDEKSize {
		return vaultFormatError("bad wrapped key size")
	}
	return nil
}

// validName reports whether s is 1..64 bytes of a-z, 0-9 and '-' (kinds),
// or additionally A-Z, '_' and '.' when id is set.
func validName(s string, id bool) bool {
	if len(s) == 0 || len(s) > maxWrapField {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		case id && ('A' <= c && c <= 'Z' || c == '_' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func vaultFormatError(msg string) error { return &wrapErr{sentinel: ErrVaultFormat, msg: msg} }

// Marshal returns the file bytes:
//
//	"OCMTVLT1" ‖ uint32 BE len(header) ‖ header ‖ uint32 BE len(body) ‖ body
//
// Write them with [WriteFileAtomic].
func (v *VaultFile) Marshal() []byte {
	out := make([]byte, 0, len(VaultMagic)+4+len(v.headerRaw)+4+len(v.body))
	out = append(out, VaultMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(v.headerRaw)))
	out = append(out, v.headerRaw...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(v.body)))
	return append(out, v.body...)
}

// KDF returns the Argon2id parameters the password KEK is derived with.
func (v *VaultFile) KDF() KDFParams { return v.header.KDF }

// Salt returns a copy of the Argon2id salt of the password KEK.
func (v *VaultFile) Salt() []byte { return bytes.Clone(v.header.Salt) }

// Created returns the vault's creation time (second precision).
func (v *VaultFile) Created() time.Time { return time.Unix(v.header.Created, 0) }

// Wraps returns a copy of the header's DEK wraps, password wrap included.
func (v *VaultFile) Wraps() []Wrap {
	out := make([]Wrap, len(v.header.Wraps))
	for i, w := range v.header.Wraps {
		out[i] = Wrap{Kind: w.Kind, ID: w.ID, Wrapped: bytes.Clone(w.Wrapped)}
	}
	return out
}

// Unlock unwraps the DEK from the password wrap with kek and associated
// data WrapAD("password", salt). A wrong key, or a wrap taken from another
// vault, returns [ErrDecrypt]. Unlock does not authenticate the rest of the
// header; [VaultFile.OpenBody] does, so read the body before trusting the
// header.
func (v *VaultFile) Unlock(kek *KEK) (DEK, error) {
	for _, w := range v.header.Wraps {
		if w.Kind == WrapPassword {
			return UnwrapDEK(kek, w.Wrapped, WrapAD(WrapPassword, v.header.Salt))
		}
	}
	return DEK{}, ErrDecrypt // unreachable: parsing requires a password wrap
}

// OpenBody authenticates the header and body and returns the body
// plaintext, opened under DeriveSubKey(dek, LabelSecrets) with the exact
// header bytes as associated data. A wrong DEK or any change to header or
// body returns [ErrDecrypt].
func (v *VaultFile) OpenBody(dek *DEK) ([]byte, error) {
	sk, err := DeriveSubKey(dek, LabelSecrets)
	if err != nil {
		return nil, err
	}
	defer sk.Zero()
	return Open((*[32]byte)(&sk), v.body, v.headerRaw)
}

// SealBody replaces the body with a fresh sealing of body (at most
// [MaxBodySize]) under the same header contents. dek must open the current body
// (otherwise [ErrDecrypt]): this guards against sealing with a key that no
// wrap can recover, which would lose the vault.
func (v *VaultFile) SealBody(dek *DEK, body []byte) error {
	if len(body) > MaxBodySize {
		return ErrBodyTooLarge
	}
	old, err := v.OpenBody(dek)
	if err != nil {
		return err
	}
	clear(old)
	return v.commit(dek, v.header, body)
}

// Rewrap changes the password: it unwraps the DEK with oldKEK, wraps it
// again under newKEK (derived from the new password with newSalt and
// newParams) and stores the new salt and parameters in the header. The DEK
// and the other wraps stay the same. Because the header is the body's
// associated data, the body is re-sealed (same plaintext, new nonce) under
// the new header. A wrong oldKEK, or a header or body that fails
// authentication, returns [ErrDecrypt] and leaves v unchanged.
func (v *VaultFile) Rewrap(oldKEK, newKEK *KEK, newSalt []byte, newParams KDFParams) error {
	if err := newParams.Validate(); err != nil {
		return err
	}
	if err := CheckSalt(newSalt); err != nil {
		return err
	}
	dek, err := v.Unlock(oldKEK)
	if err != nil {
		return err
	}
	defer dek.Zero()
	body, err := v.OpenBody(&dek)
	if err != nil {
		return err
	}
	defer clear(body)
	wrapped, err := WrapDEK(newKEK, &dek, WrapAD(WrapPassword, newSalt))
	if err != nil {
		return err
	}
	h := v.header
	h.KDF = newParams
	h.Salt = bytes.Clone(newSalt)
	h.Wraps = v.Wraps()
	for i := range h.Wraps {
		if h.Wraps[i].Kind == WrapPassword {
			h.Wraps[i].Wrapped = wrapped
		}
	}
	return v.commit(&dek, h, body)
}

// PutWrap adds w to the header, replacing an existing wrap with the same
// Kind and ID, and re-seals the body under the new header. w.Wrapped must be
// the output of [WrapDEK] of this vault's DEK (the caller chooses the key
// and the associated data, e.g. WrapAD(w.Kind, binding)); the password wrap
// cannot be replaced this way (use [VaultFile.Rewrap]). dek must open the
// current body.
func (v *VaultFile) PutWrap(dek *DEK, w Wrap) error {
	if err := w.check(); err != nil {
		return err
	}
	if w.Kind == WrapPassword {
		return vaultFormatError("use Rewrap to change the password wrap")
	}
	h := v.header
	h.Wraps = v.Wraps()
	replaced := false
	for i := range h.Wraps {
		if h.Wraps[i].Kind == w.Kind && h.Wraps[i].ID == w.ID {
			h.Wraps[i].Wrapped = bytes.Clone(w.Wrapped)
			replaced = true
		}
	}
	if !replaced {
		h.Wraps = append(h.Wraps, Wrap{Kind: w.Kind, ID: w.ID, Wrapped: bytes.Clone(w.Wrapped)})
	}
	return v.reseal(dek, h)
}

// RemoveWrap removes the wrap with the given kind and id (revoking, e.g., a
// device) and re-seals the body. Removing the password wrap is refused;
// removing a wrap that does not exist is not an error. dek must open the
// current body.
func (v *VaultFile) RemoveWrap(dek *DEK, kind, id string) error {
	if kind == WrapPassword {
		return vaultFormatError("the password wrap cannot be removed")
	}
	h := v.header
	h.Wraps = nil
	for _, w := range v.Wraps() {
		if w.Kind != kind || w.ID != id {
			h.Wraps = append(h.Wraps, w)
		}
	}
	return v.reseal(dek, h)
}

// ErrNoWrap is returned by [VaultFile.UnlockWrap] when the vault has no
// wrap of that kind and id.
var ErrNoWrap = errors.New("crypto: no such way into the vault")

// wayAD is the associated data of a non-password wrap:
// WrapAD(kind, id), so a wrap cannot be moved to another kind or id.
func wayAD(kind, id string) []byte { return WrapAD(kind, []byte(id)) }

// AddWrap wraps dek under kek as a way in of the given kind and id
// (associated data WrapAD(kind, id)), replacing a wrap with the same kind
// and id, and re-seals the body under the new header. The password wrap
// cannot be added this way (use [VaultFile.SetPassword]). dek must open the
// current body (otherwise [ErrDecrypt]); v is unchanged on error.
func (v *VaultFile) AddWrap(dek *DEK, kind, id string, kek *KEK) error {
	if kind == WrapPassword {
		return vaultFormatError("use SetPassword to change the password wrap")
	}
	wrapped, err := WrapDEK(kek, dek, wayAD(kind, id))
	if err != nil {
		return err
	}
	return v.PutWrap(dek, Wrap{Kind: kind, ID: id, Wrapped: wrapped})
}

// HasWrap reports whether the header has a wrap of that kind and id.
func (v *VaultFile) HasWrap(kind, id string) bool {
	for _, w := range v.header.Wraps {
		if w.Kind == kind && w.ID == id {
			return true
		}
	}
	return false
}

// UnlockWrap unwraps the DEK from the wrap of the given kind and id with
// kek: the password wrap as [VaultFile.Unlock] does, any other with
// associated data WrapAD(kind, id) ([VaultFile.AddWrap]). It returns
// [ErrNoWrap] if there is no such wrap and [ErrDecrypt] for a wrong key.
// Like Unlock it does not authenticate the rest of the header.
func (v *VaultFile) UnlockWrap(kind, id string, kek *KEK) (DEK, error) {
	if kind == WrapPassword && id == "" {
		return v.Unlock(kek)
	}
	for _, w := range v.header.Wraps {
		if w.Kind == kind && w.ID == id {
			return UnwrapDEK(kek, w.Wrapped, wayAD(kind, id))
		}
	}
	return DEK{}, ErrNoWrap
}

// SetPassword replaces the password wrap with one under newKEK (derived
// from the new password with newSalt and newParams, which it stores in the
// header), given the DEK from any way in: this is how a recovery path
// sets a new password, after which the old one no longer opens the vault.
// With keepOthers false every other wrap is removed too ("sign out all
// devices"). dek must open the current body (otherwise [ErrDecrypt]); v is
// unchanged on error.
func (v *VaultFile) SetPassword(dek *DEK, newKEK *KEK, newSalt []byte, newParams KDFParams, keepOthers bool) error {
	if err := newParams.Validate(); err != nil {
		return err
	}
	if err := CheckSalt(newSalt); err != nil {
		return err
	}
	body, err := v.OpenBody(dek)
	if err != nil {
		return err
	}
	defer clear(body)
	wrapped, err := WrapDEK(newKEK, dek, WrapAD(WrapPassword, newSalt))
	if err != nil {
		return err
	}
	h := v.header
	h.KDF = newParams
	h.Salt = bytes.Clone(newSalt)
	h.Wraps = []Wrap{{Kind: WrapPassword, Wrapped: wrapped}}
	if keepOthers {
		for _, w := range v.Wraps() {
			if w.Kind != WrapPassword {
				h.Wraps = append(h.Wraps, w)
			}
		}
	}
	return v.commit(dek, h, body)
}

// reseal opens the body with dek and seals it again under header h.
func (v *VaultFile) reseal(dek *DEK, h vaultHeader) error {
	body, err := v.OpenBody(dek)
	if err != nil {
		return err
	}
	defer clear(body)
	return v.commit(dek, h, body)
}

// commit encodes h, checks it, seals body under it and only then replaces
// v's state.
func (v *VaultFile) commit(dek *DEK, h vaultHeader, body []byte) error {
	if err := h.check(); err != nil {
		return err
	}
	raw, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if len(raw) > MaxHeaderSize {
		return vaultFormatError("header too large")
	}
	sk, err := DeriveSubKey(dek, LabelSecrets)
	if err != nil {
		return err
	}
	defer sk.Zero()
	sealed, err := Seal((*[32]byte)(&sk), body, raw)
	if err != nil {
		return err
	}
	v.headerRaw, v.header, v.body = raw, h, sealed
	return nil
}
