package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// VaultBackup is one encrypted vault backup (migration 00008): a user's
// sealed vault file, as the container wrote it, and its signed public-key
// record. Vault is ciphertext; nothing here opens it.
type VaultBackup struct {
	ID        string // "vbk_…" (NewID)
	UserID    UserID
	Vault     []byte // sealed vault file; nil in VaultBackups listings
	Record    string // signed key record, base64url record JSON
	Sig       string // its Ed25519 signature, base64url
	Ed25519   string // the record's signing key, "ed25519:<base64url>"
	SizeBytes int64  // len(Vault)
	SHA256    string // hex SHA-256 of Vault
	CreatedAt time.Time
}

// AddVaultBackup stores b for b.UserID (setting ID, SizeBytes, SHA256 and
// CreatedAt) and deletes that user's older backups beyond the newest keep
// (keep ≥ 1), in one transaction. When the user's newest backup holds the
// same bytes and record, no copy is added (so backing up an unchanged
// vault never pushes out an older, different one): that row's CreatedAt
// moves to now and it is returned. The caller has checked b (structure,
// signature and subject of the record). It returns the stored row without
// Vault.
func (s *Store) AddVaultBackup(ctx context.Context, b VaultBackup, keep int) (VaultBackup, error) {
	if keep < 1 {
		keep = 1
	}
	sum := sha256.Sum256(b.Vault)
	b.ID, b.SizeBytes, b.SHA256 = NewID("vbk"), int64(len(b.Vault)), hex.EncodeToString(sum[:])
	b.CreatedAt = s.now().Truncate(time.Millisecond)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return VaultBackup{}, fmt.Errorf("add vault backup: %w", err)
	}
	defer tx.Rollback()
	var newestID, newestSum, newestRecord, newestSig string
	err = tx.QueryRowContext(ctx, `SELECT id, sha256, record, sig FROM vault_backups WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1`, b.UserID).
		Scan(&newestID, &newestSum, &newestRecord, &newestSig)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return VaultBackup{}, fmt.Errorf("add vault backup: %w", err)
	case newestSum == b.SHA256 && newestRecord == b.Record && newestSig == b.Sig:
		if _, err := tx.ExecContext(ctx, `UPDATE vault_backups SET created_at = ? WHERE id = ?`, ms(b.CreatedAt), newestID); err != nil {
			return VaultBackup{}, fmt.Errorf("add vault backup: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return VaultBackup{}, fmt.Errorf("add vault backup: %w", err)
		}
		b.ID, b.Vault = newestID, nil
		return b, nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO vault_backups(id, user_id, vault, record, sig, ed25519, size_bytes, sha256, created_at)
		VALUES(?,?,?,?,?,?,?,?,?)`, b.ID, b.UserID, b.Vault, b.Record, b.Sig, b.Ed25519, b.SizeBytes, b.SHA256, ms(b.CreatedAt)); err != nil {
		return VaultBackup{}, fmt.Errorf("add vault backup: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM vault_backups WHERE user_id = ? AND id NOT IN
		(SELECT id FROM vault_backups WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?)`, b.UserID, b.UserID, keep); err != nil {
		return VaultBackup{}, fmt.Errorf("add vault backup: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return VaultBackup{}, fmt.Errorf("add vault backup: %w", err)
	}
	b.Vault = nil
	return b, nil
}

// VaultBackups lists user's backups, newest first, without their content.
func (s *Store) VaultBackups(ctx context.Context, user UserID) ([]VaultBackup, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, user_id, record, sig, ed25519, size_bytes, sha256, created_at
		FROM vault_backups WHERE user_id = ? ORDER BY created_at DESC, rowid DESC`, user)
	if err != nil {
		return nil, fmt.Errorf("list vault backups: %w", err)
	}
	defer rows.Close()
	out := []VaultBackup{}
	for rows.Next() {
		var b VaultBackup
		var at int64
		if err := rows.Scan(&b.ID, &b.UserID, &b.Record, &b.Sig, &b.Ed25519, &b.SizeBytes, &b.SHA256, &at); err != nil {
			return nil, fmt.Errorf("list vault backups: %w", err)
		}
		b.CreatedAt = fromMS(at)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list vault backups: %w", err)
	}
	return out, nil
}

// VaultBackup returns user's backup id with its content, or ErrNotFound
// (also for another user's backup).
func (s *Store) VaultBackup(ctx context.Context, user UserID, id string) (VaultBackup, error) {
	var b VaultBackup
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT id, user_id, vault, record, sig, ed25519, size_bytes, sha256, created_at
		FROM vault_backups WHERE user_id = ? AND id = ?`, user, id).
		Scan(&b.ID, &b.UserID, &b.Vault, &b.Record, &b.Sig, &b.Ed25519, &b.SizeBytes, &b.SHA256, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return VaultBackup{}, ErrNotFound
	}
	if err != nil {
		return VaultBackup{}, fmt.Errorf("get vault backup: %w", err)
	}
	b.CreatedAt = fromMS(at)
	return b, nil
}
