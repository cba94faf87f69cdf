package vault

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/web"
)

// Ways back in (SPEC §6, issue 10): every way is one more wrap of the
// same DEK in the vault header (crypto.VaultFile.AddWrap), and the "ways"
// record of the sealed body says what each one is. A wrap and its record
// are always written together, in one atomic write of the vault file
// (keyring.changeLocked), so a crash leaves either the old or the new set.
//
// The container never sees a phrase, backup key, recovery secret or PRF
// output: the browser derives the KEK from it (crypto.PhraseKEK and
// friends, run in kdf.wasm) and sends only that, proved against a
// single-use challenge exactly like the password's.

// waysState is the "ways" record.
type waysState struct {
	Phrase    *wayInfo                `json:"phrase,omitempty"`    // recovery phrase (crypto.WrapPhrase)
	BackupKey *wayInfo                `json:"backupKey,omitempty"` // printed backup key (crypto.WrapBackupKey)
	Social    *socialConfig           `json:"social,omitempty"`    // trusted contacts (crypto.WrapSocial)
	Passkeys  map[string]*passkeyInfo `json:"passkeys,omitempty"`  // by wrap id (crypto.WrapPasskey)
}

// wayInfo describes a way in that has one wrap and no other state.
type wayInfo struct {
	SetAt int64 `json:"setAt"` // unix seconds
}

// deepCopy copies src into dst (pointers to values of the same JSON
// shape) through JSON, so that the copy shares nothing with src.
func deepCopy(dst, src any) error {
	b, err := json.Marshal(src)
	if err != nil {
		return err
	}
	defer clear(b)
	return json.Unmarshal(b, dst)
}

// putWayLocked adds (or replaces) the wrap of kind and id under kek and
// applies change (which records the way in sec.Ways), in one atomic write.
// k.mu held, unlocked.
func (k *keyring) putWayLocked(kind, id string, kek *crypto.KEK, change func(*secrets) error) error {
	return k.changeLocked(func(next *crypto.VaultFile) error { return next.AddWrap(k.dek, kind, id, kek) }, change)
}

// removeWayLocked removes the wrap of kind and id (if any) and applies
// change, in one atomic write. k.mu held, unlocked.
func (k *keyring) removeWayLocked(kind, id string, change func(*secrets) error) error {
	return k.changeLocked(func(next *crypto.VaultFile) error {
		if !next.HasWrap(kind, id) {
			return nil
		}
		return next.RemoveWrap(k.dek, kind, id)
	}, change)
}

// unlockKinds are the ways whose KEK the browser sends to POST /unlock
// and POST /recovery/reset (a passkey has its own ceremony).
var unlockKinds = map[string]string{
	crypto.WrapPassword:  "password",
	crypto.WrapPhrase:    "recovery phrase",
	crypto.WrapBackupKey: "backup key",
	crypto.WrapSocial:    "recovery secret from your trusted contacts",
}

// unwrapWayLocked unwraps the DEK from the wrap of kind and id with kek,
// counting a wrong key toward the unlock backoff like a wrong password.
// Errors: 404 no_such_way, 401 wrong_key. k.mu held.
func (s *Server) unwrapWayLocked(kind, id string, kek *crypto.KEK) (crypto.DEK, error) {
	k := s.keys
	dek, err := k.file.UnlockWrap(kind, id, kek)
	switch {
	case errors.Is(err, crypto.ErrNoWrap):
		return crypto.DEK{}, api.E(http.StatusNotFound, "no_such_way", "this vault has no "+wayName(kind)+" set up")
	case err != nil:
		k.failLocked()
		s.log.Warn("unlock failed: wrong key", "kind", kind, "failures", k.failures)
		return crypto.DEK{}, api.E(http.StatusUnauthorized, "wrong_key", "wrong "+wayName(kind))
	}
	k.failures = 0
	return dek, nil
}

func wayName(kind string) string {
	if n, ok := unlockKinds[kind]; ok {
		return n
	}
	if kind == crypto.WrapPasskey {
		return "passkey"
	}
	return kind
}

