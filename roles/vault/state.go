package vault

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
)

// Files under the data directory (/data in a container).
const (
	vaultFileName    = "vault.ocv"         // header + wrapped DEK + sealed secrets (crypto.VaultFile)
	paramsFileName   = "vault.params.json" // salt and KDF parameters offered before init (not secret)
	identityFileName = "identity.json"     // signed public-key record (not secret)
	transcriptDir    = "transcripts"
)

// Unlock rules.
const (
	challengeTTL     = 60 * time.Second
	maxChallenges    = 32
	backoffBase      = 250 * time.Millisecond
	backoffMax       = 5 * time.Minute
	DefaultAutoLock  = 30 * time.Minute
	maxProviderBytes = 4096
)

// integration is a generic HTTP API the vault can call on the user's (or a
// capability holder's) behalf, with its credential injected (SPEC §7.3, §11).
type integration struct {
	Type       string    `json:"type"` // "http"
	BaseURL    string    `json:"baseUrl"`
	AuthHeader string    `json:"authHeader"` // e.g. "Authorization"
	AuthValue  string    `json:"authValue"`  // secret, e.g. "Bearer …"
	AddedAt    time.Time `json:"addedAt"`
	// Extra are fixed request headers (e.g. anthropic-version for a shared
	// model provider key); never secrets.
	Extra map[string]string `json:"extra,omitempty"`
}

// providerResourcePrefix names a model provider key as a shareable
// resource: "provider:anthropic" or "provider:openai". Sharing it lets a
// household use one key with a call budget without revealing it.
const providerResourcePrefix = "provider:"

// resourceLocked resolves a capability resource to the HTTP API it stands
// for: an integration by name, or a model provider key ("provider:<name>")
// with the provider's base URL and auth header. k.mu held, unlocked.
func (k *keyring) resourceLocked(name string) (integration, bool) {
	if p, ok := strings.CutPrefix(name, providerResourcePrefix); ok {
		key, ok := k.sec.APIKeys[p]
		if !ok {
			return integration{}, false
		}
		in := integration{Type: "http", BaseURL: key.BaseURL, AddedAt: key.AddedAt}
		switch p {
		case "anthropic":
			if in.BaseURL == "" {
				in.BaseURL = "https://api.anthropic.com"
			}
			in.AuthHeader, in.AuthValue = "X-Api-Key", key.Key
			in.Extra = map[string]string{"Anthropic-Version": "2023-06-01"}
		default: // OpenAI and compatible servers
			if in.BaseURL == "" {
				in.BaseURL = "https://api.openai.com/v1"
			}
			in.AuthHeader, in.AuthValue = "Authorization", "Bearer "+key.Key
		}
		in.BaseURL = strings.TrimRight(in.BaseURL, "/")
		return in, true
	}
	in, ok := k.sec.Integrations[name]
	return in, ok
}

// apiKey is one model provider credential.
type apiKey struct {
	Key     string    `json:"key"`
	BaseURL string    `json:"baseUrl,omitempty"`
	Model   string    `json:"model,omitempty"`
	AddedAt time.Time `json:"addedAt"`
}

type challenge struct {
	bytes   []byte
	expires time.Time
}

// keyring is the vault's state. The DEK, identity and decrypted secrets are
// held only while unlocked and are wiped on lock. Guarded by mu.
type keyring struct {
	mu       sync.Mutex
	dir      string
	now      func() time.Time
	autoLock time.Duration

	file     *crypto.VaultFile // nil until initialized
	dek      *crypto.DEK       // nil while locked
	id       *crypto.Identity  // nil while locked
	sec      *secrets          // nil while locked
	records  recordSet         // body records kept raw (broken, unknown); zero while locked
	tkey     *crypto.SubKey    // transcript key; nil while locked
	lastUse  time.Time         // wall clock (monotonic reading stripped)
	chals    map[string]challenge
	failures int
	nextTry  time.Time
	// onOpen, or nil, is called (with mu held; it must not block) each
	// time the vault opens.
	onOpen func()
}

