package vault

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
)

// Encrypted vault backup (issue 10 item 5; wire types and paths in
// api/vaultbackup.go). The vault hands out its sealed file and its signed
// public-key record as they are on disk, locked or unlocked: ciphertext
// and public data, never anything decrypted. It takes one back only while
// it is not initialized (a fresh container after a lost volume); the
// restored vault is locked and opens with any of the ways in its header
// wraps the DEK for (password, phrase, backup key, passkeys, contacts).

// vaultBackupRoutes mounts GET api.VaultBackupPath and PUT
// api.VaultRestorePath on the /vault group.
func (s *Server) vaultBackupRoutes(g *echo.Group) {
	g.GET(strings.TrimPrefix(api.VaultBackupPath, "/vault"), s.backupVault)
	g.PUT(strings.TrimPrefix(api.VaultRestorePath, "/vault"), s.restoreVault)
}

// backupVault answers GET /vault/backup with an api.VaultBackup of the
// files as written (read under k.mu, so never between the two writes of
// an init or a restore); 409 vault_not_initialized before init.
func (s *Server) backupVault(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	if k.file == nil {
		k.mu.Unlock()
		return api.Conflict("vault_not_initialized", "create your vault first")
	}
	vb, verr := os.ReadFile(filepath.Join(s.dataDir, vaultFileName))
	ib, ierr := os.ReadFile(filepath.Join(s.dataDir, identityFileName))
	k.mu.Unlock()
	if err := errors.Join(verr, ierr); err != nil {
		return err
	}
	b := api.VaultBackup{Format: api.VaultBackupFormat, Vault: vb}
	if err := jsonUnmarshal(ib, &b.Identity); err != nil {
		return errors.New("read identity record: not JSON")
	}
	if len(vb) > api.MaxVaultBackupBytes {
		return api.ErrVaultBackupTooLarge()
	}
	return c.JSON(http.StatusOK, b)
}

// restoreVault handles PUT /vault/restore {api.VaultBackup}: only while
// the vault is not initialized (else 409 already_initialized), and only a
// backup that passes api.VaultBackup.Check for this container's user. It
// writes the identity record, then the vault file, each atomically (the
// order of init: a crash between the two leaves an uninitialized vault
// that a new restore or init replaces), and leaves the vault locked. 204.
func (s *Server) restoreVault(c echo.Context) error {
	b, err := api.DecodeVaultBackup(c.Request().Body)
	if err != nil {
		return err
	}
	if _, err := b.Check(s.userID); err != nil {
		return err
	}
	f, err := crypto.ParseVaultFile(b.Vault) // Check parsed it too; this is the copy we keep
	if err != nil {
		return err
	}
	ib, err := jsonMarshal(b.Identity)
	if err != nil {
		return err
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.file != nil {
		return api.Conflict("already_initialized", "this container already has a vault; a backup is restored only into an empty one")
	}
	if err := crypto.WriteFileAtomic(filepath.Join(s.dataDir, identityFileName), ib, 0o600); err != nil {
		return err
	}
	if err := crypto.WriteFileAtomic(filepath.Join(s.dataDir, vaultFileName), b.Vault, 0o600); err != nil {
		return err
	}
	k.lockLocked()
	k.file = f
	k.failures, k.nextTry, k.chals = 0, time.Time{}, map[string]challenge{}
	s.log.Info("vault restored from a backup", "bytes", len(b.Vault))
	return c.NoContent(http.StatusNoContent)
}