// openWithLocked opens the vault with a DEK got from any way in,
// replacing whatever was open. k.mu held.
func (s *Server) openWithLocked(dek crypto.DEK) error {
	s.keys.lockLocked()
	if err := s.keys.openLocked(dek); err != nil {
		return err
	}
	s.dropHibernation() // opened by a person; an older hibernation wrap is of no further use
	return nil
}

// newPassword is a validated new password wrap request.
type newPassword struct {
	kek        *crypto.KEK
	salt       []byte
	kdf        crypto.KDFParams
	signOutAll bool // remove every other way in
}

// parseNewPassword validates the new-password fields of POST /password and
// POST /recovery/reset. The caller zeroes np.kek.
func parseNewPassword(derivedKey, saltB64 string, kdf crypto.KDFParams, signOutAll bool) (newPassword, error) {
	salt, err := base64.StdEncoding.DecodeString(saltB64)
	if err != nil {
		return newPassword{}, api.BadRequest("invalid_salt", "newSalt must be 16 to 64 random bytes, base64")
	}
	if err := crypto.CheckSalt(salt); err != nil {
		return newPassword{}, api.BadRequest("invalid_salt", "newSalt must be 16 to 64 random bytes, base64 (not all zero or a pattern)")
	}
	if err := checkKDF("newKdf", kdf); err != nil {
		return newPassword{}, err
	}
	kek, err := decodeKey(derivedKey)
	if err != nil {
		return newPassword{}, api.BadRequest("invalid_key", "newDerivedKey must be 32 bytes, base64")
	}
	return newPassword{kek: kek, salt: salt, kdf: kdf, signOutAll: signOutAll}, nil
}

// setPasswordLocked replaces the password wrap with np's, given the DEK
// from any way in; with np.signOutAll every other wrap goes too and the
// ways record is emptied. The vault is opened with dek if it was locked,
// and stays open only if stayOpen. k.mu held.
func (s *Server) setPasswordLocked(dek crypto.DEK, np newPassword, stayOpen bool) error {
	k := s.keys
	wasOpen := k.sec != nil
	if wasOpen {
		dek.Zero()
	} else if err := k.openLocked(dek); err != nil {
		return err
	}
	err := k.changeLocked(func(next *crypto.VaultFile) error {
		return next.SetPassword(k.dek, np.kek, np.salt, np.kdf, !np.signOutAll)
	}, func(sec *secrets) error {
		if np.signOutAll {
			sec.Ways = waysState{}
		}
		return nil
	})
	if err == nil && np.signOutAll {
		s.dropHibernation()
		s.prunePasskeyRecordLocked() // the passkeys' wraps are gone: so are their public entries
	}
	if !wasOpen && !stayOpen {
		k.lockLocked()
	}
	return err
}

// Wire types of the ways API.
type (
	wrapJSON struct {
		Kind string `json:"kind"`
		ID   string `json:"id,omitempty"`
	}
	// waysJSON is GET /vault/ways: the wraps in the header (readable while
	// locked, so the unlock dialog can offer a passkey) and, when unlocked,
	// what each way is.
	waysJSON struct {
		Locked    bool              `json:"locked"`
		Wraps     []wrapJSON        `json:"wraps"`
		Phrase    *wayInfo          `json:"phrase"`
		BackupKey *wayInfo          `json:"backupKey"`
		Social    *socialConfig     `json:"social"`
		Passkeys  []passkeyItemJSON `json:"passkeys"` // as GET /passkeys lists them
	}
	putWayReq struct {
		DerivedKey string `json:"derivedKey"` // base64 of the 32-byte KEK derived in the browser
	}
	resetReq struct {
		unlockReq
		NewDerivedKey string           `json:"newDerivedKey"`
		NewSalt       string           `json:"newSalt"`
		NewKDF        crypto.KDFParams `json:"newKdf"`
		SignOutAll    bool             `json:"signOutAll"`
	}
)

func (s *Server) waysRoutes(g *echo.Group) {
	ways := strings.TrimPrefix(api.VaultWaysPath, "/vault")
	g.GET(ways, s.getWays)
	g.PUT(ways+"/:kind", s.putWay)
	g.DELETE(ways+"/:kind", s.deleteWay)
	g.POST(strings.TrimPrefix(api.VaultRecoveryResetPath, "/vault"), s.recoveryReset)
}