func newKeyring(dir string, now func() time.Time, autoLock time.Duration) (*keyring, error) {
	k := &keyring{dir: dir, now: now, autoLock: autoLock, chals: map[string]challenge{}}
	crypto.CleanTempFiles(dir)
	b, err := os.ReadFile(filepath.Join(dir, vaultFileName))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read vault: %w", err)
	default:
		f, err := crypto.ParseVaultFile(b)
		if err != nil {
			return nil, fmt.Errorf("parse vault: %w", err)
		}
		k.file = f
	}
	return k, nil
}

// wall returns now without its monotonic reading, so that durations are
// measured on the wall clock and time spent paused or suspended counts.
func (k *keyring) wall() time.Time { return k.now().Round(0) }

// expireLocked locks the vault if it has been unused for autoLock. k.mu held.
func (k *keyring) expireLocked() {
	if k.dek != nil && k.wall().Sub(k.lastUse) >= k.autoLock {
		k.lockLocked()
	}
}

func (k *keyring) lockLocked() {
	if k.dek != nil {
		k.dek.Zero()
	}
	if k.id != nil {
		k.id.Zero()
	}
	if k.tkey != nil {
		for i := range k.tkey {
			k.tkey[i] = 0
		}
	}
	if k.sec != nil {
		clear(k.sec.Identity)
	}
	k.dek, k.id, k.sec, k.tkey, k.records = nil, nil, nil, nil, recordSet{}
}

// expiresIn is the time until auto-lock (0 when locked). k.mu held.
func (k *keyring) expiresIn() time.Duration {
	if k.dek == nil {
		return 0
	}
	d := k.autoLock - k.wall().Sub(k.lastUse)
	if d < 0 {
		return 0
	}
	return d
}

// errLocked is the SPEC §11 locked-vault answer.
func errLocked(publicURL string) error {
	return &api.Error{Status: http.StatusLocked, Code: "vault_locked",
		Msg: "your vault is locked; unlock it to continue", Extra: map[string]any{"unlockUrl": unlockURL(publicURL)}}
}

func unlockURL(publicURL string) string { return publicURL + "/#unlock" }

// use marks the vault used (extending auto-lock) and returns the unlocked
// secrets, or a vault_locked error. k.mu held.
func (k *keyring) useLocked(publicURL string) error {
	if k.file == nil {
		return api.Conflict("vault_not_initialized", "create your vault first")
	}
	k.expireLocked()
	if k.dek == nil {
		return errLocked(publicURL)
	}
	k.lastUse = k.wall()
	return nil
}

// params returns the salt and KDF parameters: the vault header's once
// initialized (the header is the source of truth; it was checked when the
// file was parsed), else the ones offered for init, created once in
// vault.params.json and kept, so that the key a browser derived from GET
// /params is the one init wraps the DEK with. A params file that exists but
// is malformed, below the floor, above the ceiling or has a degenerate salt
// is never replaced silently: the answer is 500 invalid_params_file (see
// errParamsFile), and an operator removes the file to get fresh ones.
// k.mu held.
func (k *keyring) params() ([]byte, crypto.KDFParams, error) {
	if k.file != nil {
		return k.file.Salt(), k.file.KDF(), nil
	}
	path := filepath.Join(k.dir, paramsFileName)
	var p paramsFile
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := p.parse(b); err != nil {
			return nil, crypto.KDFParams{}, errParamsFile(err)
		}
		return p.Salt, p.KDF, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, crypto.KDFParams{}, fmt.Errorf("read params: %w", err)
	}
	salt, err := crypto.NewSalt()
	if err != nil {
		return nil, crypto.KDFParams{}, err
	}
	p.Salt, p.KDF = salt, crypto.DefaultKDFParams()
	b, _ = json.Marshal(p)
	if err := crypto.WriteFileAtomic(path, b, 0o600); err != nil {
		return nil, crypto.KDFParams{}, fmt.Errorf("store params: %w", err)
	}
	return p.Salt, p.KDF, nil
}

