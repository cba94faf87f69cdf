package vault

import (
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/web"
)

// Wire types of the container vault API (SPEC §11, below /vault).
type (
	publicKeysJSON struct {
		Ed25519 string `json:"ed25519"`
		X25519  string `json:"x25519"`
	}
	statusJSON struct {
		Initialized bool            `json:"initialized"`
		Locked      bool            `json:"locked"`
		ExpiresIn   int64           `json:"expiresIn"` // seconds until auto-lock; 0 when locked
		PublicKeys  *publicKeysJSON `json:"publicKeys"`
	}
	paramsJSON struct {
		Salt string           `json:"salt"`
		KDF  crypto.KDFParams `json:"kdf"`
	}
	// unlockReq is POST /unlock: Kind is the way in ("" or "password",
	// "phrase", "backup-key", "social"; see unlockKinds) and ID its wrap id.
	unlockReq struct {
		Kind        string `json:"kind,omitempty"`
		ID          string `json:"id,omitempty"`
		ChallengeID string `json:"challengeId"`
		// RequestID names the trusted-contacts recovery request a
		// "social" unlock or reset completes; the management role checks
		// it is the caller's and still open, the vault ignores it.
		RequestID  string `json:"requestId,omitempty"`
		DerivedKey string `json:"derivedKey"`
		Proof      string `json:"proof"`
	}
	passwordReq struct {
		unlockReq
		NewDerivedKey string           `json:"newDerivedKey"`
		NewSalt       string           `json:"newSalt"`
		NewKDF        crypto.KDFParams `json:"newKdf"`
		SignOutAll    bool             `json:"signOutAll"` // remove every other way in (passkeys, phrase, ...)
	}
	apiKeyReq struct {
		Key     string `json:"key"`
		BaseURL string `json:"baseUrl"`
		Model   string `json:"model"`
	}
	providerJSON struct {
		Provider string    `json:"provider"`
		BaseURL  string    `json:"baseUrl,omitempty"`
		Model    string    `json:"model,omitempty"`
		AddedAt  time.Time `json:"addedAt"`
	}
)

func (s *Server) vaultRoutes(g *echo.Group) {
	g.GET("/status", s.status)
	g.GET("/params", s.params)
	g.GET("/identity", s.identity)
	g.POST("/init", s.init)
	g.POST("/unlock/challenge", s.challenge)
	g.POST("/unlock", s.unlock)
	g.POST("/lock", s.lock)
	g.POST("/extend", s.extend)
	g.POST("/password", s.password)
	g.GET("/apikeys", s.listAPIKeys)
	g.PUT("/apikeys/:provider", s.putAPIKey)
	g.DELETE("/apikeys/:provider", s.deleteAPIKey)
	g.PUT("/default-provider", s.putDefaultProvider)
	s.waysRoutes(g)
	s.socialRoutes(g) // social.go
	g.GET("/integrations", s.listIntegrations)
	g.PUT("/integrations/:name", s.putIntegration)
	g.DELETE("/integrations/:name", s.deleteIntegration)
	s.capabilityRoutes(g)
	s.approvalRoutes(g)
	s.vaultBackupRoutes(g)
	s.passkeyRoutes(g)
}

func (s *Server) publicKeys() *publicKeysJSON {
	rec, err := s.readIdentity()
	if err != nil {
		return nil
	}
	return &publicKeysJSON{Ed25519: rec.Ed25519, X25519: rec.X25519}
}

func (s *Server) readIdentity() (crypto.KeyRecord, error) {
	b, err := os.ReadFile(filepath.Join(s.dataDir, identityFileName))
	if err != nil {
		return crypto.KeyRecord{}, err
	}
	var sr crypto.SignedKeyRecord
	if err := jsonUnmarshal(b, &sr); err != nil {
		return crypto.KeyRecord{}, err
	}
	return crypto.VerifyKeyRecord(sr)
}

func (s *Server) status(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	k.expireLocked()
	st := statusJSON{Initialized: k.file != nil, Locked: k.dek == nil, ExpiresIn: int64(k.expiresIn().Seconds())}
	k.mu.Unlock()
	if st.Initialized {
		st.PublicKeys = s.publicKeys()
	}
	return c.JSON(http.StatusOK, st)
}

func (s *Server) params(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	salt, p, err := k.params()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, paramsJSON{Salt: base64.StdEncoding.EncodeToString(salt), KDF: p})
}

