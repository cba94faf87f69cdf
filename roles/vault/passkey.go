package vault

// Passkey unlock (issue 10, item 4; SPEC §6): a WebAuthn credential with
// the PRF extension is one more way into the vault.
//
// Key derivation, all in the BROWSER (ui/static/passkey.js):
//
//	salt = SHA-256("ocmt/v1/prf/" + vault user id)          (sent by the vault in the options, prf.eval.first)
//	P    = the authenticator's PRF output for salt            (32 bytes; never leaves the page)
//	KEK  = HKDF-SHA256(ikm=P, salt=empty, info="ocmt/v1/kek/passkey")   (WebCrypto HKDF, 32 bytes)
//
// Only the KEK is sent, to this container, exactly like the key the
// browser derives from the password; the raw PRF output goes nowhere.
// The vault adds a DEK wrap under the KEK (crypto.WrapPasskey, id = a
// random id the vault chose for the passkey) and keeps the credential
// record in the sealed body (Ways.Passkeys).
//
// The vault is the WebAuthn relying party (github.com/go-webauthn/webauthn):
// RP ID = the host of the public URL the user's browser sees
// (Options.PublicURL), the only accepted origin = that URL's origin. An
// unlock verifies the assertion (challenge, origin, RP ID, user presence
// and verification, signature, sign counter) and only then tries the
// KEK on the passkey's wrap; the AEAD is the real check.
//
// While the vault is locked the sealed body cannot be read, yet an unlock
// needs the credential ids (allowCredentials) and public keys. They are
// kept, with nothing secret, in the public record vault.passkeys.json
// beside the vault file (written atomically, owner-only):
//
//	{"v":1,"passkeys":[{"id":"<wrap id>","credential":<webauthn.Credential JSON>}]}
//
// The vault header's wraps decide which entries count: an entry whose
// passkey wrap is not in the header is ignored (and pruned at the next
// write). So the record can never add a way in, a crash between the two
// writes leaves no usable stale entry (registration writes the record
// first, removal the vault file first), and "sign out all devices", which
// drops every wrap but the new password's, disables every passkey at
// once. The record is not authenticated: whoever can write the volume can
// swap a public key, but that only lets a signature pass; the wrap still
// needs the KEK from the authenticator. After the vault opens, the sealed
// copy of the credential (authenticated) is checked too: the counter just
// presented must be ahead of the last one recorded there. The use (last
// used, sign counter) is recorded in the sealed copy right after the
// answer, so that an unlock never waits for the disk.
//
// Routes (below /vault; JSON; api.Error on failure):
//
//	GET    /passkeys                   unlocked → {"passkeys":[passkeyItemJSON]}
//	POST   /passkeys/register/begin    unlocked, {"name"} → {"ceremonyId","publicKey":<PublicKeyCredentialCreationOptionsJSON>}
//	POST   /passkeys/register/finish   unlocked, {"ceremonyId","credential":<RegistrationResponseJSON>,"derivedKey":b64 KEK} → 201 passkeyItemJSON
//	DELETE /passkeys/:id               unlocked → 204 (removes the wrap: that passkey no longer opens the vault)
//	POST   /passkeys/unlock/begin      locked or not → {"ceremonyId","publicKey":<PublicKeyCredentialRequestOptionsJSON>}; 404 no_passkeys
//	POST   /passkeys/unlock/finish     {"ceremonyId","credential":<AuthenticationResponseJSON>,"derivedKey":b64 KEK} → {"expiresIn"},
//	                                   header Server-Timing: vault;dur=<ms> (the vault's time: lock wait, verify, unwrap, open)
//
// Errors: 400 invalid_name, invalid_credential, invalid_key,
// ceremony_invalid (unknown, used or expired; ceremonies last 2 minutes),
// prf_output_sent; 401 passkey_rejected (any assertion check, a removed
// passkey, a counter not ahead), wrong_key (the KEK does not open the
// wrap); 404 no_passkeys; 409 passkeys_unavailable (public URL without a
// host name), passkey_exists, too_many_passkeys (20); 423 vault_locked
// (register, list, delete); 429 unlock_backoff (failures count toward the
// password's backoff). Management audits unlocks, additions and removals
// (api.VaultPasskey*Path).
//
// The credential JSON must not carry PRF results (the browser sends empty
// clientExtensionResults); a response that does is refused
// (400 prf_output_sent) and nothing of it is kept or logged.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/web"
)

