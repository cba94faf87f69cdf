package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ocmt/ocmt/crypto"
)

// Encrypted vault backup (issue 10 item 5, SPEC §6 "Encrypted backup"): the
// user's container hands the management role a copy of its sealed vault
// file and its signed public-key record (ciphertext and public data only),
// and can take one back while its vault is not initialized (a new
// container after a lost volume). This file is the one seam between the two
// roles: the vault routes, their wire types and the calls the management
// role makes through Agent.Proxy.

// Vault routes for backup and restore, inside the container (container
// secret required, like every vault route).
const (
	// VaultBackupPath answers GET with a VaultBackup of the vault as it is
	// on disk, locked or unlocked; 409 vault_not_initialized before init.
	VaultBackupPath = "/vault/backup"
	// VaultRestorePath takes PUT with a VaultBackup and installs it, only
	// while the vault is not initialized: 204; 409 already_initialized,
	// 400 invalid_backup, 403 backup_wrong_user, 413 backup_too_large.
	VaultRestorePath = "/vault/restore"
)

// BoundsOwnBody reports whether r is a vault restore (PUT VaultRestorePath,
// in the container or behind a proxy's prefix), whose handler bounds its
// body itself (DecodeVaultBackup: at most the JSON of MaxVaultBackupBytes)
// instead of at the servers' general 1 MiB (roles/web).
func BoundsOwnBody(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, VaultRestorePath)
}

// MaxVaultBackupBytes bounds the sealed vault file in a backup (8 MiB). A
// larger one is refused with 413 backup_too_large by both roles.
const MaxVaultBackupBytes = 8 << 20

// VaultBackupFormat is the only VaultBackup.Format.
const VaultBackupFormat = 1

// maxVaultBackupJSON bounds a VaultBackup's JSON: base64 of
// MaxVaultBackupBytes plus room for the key record.
const maxVaultBackupJSON = MaxVaultBackupBytes/3*4 + 64<<10

// VaultBackup is the wire form of a sealed vault copy (GET VaultBackupPath,
// PUT VaultRestorePath):
//
//	{"format":1,"vault":"<base64 std: the vault file, crypto.VaultFile.Marshal>",
//	 "identity":{"record":"…","sig":"…"}}
//
// Vault is the file exactly as written (magic, header with the KDF
// parameters, salt and every DEK wrap, sealed body): it opens only with a
// key that unwraps one of its wraps, which never leaves the user's
// devices. Identity is the vault's signed key record (crypto.KeyRecord),
// public data.
type VaultBackup struct {
	Format   int                    `json:"format"`
	Vault    []byte                 `json:"vault"`
	Identity crypto.SignedKeyRecord `json:"identity"`
}

// Check validates b for userID without any key: the format, the size
// (413 backup_too_large), the vault file's structure (crypto.ParseVaultFile:
// 400 invalid_backup), the key record's signature and its subject, which
// must be userID (403 backup_wrong_user). It returns the verified record.
// It cannot tell whether the record belongs to the sealed identity; only
// an unlock can.
func (b *VaultBackup) Check(userID string) (crypto.KeyRecord, error) {
	if b.Format != VaultBackupFormat {
		return crypto.KeyRecord{}, BadRequest("invalid_backup", "unknown backup format")
	}
	if len(b.Vault) > MaxVaultBackupBytes {
		return crypto.KeyRecord{}, ErrVaultBackupTooLarge()
	}
	if _, err := crypto.ParseVaultFile(b.Vault); err != nil {
		return crypto.KeyRecord{}, &Error{Status: http.StatusBadRequest, Code: "invalid_backup", Msg: "the backup is not a valid vault file", Err: err}
	}
	rec, err := crypto.VerifyKeyRecord(b.Identity)
	if err != nil {
		return crypto.KeyRecord{}, &Error{Status: http.StatusBadRequest, Code: "invalid_backup", Msg: "the backup's key record is invalid", Err: err}
	}
	if rec.Subject != userID {
		return crypto.KeyRecord{}, Forbidden("backup_wrong_user", "this backup belongs to another user")
	}
	return rec, nil
}

// ErrVaultBackupTooLarge is the 413 backup_too_large answer for a vault
// file above MaxVaultBackupBytes.
func ErrVaultBackupTooLarge() *Error {
	return E(http.StatusRequestEntityTooLarge, "backup_too_large",
		fmt.Sprintf("the vault is larger than the %d MiB a backup may hold", MaxVaultBackupBytes>>20))
}

// DecodeVaultBackup reads one VaultBackup from r, at most the JSON of a
// MaxVaultBackupBytes file (else 413 backup_too_large); malformed JSON is
// 400 invalid_backup. It does not Check the result.
func DecodeVaultBackup(r io.Reader) (VaultBackup, error) {
	var b VaultBackup
	data, err := io.ReadAll(io.LimitReader(r, maxVaultBackupJSON+1))
	if err != nil {
		return b, err
	}
	if len(data) > maxVaultBackupJSON {
		return b, ErrVaultBackupTooLarge()
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return VaultBackup{}, BadRequest("invalid_backup", "the backup is not a valid JSON document")
	}
	return b, nil
}