// identity serves the signed public-key record for the directory.
func (s *Server) identity(c echo.Context) error {
	b, err := os.ReadFile(filepath.Join(s.dataDir, identityFileName))
	if errors.Is(err, os.ErrNotExist) {
		return api.NotFound("the vault has no identity yet")
	}
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, b)
}

func (s *Server) init(c echo.Context) error {
	var req struct {
		DerivedKey string `json:"derivedKey"`
	}
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
	if k.file != nil {
		return api.Conflict("already_initialized", "this vault already exists")
	}
	salt, params, err := k.params()
	if err != nil {
		return err
	}
	id, err := crypto.NewIdentity()
	if err != nil {
		return err
	}
	sec := &secrets{Identity: id.Bytes()}
	sec.normalize()
	body, err := encodeBody(sec, recordSet{})
	if err != nil {
		return err
	}
	f, dek, err := crypto.NewVaultFile(kek, salt, params, body)
	clear(body)
	if err != nil {
		return err
	}
	pub := id.Public()
	signed, err := id.SignKeyRecord(crypto.KeyRecord{Ed25519: pub.Ed25519Text(), X25519: pub.X25519Text(), Subject: s.userID, IssuedAt: k.wall().Unix()})
	if err != nil {
		return err
	}
	sb, err := jsonMarshal(signed)
	if err != nil {
		return err
	}
	// Identity record first: a crash before the vault file leaves an
	// uninitialized vault whose next init replaces it.
	if err := crypto.WriteFileAtomic(filepath.Join(s.dataDir, identityFileName), sb, 0o600); err != nil {
		return err
	}
	if err := crypto.WriteFileAtomic(filepath.Join(s.dataDir, vaultFileName), f.Marshal(), 0o600); err != nil {
		return err
	}
	k.file = f
	if err := k.openLocked(dek); err != nil {
		return err
	}
	s.log.Info("vault created")
	return c.JSON(http.StatusCreated, map[string]any{"publicKeys": publicKeysJSON{Ed25519: pub.Ed25519Text(), X25519: pub.X25519Text()}})
}

func (s *Server) challenge(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.file == nil {
		return api.Conflict("vault_not_initialized", "create your vault first")
	}
	id, ch := k.newChallengeLocked()
	return c.JSON(http.StatusOK, map[string]string{"challengeId": id, "challenge": base64.StdEncoding.EncodeToString(ch)})
}

// checkUnlockLocked runs the unlock checks in order: backoff, challenge and
// proof, then the AEAD (the real check). It returns the DEK. k.mu held.
func (s *Server) checkUnlockLocked(req unlockReq) (crypto.DEK, error) {
	k := s.keys
	if k.file == nil {
		return crypto.DEK{}, api.Conflict("vault_not_initialized", "create your vault first")
	}
	if req.Kind == "" {
		req.Kind = crypto.WrapPassword
	}
	if _, ok := unlockKinds[req.Kind]; !ok {
		return crypto.DEK{}, api.BadRequest("invalid_way", `kind must be "password", "phrase", "backup-key" or "social"`)
	}
	if req.ID != "" { // every way taken here is one wrap of id ""
		return crypto.DEK{}, api.BadRequest("invalid_way", "the "+wayName(req.Kind)+" way has no id")
	}
	if err := k.backoffLocked(); err != nil {
		return crypto.DEK{}, err
	}
	kek, err := decodeKey(req.DerivedKey)
	if err != nil {
		return crypto.DEK{}, err
	}
	defer kek.Zero()
	if err := k.checkProofLocked(req.ChallengeID, req.Proof, kek); err != nil {
		if ae, ok := api.AsError(err); ok && ae.Code == "bad_proof" {
			k.failLocked()
		}
		return crypto.DEK{}, err
	}
	return s.unwrapWayLocked(req.Kind, req.ID, kek)
}

func (s *Server) unlock(c echo.Context) error {
	var req unlockReq
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	dek, err := s.checkUnlockLocked(req)
	if err != nil {
		return err
	}
	if err := s.openWithLocked(dek); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int64{"expiresIn": int64(k.expiresIn().Seconds())})
}

func (s *Server) lock(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	k.lockLocked()
	s.dropHibernation()
	k.mu.Unlock()
	s.abortAllRuns()
	return c.JSON(http.StatusOK, map[string]int64{"expiresIn": 0})
}