// waysLocked builds the GET /ways answer. k.mu held.
func (s *Server) waysLocked() (waysJSON, error) {
	k := s.keys
	out := waysJSON{Locked: k.sec == nil, Wraps: []wrapJSON{}, Passkeys: []passkeyItemJSON{}}
	for _, w := range k.file.Wraps() {
		out.Wraps = append(out.Wraps, wrapJSON{Kind: w.Kind, ID: w.ID})
	}
	if k.sec == nil {
		return out, nil
	}
	err := k.viewLocked(func(sec *secrets) error {
		w := sec.Ways
		out.Phrase, out.BackupKey, out.Social = w.Phrase, w.BackupKey, w.Social
		out.Passkeys = s.passkeyItemsLocked(sec)
		return nil
	}, recWays)
	return out, err
}

func (s *Server) getWays(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.file == nil {
		return api.Conflict("vault_not_initialized", "create your vault first")
	}
	k.expireLocked()
	out, err := s.waysLocked()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// simpleWay returns the ways record field of a way that is one wrap with
// id "" (phrase, backup key), or nil for other kinds.
func simpleWay(kind string) func(*waysState) **wayInfo {
	switch kind {
	case crypto.WrapPhrase:
		return func(w *waysState) **wayInfo { return &w.Phrase }
	case crypto.WrapBackupKey:
		return func(w *waysState) **wayInfo { return &w.BackupKey }
	}
	return nil
}

// putWay is PUT /ways/{phrase|backup-key} {"derivedKey"}: adds or
// replaces that way (a new phrase replaces the old one). Unlocked only.
func (s *Server) putWay(c echo.Context) error {
	kind := c.Param("kind")
	field := simpleWay(kind)
	if field == nil {
		return api.BadRequest("invalid_way", `way must be "phrase" or "backup-key"`)
	}
	var req putWayReq
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	kek, err := decodeKey(req.DerivedKey)
	if err != nil {
		return err
	}
	defer kek.Zero()
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	now := k.wall().Unix()
	if err := k.putWayLocked(kind, "", kek, func(sec *secrets) error {
		*field(&sec.Ways) = &wayInfo{SetAt: now}
		return nil
	}); err != nil {
		return err
	}
	s.log.Info("way into the vault set up", "kind", kind)
	out, err := s.waysLocked()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// deleteWay is DELETE /ways/{phrase|backup-key}. Unlocked only.
func (s *Server) deleteWay(c echo.Context) error {
	kind := c.Param("kind")
	field := simpleWay(kind)
	if field == nil {
		return api.BadRequest("invalid_way", `way must be "phrase" or "backup-key"`)
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	if !k.file.HasWrap(kind, "") {
		return api.E(http.StatusNotFound, "no_such_way", "this vault has no "+wayName(kind)+" set up")
	}
	if err := k.removeWayLocked(kind, "", func(sec *secrets) error {
		*field(&sec.Ways) = nil
		return nil
	}); err != nil {
		return err
	}
	s.log.Info("way into the vault removed", "kind", kind)
	out, err := s.waysLocked()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// recoveryReset is POST /recovery/reset: proves a recovery KEK (phrase,
// backup key, trusted contacts) against a challenge like an unlock, then
// sets a new password wrap (the old password no longer opens the vault)
// and opens the vault. Other ways stay unless signOutAll.
func (s *Server) recoveryReset(c echo.Context) error {
	var req resetReq
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	if req.Kind == "" || req.Kind == crypto.WrapPassword {
		return api.BadRequest("invalid_way", `kind must be "phrase", "backup-key" or "social" (change a known password with POST /vault/password)`)
	}
	np, err := parseNewPassword(req.NewDerivedKey, req.NewSalt, req.NewKDF, req.SignOutAll)
	if err != nil {
		return err
	}
	defer np.kek.Zero()
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	dek, err := s.checkUnlockLocked(req.unlockReq)
	if err != nil {
		return err
	}
	k.lockLocked()
	if err := s.setPasswordLocked(dek, np, true); err != nil {
		return err
	}
	s.dropHibernation()
	s.log.Info("vault password reset", "way", req.Kind, "signOutAll", req.SignOutAll)
	return c.JSON(http.StatusOK, map[string]int64{"expiresIn": int64(k.expiresIn().Seconds())})
}