// Passkey rules.
const (
	passkeyFileName     = "vault.passkeys.json" // public record: credential ids and public keys (not secret)
	passkeyCeremonyTTL  = 2 * time.Minute       // begin → finish
	maxPasskeyCeremony  = 16                    // pending ceremonies kept; the oldest goes first
	maxPasskeys         = 20                    // registered passkeys per vault
	maxPasskeyNameRunes = 64
	prfSaltPrefix       = "ocmt/v1/prf/"
)

// passkeyIDRE is the form of a passkey's wrap id: 16 base64url characters.
var passkeyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16}$`)

// passkeyItemJSON is a passkey as the API shows it.
type passkeyItemJSON struct {
	ID           string `json:"id"`           // the vault's id (DELETE /passkeys/{id})
	CredentialID string `json:"credentialId"` // the WebAuthn credential id, base64url (public)
	Name         string `json:"name"`
	AddedAt      int64  `json:"addedAt"`  // unix seconds
	LastUsed     int64  `json:"lastUsed"` // unix seconds, 0 = never
}

// passkeyRecord is the public record file (see the package comment above).
type passkeyRecord struct {
	V        int                  `json:"v"`
	Passkeys []passkeyRecordEntry `json:"passkeys"`
}

type passkeyRecordEntry struct {
	ID         string              `json:"id"`
	Credential webauthn.Credential `json:"credential"`
}

// passkeyCeremony is a begun registration or unlock, kept until its
// finish (single use) or passkeyCeremonyTTL.
type passkeyCeremony struct {
	register bool
	name     string
	session  webauthn.SessionData
	expires  time.Time
}

// passkeyState is the relying party, the pending ceremonies and the
// unlocks not yet recorded in the sealed body. cers and uses are guarded
// by keyring.mu like the rest of the vault state.
type passkeyState struct {
	once sync.Once
	rp   *webauthn.WebAuthn
	err  error
	cers map[string]*passkeyCeremony
	uses map[string]passkeyUse // by passkey id; written to the vault by recordPasskeyUses
}

// passkeyUse is one unlock with a passkey: what the sealed copy records.
type passkeyUse struct {
	counter uint32
	flags   webauthn.CredentialFlags
	at      int64 // unix seconds
}

func (s *Server) passkeyRoutes(g *echo.Group) {
	in := func(p string) string { return strings.TrimPrefix(p, "/vault") }
	g.GET(in(api.VaultPasskeysPath), s.listPasskeys)
	g.POST(in(api.VaultPasskeysPath)+"/register/begin", s.passkeyRegisterBegin)
	g.POST(in(api.VaultPasskeyRegisterPath), s.passkeyRegisterFinish)
	g.DELETE(in(api.VaultPasskeysPath)+"/:id", s.deletePasskey)
	g.POST(in(api.VaultPasskeysPath)+"/unlock/begin", s.passkeyUnlockBegin)
	g.POST(in(api.VaultPasskeyUnlockPath), s.passkeyUnlockFinish)
}

// relyingParty returns the WebAuthn relying party for the public URL, or
// 409 passkeys_unavailable when that URL cannot be one (an IP address).
func (s *Server) relyingParty() (*webauthn.WebAuthn, error) {
	p := &s.passkeys
	p.once.Do(func() {
		u, err := url.Parse(s.publicURL)
		if err != nil || u.Hostname() == "" {
			p.err = fmt.Errorf("public URL %q has no host", s.publicURL)
			return
		}
		p.rp, p.err = webauthn.New(&webauthn.Config{
			RPID:          u.Hostname(),
			RPDisplayName: "ocmt",
			RPOrigins:     []string{u.Scheme + "://" + u.Host},
			AuthenticatorSelection: protocol.AuthenticatorSelection{
				ResidentKey:      protocol.ResidentKeyRequirementPreferred,
				UserVerification: protocol.VerificationRequired,
			},
			AttestationPreference: protocol.PreferNoAttestation,
			Timeouts: webauthn.TimeoutsConfig{
				Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: passkeyCeremonyTTL, TimeoutUVD: passkeyCeremonyTTL},
				Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: passkeyCeremonyTTL, TimeoutUVD: passkeyCeremonyTTL},
			},
		})
	})
	if p.err != nil {
		return nil, &api.Error{Status: http.StatusConflict, Code: "passkeys_unavailable",
			Msg: "passkeys need this server to be reached by a host name (not an IP address); use the password", Err: p.err}
	}
	return p.rp, nil
}

// prfSalt is the PRF input: SHA-256("ocmt/v1/prf/" + user id).
func (s *Server) prfSalt() []byte {
	h := sha256.Sum256([]byte(prfSaltPrefix + s.userID))
	return h[:]
}

// passkeyUser is the vault's owner as go-webauthn sees it.
type passkeyUser struct {
	id    []byte
	creds []webauthn.Credential
}

func (u passkeyUser) WebAuthnID() []byte                         { return u.id }
func (u passkeyUser) WebAuthnName() string                       { return "ocmt vault" }
func (u passkeyUser) WebAuthnDisplayName() string                { return "ocmt vault" }
func (u passkeyUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func (s *Server) webauthnUser(creds []webauthn.Credential) (passkeyUser, error) {
	if s.userID == "" {
		return passkeyUser{}, api.Conflict("passkeys_unavailable", "this vault has no owner id; passkeys are not available")
	}
	id := []byte(s.userID)
	if len(id) > 64 {
		sum := sha256.Sum256(id)
		id = sum[:]
	}
	return passkeyUser{id: id, creds: creds}, nil
}

// ---- the public record ----

// readPasskeyRecordLocked returns the entries of the public record whose
// wrap is in the vault header. A missing file is an empty record. k.mu held.
func (s *Server) readPasskeyRecordLocked() ([]passkeyRecordEntry, error) {
	k := s.keys
	b, err := os.ReadFile(filepath.Join(s.dataDir, passkeyFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read passkey record: %w", err)
	}
	var rec passkeyRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.V != 1 {
		return nil, &api.Error{Status: http.StatusInternalServerError, Code: "passkey_record_unreadable",
			Msg: "the vault's passkey list (" + passkeyFileName + ") is unreadable; unlock with your password, then add your passkeys again"}
	}
	out := rec.Passkeys[:0]
	for _, e := range rec.Passkeys {
		if k.file != nil && passkeyIDRE.MatchString(e.ID) && k.file.HasWrap(crypto.WrapPasskey, e.ID) {
			out = append(out, e)
		}
	}
	return out, nil
}

// writePasskeyRecordLocked writes entries as the public record, dropping
// those whose wrap is gone from the header unless keep names them (a
// registration writes its entry before the wrap). k.mu held.
func (s *Server) writePasskeyRecordLocked(entries []passkeyRecordEntry, keep string) error {
	k := s.keys
	rec := passkeyRecord{V: 1, Passkeys: []passkeyRecordEntry{}}
	for _, e := range entries {
		if e.ID == keep || (k.file != nil && k.file.HasWrap(crypto.WrapPasskey, e.ID)) {
			rec.Passkeys = append(rec.Passkeys, e)
		}
	}
	sort.Slice(rec.Passkeys, func(i, j int) bool { return rec.Passkeys[i].ID < rec.Passkeys[j].ID })
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return crypto.WriteFileAtomic(filepath.Join(s.dataDir, passkeyFileName), b, 0o600)
}

// prunePasskeyRecordLocked drops from the public record every entry whose
// wrap is gone from the header (after "sign out all devices"), locked or
// not. k.mu held.
func (s *Server) prunePasskeyRecordLocked() {
	if _, err := os.Stat(filepath.Join(s.dataDir, passkeyFileName)); err != nil {
		return // none yet
	}
	entries, err := s.readPasskeyRecordLocked()
	if err == nil {
		err = s.writePasskeyRecordLocked(entries, "")
	}
	if err != nil {
		s.log.Warn("passkey record not pruned", "err", err)
	}
}

// syncPasskeyRecordLocked rewrites the public record from the sealed
// passkeys (the authoritative copy) and the header. k.mu held, unlocked.
func (s *Server) syncPasskeyRecordLocked() error {
	var entries []passkeyRecordEntry
	if err := s.keys.viewLocked(func(sec *secrets) error {
		for id, p := range sec.Ways.Passkeys {
			if p != nil {
				entries = append(entries, passkeyRecordEntry{ID: id, Credential: p.Credential})
			}
		}
		return nil
	}, recWays); err != nil {
		return err
	}
	return s.writePasskeyRecordLocked(entries, "")
}

// ---- ceremonies ----

// newCeremonyLocked keeps c and returns its id. k.mu held.
func (s *Server) newCeremonyLocked(c *passkeyCeremony) string {
	p := &s.passkeys
	now := s.keys.wall()
	if p.cers == nil {
		p.cers = map[string]*passkeyCeremony{}
	}
	for id, x := range p.cers {
		if now.After(x.expires) {
			delete(p.cers, id)
		}
	}
	for len(p.cers) >= maxPasskeyCeremony {
		var oldest string
		for id, x := range p.cers {
			if oldest == "" || x.expires.Before(p.cers[oldest].expires) {
				oldest = id
			}
		}
		delete(p.cers, oldest)
	}
	c.expires = now.Add(passkeyCeremonyTTL)
	id := randomID(16)
	p.cers[id] = c
	return id
}

// takeCeremonyLocked removes and returns the ceremony id of the wanted
// kind, or 400 ceremony_invalid. k.mu held.
func (s *Server) takeCeremonyLocked(id string, register bool) (*passkeyCeremony, error) {
	p := &s.passkeys
	c, ok := p.cers[id]
	delete(p.cers, id) // single use, whatever happens next
	if !ok || c.register != register || s.keys.wall().After(c.expires) {
		return nil, api.BadRequest("ceremony_invalid", "the passkey request is unknown, used or expired; start again")
	}
	return c, nil
}

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// passkeyName checks a device name: 1..64 characters after trimming, no
// control characters.
func passkeyName(name string) (string, error) {
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	if n == 0 || n > maxPasskeyNameRunes || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", api.BadRequest("invalid_name", "name the passkey (1 to 64 characters, e.g. “Work laptop”)")
	}
	return name, nil
}

// credentialJSON checks a browser's credential response: a JSON object of
// at most 16 KiB whose client extension results carry no PRF output.
func credentialJSON(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || len(raw) > 16<<10 || raw[0] != '{' {
		return nil, api.BadRequest("invalid_credential", "credential must be the WebAuthn response as a JSON object")
	}
	var probe struct {
		Ext struct {
			PRF *struct {
				Results json.RawMessage `json:"results"`
			} `json:"prf"`
		} `json:"clientExtensionResults"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, api.BadRequest("invalid_credential", "credential must be the WebAuthn response as a JSON object")
	}
	if probe.Ext.PRF != nil && len(probe.Ext.PRF.Results) > 0 && !bytes.Equal(probe.Ext.PRF.Results, []byte("null")) {
		return nil, api.BadRequest("prf_output_sent", "the PRF output must stay in the browser; send only the derived key")
	}
	return raw, nil
}