// FetchVaultBackup asks userID's container, through a.Proxy (which wakes
// it), for its sealed vault, and Checks the answer; it returns the backup
// and its verified key record. Errors are *Error: the container's own (409
// vault_not_initialized, …), 413 backup_too_large, or 502 invalid_backup
// when it sent something that does not pass Check.
func FetchVaultBackup(ctx context.Context, a Agent, userID string) (VaultBackup, crypto.KeyRecord, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, VaultBackupPath, nil)
	if err != nil {
		return VaultBackup{}, crypto.KeyRecord{}, err
	}
	w := newBoundedRecorder(maxVaultBackupJSON)
	a.Proxy(userID).ServeHTTP(w, req)
	if err := w.err(); err != nil {
		return VaultBackup{}, crypto.KeyRecord{}, err
	}
	var rec crypto.KeyRecord
	b, err := DecodeVaultBackup(bytes.NewReader(w.body.Bytes()))
	if err == nil {
		rec, err = b.Check(userID)
	}
	if err != nil {
		if e, ok := AsError(err); ok && e.Status == http.StatusRequestEntityTooLarge {
			return VaultBackup{}, crypto.KeyRecord{}, e
		}
		return VaultBackup{}, crypto.KeyRecord{}, &Error{Status: http.StatusBadGateway, Code: "invalid_backup", Msg: "your container sent an invalid backup", Err: err}
	}
	return b, rec, nil
}

// PushVaultRestore sends b to userID's container, through a.Proxy (which
// wakes it), to install while its vault is not initialized. Errors are
// *Error with the container's answer (409 already_initialized, …).
func PushVaultRestore(ctx context.Context, a Agent, userID string, b VaultBackup) error {
	body, err := json.Marshal(b)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, VaultRestorePath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	w := newBoundedRecorder(64 << 10)
	a.Proxy(userID).ServeHTTP(w, req)
	return w.err()
}

// boundedRecorder is an http.ResponseWriter that keeps at most limit bytes
// of the body (an in-process call through Agent.Proxy).
type boundedRecorder struct {
	header   http.Header
	code     int
	body     bytes.Buffer
	limit    int
	overflow bool
}

func newBoundedRecorder(limit int) *boundedRecorder {
	return &boundedRecorder{header: http.Header{}, limit: limit}
}

func (r *boundedRecorder) Header() http.Header { return r.header }

func (r *boundedRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *boundedRecorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.overflow || r.body.Len()+len(p) > r.limit {
		r.overflow = true // dropped, not an error: a reverse proxy would abort the caller's own request
		return len(p), nil
	}
	return r.body.Write(p)
}

// err turns a non-2xx answer into an *Error with its code and message.
func (r *boundedRecorder) err() error {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if r.overflow {
		return ErrVaultBackupTooLarge()
	}
	if r.code >= 200 && r.code <= 299 {
		return nil
	}
	var b ErrorBody
	_ = json.Unmarshal(r.body.Bytes(), &b)
	if b.Error.Code == "" {
		b.Error.Code, b.Error.Message = "agent_error", "your container did not answer"
	}
	return E(r.code, b.Error.Code, b.Error.Message)
}

// VaultBackupInfo describes one encrypted backup the management role keeps
// (an element of GET /api/v1/me/vault/backups, the answer of POST
// /api/v1/me/vault/backups). Never the content.
type VaultBackupInfo struct {
	ID        string    `json:"id"`
	SizeBytes int64     `json:"sizeBytes"` // of the sealed vault file
	SHA256    string    `json:"sha256"`    // of the sealed vault file, hex
	Ed25519   string    `json:"ed25519"`   // the vault's public signing key
	CreatedAt time.Time `json:"createdAt"`
}

// VaultBackupList is GET /api/v1/me/vault/backups: the caller's backups,
// newest first; the management role keeps the newest Keep.
type VaultBackupList struct {
	Backups []VaultBackupInfo `json:"backups"`
	Keep    int               `json:"keep"`
}

// VaultRestoreRequest is POST /api/v1/me/vault/restore: which backup to
// restore into the caller's container (its vault must not be initialized).
type VaultRestoreRequest struct {
	ID string `json:"id"`
}

// BackupVault asks the management role to copy the caller's sealed vault.
func (c *Client) BackupVault(ctx context.Context) (VaultBackupInfo, error) {
	var out VaultBackupInfo
	err := c.JSON(ctx, http.MethodPost, "/api/v1/me/vault/backups", nil, &out)
	return out, err
}

// VaultBackups lists the caller's encrypted vault backups.
func (c *Client) VaultBackups(ctx context.Context) (VaultBackupList, error) {
	var out VaultBackupList
	err := c.JSON(ctx, http.MethodGet, "/api/v1/me/vault/backups", nil, &out)
	return out, err
}

// RestoreVault restores backup id into the caller's container.
func (c *Client) RestoreVault(ctx context.Context, id string) error {
	return c.JSON(ctx, http.MethodPost, "/api/v1/me/vault/restore", VaultRestoreRequest{ID: id}, nil)
}