// paramsFile is vault.params.json:
//
//	{"salt":"<base64 std, 16..64 random bytes>","kdf":{"alg":"argon2id","memoryKiB":65536,"iterations":3,"parallelism":4}}
type paramsFile struct {
	Salt []byte           `json:"salt"`
	KDF  crypto.KDFParams `json:"kdf"`
}

// parse decodes b strictly (no unknown fields or trailing data) and checks
// the parameters ([crypto.KDFParams.Validate]) and the salt
// ([crypto.CheckSalt]). Errors never quote the file.
func (p *paramsFile) parse(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil || dec.More() {
		return errors.New("not the expected JSON object")
	}
	if err := p.KDF.Validate(); err != nil {
		return err
	}
	return crypto.CheckSalt(p.Salt)
}

// errParamsFile is the answer while vault.params.json is unusable: 500
// invalid_params_file, naming the file and the rule it breaks.
func errParamsFile(err error) error {
	return &api.Error{Status: http.StatusInternalServerError, Code: "invalid_params_file",
		Msg: "the vault's key derivation parameters (" + paramsFileName + " in the data directory) are invalid: " +
			strings.TrimPrefix(strings.TrimPrefix(err.Error(), "crypto: "), "invalid KDF parameters: ") +
			"; no vault was created with them. Remove the file to get fresh parameters.", Err: err}
}

func decodeKey(b64 string) (*crypto.KEK, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 32 {
		return nil, api.BadRequest("invalid_key", "derivedKey must be 32 bytes, base64")
	}
	if subtle.ConstantTimeCompare(b, make([]byte, 32)) == 1 {
		// A derivation that failed silently in a client, never a real key.
		return nil, api.BadRequest("invalid_key", "derivedKey is all zero bytes: the key derivation in your browser failed")
	}
	k, err := crypto.KEKFromBytes(b)
	clear(b)
	if err != nil {
		return nil, api.BadRequest("invalid_key", "derivedKey must be 32 bytes, base64")
	}
	return &k, nil
}

// newChallenge issues a single-use unlock challenge. k.mu held.
func (k *keyring) newChallengeLocked() (string, []byte) {
	now := k.wall()
	for id, c := range k.chals {
		if now.After(c.expires) {
			delete(k.chals, id)
		}
	}
	if len(k.chals) >= maxChallenges { // drop the oldest
		var oldest string
		for id, c := range k.chals {
			if oldest == "" || c.expires.Before(k.chals[oldest].expires) {
				oldest = id
			}
		}
		delete(k.chals, oldest)
	}
	idb := make([]byte, 16)
	rand.Read(idb)
	ch := make([]byte, 32)
	rand.Read(ch)
	id := base64.RawURLEncoding.EncodeToString(idb)
	k.chals[id] = challenge{bytes: ch, expires: now.Add(challengeTTL)}
	return id, ch
}