func (s *Server) extend(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int64{"expiresIn": int64(k.expiresIn().Seconds())})
}

// password changes the password: it proves the old key like an unlock, then
// re-wraps the DEK under the new key with a new salt (the data stays sealed
// under the same DEK).
func (s *Server) password(c echo.Context) error {
	var req passwordReq
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	if req.Kind != "" && req.Kind != crypto.WrapPassword {
		return api.BadRequest("invalid_way", "prove the current password to change it (or use POST /vault/recovery/reset)")
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
	if err := s.setPasswordLocked(dek, np, false); err != nil {
		return err
	}
	s.log.Info("vault password changed", "signOutAll", req.SignOutAll)
	return c.NoContent(http.StatusNoContent)
}

// checkKDF is the API answer for KDF parameters that fail
// crypto.KDFParams.Validate, the one floor and ceiling: 400 weak_kdf below
// the floor, 400 invalid_kdf otherwise; the message names the field and
// the bound.
func checkKDF(field string, p crypto.KDFParams) error {
	err := p.Validate()
	if err == nil {
		return nil
	}
	msg := field + ": " + strings.TrimPrefix(err.Error(), crypto.ErrKDFParams.Error()+": ")
	if errors.Is(err, crypto.ErrKDFWeak) {
		return api.BadRequest("weak_kdf", msg)
	}
	return api.BadRequest("invalid_kdf", msg)
}

var providerRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{1,31}$`)

func (s *Server) listAPIKeys(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	out := []providerJSON{}
	for p, v := range k.sec.APIKeys {
		out = append(out, providerJSON{Provider: p, BaseURL: v.BaseURL, Model: v.Model, AddedAt: v.AddedAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Provider < out[j].Provider })
	// defaultProvider is what the chat uses: an own provider's name,
	// "shared:<jti>" for a key shared with this user, or "" for none.
	def := ""
	if cp := s.chatProviderLocked(); cp != nil && cp.shared != nil {
		def = sharedProviderPrefix + cp.shared.jti
	} else if cp != nil {
		def = cp.name
	}
	return c.JSON(http.StatusOK, map[string]any{"providers": out, "defaultProvider": def, "shared": s.sharedProvidersLocked(def)})
}

func (s *Server) putAPIKey(c echo.Context) error {
	provider := c.Param("provider")
	if !knownProvider(provider) {
		return api.BadRequest("invalid_provider", "provider must be anthropic or openai (use openai with a baseUrl for compatible servers)")
	}
	var req apiKeyReq
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	req.Key = strings.TrimSpace(req.Key)
	if req.Key == "" || len(req.Key) > maxProviderBytes || strings.ContainsAny(req.Key, "\r\n") {
		return api.BadRequest("invalid_key", "the API key is empty or malformed")
	}
	if req.BaseURL != "" && !validBaseURL(req.BaseURL) {
		return api.BadRequest("invalid_base_url", "baseUrl must be an http(s) URL")
	}
	if len(req.Model) > 200 {
		return api.BadRequest("invalid_model", "model name too long")
	}
	if provider == "openai" && req.BaseURL != "" && strings.TrimSpace(req.Model) == "" {
		// A custom server (Ollama, vLLM, ...) has its own model names; the
		// provider's default model would only fail there.
		return api.BadRequest("model_required", "name the model your server serves (for example llama3.1)")
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	key := apiKey{Key: req.Key, BaseURL: req.BaseURL, Model: req.Model, AddedAt: k.wall().UTC()}
	if err := k.updateLocked(func(sec *secrets) error {
		sec.APIKeys[provider] = key
		sec.DefaultProvider = provider
		return nil
	}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, providerJSON{Provider: provider, BaseURL: req.BaseURL, Model: req.Model, AddedAt: key.AddedAt})
}

func (s *Server) deleteAPIKey(c echo.Context) error {
	provider := c.Param("provider")
	if !providerRE.MatchString(provider) {
		return api.BadRequest("invalid_provider", "invalid provider name")
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	if _, had := k.sec.APIKeys[provider]; !had {
		return api.NotFound("no key for this provider")
	}
	if err := k.updateLocked(func(sec *secrets) error {
		delete(sec.APIKeys, provider)
		if sec.DefaultProvider == provider {
			sec.DefaultProvider = ""
		}
		return nil
	}); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