// ---- handlers ----

// passkeyItemsLocked lists the passkeys that still have a wrap in the
// header, oldest first, counting unlocks not yet recorded. k.mu held.
func (s *Server) passkeyItemsLocked(sec *secrets) []passkeyItemJSON {
	out := []passkeyItemJSON{}
	for id, p := range sec.Ways.Passkeys {
		if p != nil && s.keys.file.HasWrap(crypto.WrapPasskey, id) {
			last := max(p.LastUsed, s.passkeys.uses[id].at) // an unlock not yet recorded counts
			out = append(out, passkeyItemJSON{ID: id, CredentialID: base64.RawURLEncoding.EncodeToString(p.Credential.ID), Name: p.Name, AddedAt: p.AddedAt, LastUsed: last})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].AddedAt < out[j].AddedAt || out[i].AddedAt == out[j].AddedAt && out[i].ID < out[j].ID
	})
	return out
}

func (s *Server) listPasskeys(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	var out []passkeyItemJSON
	if err := k.viewLocked(func(sec *secrets) error { out = s.passkeyItemsLocked(sec); return nil }, recWays); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"passkeys": out})
}

func (s *Server) passkeyRegisterBegin(c echo.Context) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	name, err := passkeyName(req.Name)
	if err != nil {
		return err
	}
	rp, err := s.relyingParty()
	if err != nil {
		return err
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	var creds []webauthn.Credential
	if err := k.viewLocked(func(sec *secrets) error {
		for id, p := range sec.Ways.Passkeys {
			if p != nil && k.file.HasWrap(crypto.WrapPasskey, id) {
				creds = append(creds, p.Credential)
			}
		}
		return nil
	}, recWays); err != nil {
		return err
	}
	if len(creds) >= maxPasskeys {
		return api.Conflict("too_many_passkeys", fmt.Sprintf("a vault keeps at most %d passkeys; remove one first", maxPasskeys))
	}
	user, err := s.webauthnUser(creds)
	if err != nil {
		return err
	}
	opts, session, err := rp.BeginRegistration(user,
		webauthn.WithExclusions(webauthn.Credentials(creds).CredentialDescriptors()),
		webauthn.WithExtensions(webauthn.WithExtensionPRF(protocol.PRFValues{First: s.prfSalt()})),
	)
	if err != nil {
		return fmt.Errorf("passkey registration options: %w", err)
	}
	id := s.newCeremonyLocked(&passkeyCeremony{register: true, name: name, session: *session})
	return c.JSON(http.StatusOK, map[string]any{"ceremonyId": id, "publicKey": opts.Response})
}

