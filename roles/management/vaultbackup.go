package management

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
)

// Encrypted vault backups (issue 10 item 5, SPEC §6): on the user's
// request the management role copies the sealed vault file and the signed
// key record out of the user's container (api.FetchVaultBackup) into the
// store, and puts one back into a container whose vault is not initialized
// (api.PushVaultRestore), e.g. a new one after the volume was lost. It only
// ever holds ciphertext and public keys: nothing here can open a vault.

// vaultBackupsKept is how many backups the store keeps per user; an older
// one goes when a newer one is taken.
const vaultBackupsKept = 3

// vaultBackupRoutes mounts the backup routes on the signed-in group
// /api/v1/me:
//
//	POST /vault/backups  → 201 api.VaultBackupInfo (back up now)
//	GET  /vault/backups  → 200 api.VaultBackupList
//	POST /vault/restore  {api.VaultRestoreRequest} → 204
func (s *Server) vaultBackupRoutes(me *echo.Group) {
	me.POST("/vault/backups", s.backupVault)
	me.GET("/vault/backups", s.listVaultBackups)
	me.POST("/vault/restore", s.restoreVault)
}

func backupInfo(b store.VaultBackup) api.VaultBackupInfo {
	return api.VaultBackupInfo{ID: b.ID, SizeBytes: b.SizeBytes, SHA256: b.SHA256, Ed25519: b.Ed25519, CreatedAt: b.CreatedAt.UTC()}
}

// backupVault handles POST /api/v1/me/vault/backups: it fetches the sealed
// vault from the caller's container (waking it), checks it and stores it,
// keeping the newest vaultBackupsKept. Errors: the container's (409
// vault_not_initialized …), 413 backup_too_large, 502 invalid_backup,
// 429 rate_limited.
func (s *Server) backupVault(c echo.Context) error {
	u := currentUser(c)
	uid := string(u.ID)
	if !s.vaultBackupByUser.allow(uid) {
		return api.TooMany("too many backups in a short time; wait a minute")
	}
	ctx := c.Request().Context()
	b, rec, err := api.FetchVaultBackup(ctx, s.agent, uid)
	if err != nil {
		return err
	}
	stored, err := s.st.AddVaultBackup(context.WithoutCancel(ctx), store.VaultBackup{UserID: u.ID, Vault: b.Vault,
		Record: b.Identity.Record, Sig: b.Identity.Sig, Ed25519: rec.Ed25519}, vaultBackupsKept)
	if err != nil {
		return err
	}
	s.audit(context.WithoutCancel(ctx), uid, "vault.backed_up", uid, map[string]string{"backup": stored.ID, "sha256": stored.SHA256})
	return c.JSON(http.StatusCreated, backupInfo(stored))
}

// listVaultBackups handles GET /api/v1/me/vault/backups.
func (s *Server) listVaultBackups(c echo.Context) error {
	list, err := s.st.VaultBackups(c.Request().Context(), currentUser(c).ID)
	if err != nil {
		return err
	}
	out := api.VaultBackupList{Backups: make([]api.VaultBackupInfo, 0, len(list)), Keep: vaultBackupsKept}
	for _, b := range list {
		out.Backups = append(out.Backups, backupInfo(b))
	}
	return c.JSON(http.StatusOK, out)
}

// restoreVault handles POST /api/v1/me/vault/restore {"id"}: the caller's
// backup goes into the caller's container (waking it), which takes it only
// while its vault is not initialized (409 already_initialized); the
// restored vault's keys are then published to the directory. 400
// invalid_id without an id; 404 for an unknown backup or another user's.
func (s *Server) restoreVault(c echo.Context) error {
	u := currentUser(c)
	uid := string(u.ID)
	var req api.VaultRestoreRequest
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	if req.ID == "" {
		return api.BadRequest("invalid_id", "name the backup to restore (id)")
	}
	if !strings.HasPrefix(req.ID, "vbk_") || len(req.ID) > 64 {
		return api.NotFound("no such backup")
	}
	if !s.vaultBackupByUser.allow(uid) {
		return api.TooMany("too many requests in a short time; wait a minute")
	}
	ctx := c.Request().Context()
	sb, err := s.st.VaultBackup(ctx, u.ID, req.ID)
	if errors.Is(err, store.ErrNotFound) {
		return api.NotFound("no such backup")
	}
	if err != nil {
		return err
	}
	b := api.VaultBackup{Format: api.VaultBackupFormat, Vault: sb.Vault, Identity: crypto.SignedKeyRecord{Record: sb.Record, Sig: sb.Sig}}
	if _, err := b.Check(uid); err != nil { // what the store holds passes the same gate again
		return err
	}
	if err := api.PushVaultRestore(ctx, s.agent, uid, b); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	s.audit(ctx, uid, "vault.restored", uid, map[string]string{"backup": sb.ID, "sha256": sb.SHA256})
	if err := s.publishKeys(ctx, u.ID); err != nil {
		s.log.Error("publish keys after a restore", "user", uid, "err", err)
	}
	return c.NoContent(http.StatusNoContent)
}