// takeChallenge consumes a challenge and checks the proof
// HMAC-SHA256(key=derivedKey, msg=challenge). k.mu held.
func (k *keyring) checkProofLocked(challengeID, proofB64 string, kek *crypto.KEK) error {
	c, ok := k.chals[challengeID]
	delete(k.chals, challengeID) // single use, whatever happens next
	if !ok || k.wall().After(c.expires) {
		return api.E(http.StatusBadRequest, "challenge_invalid", "the unlock challenge is unknown, used or expired; request a new one")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil {
		return api.BadRequest("invalid_proof", "proof must be base64")
	}
	if !crypto.VerifyUnlockProof(kek, c.bytes, proof) {
		return api.E(http.StatusUnauthorized, "bad_proof", "the proof does not match the challenge")
	}
	return nil
}

// backoffLocked refuses attempts during the backoff after failures. k.mu held.
func (k *keyring) backoffLocked() error {
	now := k.wall()
	if now.Before(k.nextTry) {
		wait := k.nextTry.Sub(now)
		return &api.Error{Status: http.StatusTooManyRequests, Code: "unlock_backoff",
			Msg:   fmt.Sprintf("too many failed attempts; try again in %d s", int(wait.Seconds())+1),
			Extra: map[string]any{"retryAfterMs": wait.Milliseconds()}}
	}
	return nil
}

// failLocked records a failed attempt: the next one waits 250 ms × 2^(n-1),
// at most 5 minutes. k.mu held.
func (k *keyring) failLocked() {
	k.failures++
	d := backoffBase << min(k.failures-1, 20)
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	k.nextTry = k.wall().Add(d)
}

// openLocked decrypts the body with dek, decodes its records (body.go)
// and keeps them. A version 1 body is saved as version 2 at once, unless
// one of its records is unreadable (then nothing is written). k.mu held.
func (k *keyring) openLocked(dek crypto.DEK) error {
	body, err := k.file.OpenBody(&dek)
	if err != nil {
		return fmt.Errorf("open vault body: %w", err)
	}
	s, rs, migrated, err := decodeBody(body)
	clear(body)
	if err != nil {
		return fmt.Errorf("decode vault body: %w", err)
	}
	id, err := crypto.IdentityFromBytes(s.Identity)
	if err != nil {
		return err
	}
	tk, err := crypto.TranscriptKey(&dek)
	if err != nil {
		return err
	}
	k.dek, k.sec, k.records, k.id, k.tkey = &dek, s, rs, id, &tk
	k.lastUse = k.wall()
	if migrated && len(rs.broken) == 0 {
		if err := k.saveLocked(); err != nil {
			k.lockLocked()
			return fmt.Errorf("migrate vault body to version %d: %w", bodyVersion, err)
		}
	}
	if k.onOpen != nil {
		k.onOpen()
	}
	return nil
}

// saveLocked re-seals the secrets and writes the vault file atomically. k.mu held.
func (k *keyring) saveLocked() error {
	return k.commitLocked(nil)
}

// commitLocked writes the vault file once: a copy of the header changed by
// editHeader (nil: unchanged) with the current secrets sealed under it,
// then, only after the atomic write succeeded, the copy becomes k.file. It
// refuses (errUnreadable) while any record is broken. k.mu held, unlocked.
func (k *keyring) commitLocked(editHeader func(next *crypto.VaultFile) error) error {
	body, err := encodeBody(k.sec, k.records)
	if err != nil {
		return err
	}
	defer clear(body)
	next, err := crypto.ParseVaultFile(k.file.Marshal())
	if err != nil {
		return err
	}
	if editHeader != nil {
		if err := editHeader(next); err != nil {
			return err
		}
	}
	if err := next.SealBody(k.dek, body); err != nil {
		return err
	}
	if err := crypto.WriteFileAtomic(filepath.Join(k.dir, vaultFileName), next.Marshal(), 0o600); err != nil {
		return err
	}
	k.file = next
	return nil
}

// updateLocked applies change to the unlocked secrets and saves the vault;
// if change or the write fails, the secrets are restored as they were, so
// memory never disagrees with the file. While any record of the body is
// unreadable it refuses before calling change (500
// vault_state_unreadable): a save would overwrite that record. k.mu held,
// unlocked.
func (k *keyring) updateLocked(change func(*secrets) error) error {
	return k.changeLocked(nil, change)
}

// changeLocked is updateLocked with a header edit (a wrap added, replaced
// or removed) written in the same atomic file write as the body change.
func (k *keyring) changeLocked(editHeader func(next *crypto.VaultFile) error, change func(*secrets) error) error {
	if k.sec == nil {
		return errors.New("vault locked")
	}
	if len(k.records.broken) > 0 {
		return errUnreadable(k.records.broken)
	}
	snapshot, err := encodeBody(k.sec, k.records)
	if err != nil {
		return err
	}
	defer clear(snapshot)
	if change != nil {
		err = change(k.sec)
	}
	if err == nil {
		err = k.commitLocked(editHeader)
	}
	if err != nil {
		prev, _, _, derr := decodeBody(snapshot)
		if derr != nil {
			return errors.Join(err, derr)
		}
		clear(k.sec.Identity)
		k.sec = prev
	}
	return err
}