type passkeyFinishReq struct {
	CeremonyID string          `json:"ceremonyId"`
	Credential json.RawMessage `json:"credential"`
	DerivedKey string          `json:"derivedKey"`
}

// bindPasskeyFinish reads a ceremony's finish request: the credential
// JSON (without PRF results, credentialJSON), the KEK and the relying
// party. The caller zeroes kek.
func (s *Server) bindPasskeyFinish(c echo.Context) (req passkeyFinishReq, raw []byte, kek *crypto.KEK, rp *webauthn.WebAuthn, err error) {
	if err = web.Bind(c, &req); err != nil {
		return
	}
	if raw, err = credentialJSON(req.Credential); err != nil {
		return
	}
	if kek, err = decodeKey(req.DerivedKey); err != nil {
		return
	}
	if rp, err = s.relyingParty(); err != nil {
		kek.Zero()
		kek = nil
	}
	return
}

func (s *Server) passkeyRegisterFinish(c echo.Context) error {
	req, raw, kek, rp, err := s.bindPasskeyFinish(c)
	if err != nil {
		return err
	}
	defer kek.Zero()
	parsed, err := protocol.ParseCredentialCreationResponseBytes(raw)
	if err != nil {
		return api.BadRequest("invalid_credential", "the passkey response could not be read: "+webauthnDetails(err))
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	cer, err := s.takeCeremonyLocked(req.CeremonyID, true)
	if err != nil {
		return err
	}
	var creds []webauthn.Credential
	if err := k.viewLocked(func(sec *secrets) error {
		for _, p := range sec.Ways.Passkeys {
			if p != nil {
				creds = append(creds, p.Credential)
			}
		}
		return nil
	}, recWays); err != nil {
		return err
	}
	user, err := s.webauthnUser(creds)
	if err != nil {
		return err
	}
	cred, err := rp.CreateCredential(user, cer.session, parsed)
	if err != nil {
		return &api.Error{Status: http.StatusBadRequest, Code: "passkey_rejected", Msg: "the passkey was not accepted: " + webauthnDetails(err), Err: err}
	}
	for _, old := range creds {
		if bytes.Equal(old.ID, cred.ID) {
			return api.Conflict("passkey_exists", "this passkey is already registered")
		}
	}
	// The attestation is not used after registration; dropping it keeps
	// the vault file growing by well under 1 KiB per passkey.
	cred.Attestation = webauthn.CredentialAttestation{}
	id := randomID(12)
	now := k.wall().Unix()
	info := &passkeyInfo{Name: cer.name, AddedAt: now, Credential: *cred}
	// Public record first: until the wrap exists its entry is ignored.
	entries, err := s.readPasskeyRecordLocked()
	if err != nil {
		entries = nil // unreadable: rebuilt from the sealed copy below
	}
	if err := s.writePasskeyRecordLocked(append(entries, passkeyRecordEntry{ID: id, Credential: *cred}), id); err != nil {
		return err
	}
	if err := k.putWayLocked(crypto.WrapPasskey, id, kek, func(sec *secrets) error {
		if sec.Ways.Passkeys == nil {
			sec.Ways.Passkeys = map[string]*passkeyInfo{}
		}
		sec.Ways.Passkeys[id] = info
		return nil
	}); err != nil {
		_ = s.syncPasskeyRecordLocked()
		return err
	}
	if err := s.syncPasskeyRecordLocked(); err != nil {
		s.log.Warn("passkey record not rewritten", "err", err)
	}
	s.log.Info("passkey added", "passkey", id)
	return c.JSON(http.StatusCreated, passkeyItemJSON{ID: id, CredentialID: base64.RawURLEncoding.EncodeToString(cred.ID), Name: info.Name, AddedAt: info.AddedAt})
}

func (s *Server) deletePasskey(c echo.Context) error {
	id := c.Param("id")
	if !passkeyIDRE.MatchString(id) {
		return api.NotFound("no such passkey")
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	if !k.file.HasWrap(crypto.WrapPasskey, id) {
		return api.NotFound("no such passkey")
	}
	if err := k.removeWayLocked(crypto.WrapPasskey, id, func(sec *secrets) error {
		delete(sec.Ways.Passkeys, id)
		return nil
	}); err != nil {
		return err
	}
	delete(s.passkeys.uses, id)
	// The wrap is gone: the record's entry is inert from here on.
	if err := s.syncPasskeyRecordLocked(); err != nil {
		s.log.Warn("passkey record not rewritten", "err", err)
	}
	s.log.Info("passkey removed", "passkey", id)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) passkeyUnlockBegin(c echo.Context) error {
	rp, err := s.relyingParty()
	if err != nil {
		return err
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.file == nil {
		return api.Conflict("vault_not_initialized", "create your vault first")
	}
	entries, err := s.readPasskeyRecordLocked()
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return &api.Error{Status: http.StatusNotFound, Code: "no_passkeys", Msg: "no passkey is set up for this vault; use your password"}
	}
	creds := make([]webauthn.Credential, len(entries))
	for i, e := range entries {
		creds[i] = e.Credential
	}
	user, err := s.webauthnUser(creds)
	if err != nil {
		return err
	}
	opts, session, err := rp.BeginLogin(user,
		webauthn.WithUserVerification(protocol.VerificationRequired),
		webauthn.WithAssertionExtensions(webauthn.WithExtensionPRF(protocol.PRFValues{First: s.prfSalt()})),
	)
	if err != nil {
		return fmt.Errorf("passkey unlock options: %w", err)
	}
	id := s.newCeremonyLocked(&passkeyCeremony{session: *session})
	return c.JSON(http.StatusOK, map[string]any{"ceremonyId": id, "publicKey": opts.Response})
}

// passkeyUnlockFinish verifies the assertion against the public record,
// unwraps the DEK with the KEK the browser derived from the PRF output,
// opens the vault and records the use (sign counter, last used).
func (s *Server) passkeyUnlockFinish(c echo.Context) error {
	start := time.Now()
	req, raw, kek, rp, err := s.bindPasskeyFinish(c)
	if err != nil {
		return err
	}
	defer kek.Zero()
	parsed, err := protocol.ParseCredentialRequestResponseBytes(raw)
	if err != nil {
		return api.BadRequest("invalid_credential", "the passkey response could not be read: "+webauthnDetails(err))
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	tLock := time.Now()
	if k.file == nil {
		return api.Conflict("vault_not_initialized", "create your vault first")
	}
	if err := k.backoffLocked(); err != nil {
		return err
	}
	cer, err := s.takeCeremonyLocked(req.CeremonyID, false)
	if err != nil {
		return err
	}
	entries, err := s.readPasskeyRecordLocked()
	if err != nil {
		return err
	}
	creds := make([]webauthn.Credential, len(entries))
	for i, e := range entries {
		creds[i] = e.Credential
	}
	user, err := s.webauthnUser(creds)
	if err != nil {
		return err
	}
	cred, err := rp.ValidateLogin(user, cer.session, parsed)
	if err == nil && cred.Authenticator.CloneWarning {
		err = errors.New("sign counter did not advance")
	}
	if err != nil {
		k.failLocked()
		s.log.Warn("passkey unlock refused", "failures", k.failures, "reason", webauthnDetails(err))
		return &api.Error{Status: http.StatusUnauthorized, Code: "passkey_rejected",
			Msg: "this passkey was not accepted (it may have been removed); use your password", Err: err}
	}
	var entry *passkeyRecordEntry
	for i := range entries {
		if bytes.Equal(entries[i].Credential.ID, cred.ID) {
			entry = &entries[i]
		}
	}
	if entry == nil { // ValidateLogin found it among the same credentials
		return errors.New("passkey: validated credential not in the record")
	}
	tVerify := time.Now()
	dek, err := s.unwrapWayLocked(crypto.WrapPasskey, entry.ID, kek)
	if err != nil {
		return err
	}
	// An open vault stays as it is until every check passed: a refused
	// passkey must not lock the user out of a session they had.
	wasOpen := k.sec != nil
	if wasOpen {
		dek.Zero()
	} else if err := s.openWithLocked(dek); err != nil {
		return err
	}
	// The sealed copy is authenticated: the counter must be ahead of the
	// last one it recorded (or that waits to be recorded).
	counter := cred.Authenticator.SignCount
	last := s.passkeys.uses[entry.ID].counter
	_ = k.viewLocked(func(sec *secrets) error {
		if p := sec.Ways.Passkeys[entry.ID]; p != nil {
			last = max(last, p.Credential.Authenticator.SignCount)
		}
		return nil
	}, recWays)
	regressed := counter != 0 && last >= counter
	if regressed {
		if !wasOpen {
			k.lockLocked()
		}
		k.failLocked()
		s.log.Warn("passkey unlock refused: sign counter behind the vault's copy", "passkey", entry.ID)
		return api.E(http.StatusUnauthorized, "passkey_rejected", "this passkey's signature counter went backwards (a cloned authenticator?); use your password")
	}
	if wasOpen {
		k.lastUse = k.wall()
	}
	tOpen := time.Now()
	// Recording the use (last used, sign counter) writes the vault file;
	// it runs right after this answer, so the unlock does not wait for
	// the disk. It only ever moves the counter forward.
	if s.passkeys.uses == nil {
		s.passkeys.uses = map[string]passkeyUse{}
	}
	s.passkeys.uses[entry.ID] = passkeyUse{counter: counter, flags: cred.Flags, at: k.wall().Unix()}
	go s.recordPasskeyUses()
	s.log.Info("vault unlocked with a passkey", "passkey", entry.ID)
	// The vault's own time (wait for the lock, verify the assertion,
	// unwrap and open), for the benchmark and the browser's Resource Timing.
	ms := func(a, b time.Time) float64 { return float64(b.Sub(a).Microseconds()) / 1000 }
	c.Response().Header().Set("Server-Timing", fmt.Sprintf("vault;dur=%.2f, lock;dur=%.2f, verify;dur=%.2f, open;dur=%.2f",
		ms(start, tOpen), ms(start, tLock), ms(tLock, tVerify), ms(tVerify, tOpen)))
	return c.JSON(http.StatusOK, map[string]int64{"expiresIn": int64(k.expiresIn().Seconds())})
}

// recordPasskeyUses writes the unlocks waiting in s.passkeys.uses (last
// used, sign counter, flags) into the sealed copies, in one save, if the
// vault is open; otherwise they wait for the next open with a passkey (or
// are lost with a restart: the counter check is defence in depth). A
// counter only moves forward. The public record keeps the counter it was
// registered with: the sealed copy, checked after every open, counts.
func (s *Server) recordPasskeyUses() {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(s.passkeys.uses) == 0 || k.sec == nil || k.recordErrLocked(recWays) != nil {
		return
	}
	uses := s.passkeys.uses
	if err := k.updateLocked(func(sec *secrets) error {
		for id, u := range uses {
			p := sec.Ways.Passkeys[id]
			if p == nil || (u.counter != 0 && u.counter <= p.Credential.Authenticator.SignCount) {
				continue
			}
			p.LastUsed = u.at
			p.Credential.Authenticator.SignCount = u.counter
			p.Credential.Flags = u.flags
		}
		return nil
	}); err != nil {
		s.log.Warn("passkey use not recorded", "err", err)
		return
	}
	s.passkeys.uses = nil
}

// webauthnDetails is a short, safe description of a go-webauthn error.
func webauthnDetails(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if pe.Details != "" {
			return pe.Details
		}
		return pe.Type
	}
	return err.Error()
}
