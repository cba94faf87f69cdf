package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Social recovery metadata (migration 00009; issue 10, item 2). The
// management role never holds a share it can open: a released share is
// stored sealed to the request's one-time key, made by the owner's
// browser, and deleted when the request closes or expires.

// SocialSetup is an owner's current trusted-contacts split as management
// knows it.
type SocialSetup struct {
	Owner     UserID
	Threshold int
	Epoch     int64
	SetAt     time.Time
	Contacts  []UserID
}

// Recovery request statuses (RecoveryRequest.Status).
const (
	RecoveryOpen      = "open"
	RecoveryCompleted = "completed"
	RecoveryCancelled = "cancelled"
	RecoveryExpired   = "expired" // reported by Effective, never stored
)

// RecoveryRequest is one owner's request to be helped back in.
type RecoveryRequest struct {
	ID        string
	Owner     UserID
	PublicKey string // standard base64 of the one-time X25519 public key
	Threshold int
	Epoch     int64
	CreatedAt time.Time
	ExpiresAt time.Time
	Status    string // RecoveryOpen, RecoveryCompleted, RecoveryCancelled
	ClosedAt  time.Time
	Approvals []RecoveryApproval
}

// Effective is the request's status at now: RecoveryExpired for an open
// request past ExpiresAt, else Status.
func (r RecoveryRequest) Effective(now time.Time) string {
	if r.Status == RecoveryOpen && !now.Before(r.ExpiresAt) {
		return RecoveryExpired
	}
	return r.Status
}

// RecoveryApproval is one contact's approval; SealedShare is nil once the
// request closed or expired.
type RecoveryApproval struct {
	Contact     UserID
	SealedShare []byte
	CreatedAt   time.Time
}

// PutSocialSetup replaces the owner's setup and contact list.
func (s *Store) PutSocialSetup(ctx context.Context, ss SocialSetup) error {
	if ss.SetAt.IsZero() {
		ss.SetAt = s.now()
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO social_setups(owner_id, threshold, epoch, set_at) VALUES(?,?,?,?)
		ON CONFLICT(owner_id) DO UPDATE SET threshold=excluded.threshold, epoch=excluded.epoch, set_at=excluded.set_at`,
		ss.Owner, ss.Threshold, ss.Epoch, ms(ss.SetAt)); err != nil {
		return fmt.Errorf("put social setup: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM social_contacts WHERE owner_id = ?`, ss.Owner); err != nil {
		return fmt.Errorf("put social setup: %w", err)
	}
	for _, c := range ss.Contacts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO social_contacts(owner_id, contact_id) VALUES(?,?) ON CONFLICT DO NOTHING`, ss.Owner, c); err != nil {
			return fmt.Errorf("put social setup: %w", err)
		}
	}
	return tx.Commit()
}

// DeleteSocialSetup removes the owner's setup (no error if none).
func (s *Store) DeleteSocialSetup(ctx context.Context, owner UserID) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM social_setups WHERE owner_id = ?`, owner)
	if err == nil {
		_, err = s.w.ExecContext(ctx, `DELETE FROM social_contacts WHERE owner_id = ?`, owner)
	}
	if err != nil {
		return fmt.Errorf("delete social setup: %w", err)
	}
	return nil
}

// SocialSetupOf returns the owner's setup or ErrNotFound.
func (s *Store) SocialSetupOf(ctx context.Context, owner UserID) (SocialSetup, error) {
	ss := SocialSetup{Owner: owner}
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT threshold, epoch, set_at FROM social_setups WHERE owner_id = ?`, owner).Scan(&ss.Threshold, &ss.Epoch, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return ss, ErrNotFound
	}
	if err != nil {
		return ss, fmt.Errorf("get social setup: %w", err)
	}
	ss.SetAt = fromMS(at)
	rows, err := s.r.QueryContext(ctx, `SELECT contact_id FROM social_contacts WHERE owner_id = ? ORDER BY contact_id`, owner)
	if err != nil {
		return ss, fmt.Errorf("get social setup: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c UserID
		if err := rows.Scan(&c); err != nil {
			return ss, err
		}
		ss.Contacts = append(ss.Contacts, c)
	}
	return ss, rows.Err()
}

// CreateRecoveryRequest stores a new open request; any other open request
// of the same owner is cancelled (its sealed shares deleted) in the same
// transaction, so an owner has at most one.
func (s *Store) CreateRecoveryRequest(ctx context.Context, r RecoveryRequest) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := ms(s.now())
	if _, err := tx.ExecContext(ctx, `UPDATE recovery_approvals SET sealed_share = NULL WHERE request_id IN
		(SELECT id FROM recovery_requests WHERE owner_id = ? AND status = ?)`, r.Owner, RecoveryOpen); err != nil {
		return fmt.Errorf("create recovery request: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE recovery_requests SET status = ?, closed_at = ? WHERE owner_id = ? AND status = ?`,
		RecoveryCancelled, now, r.Owner, RecoveryOpen); err != nil {
		return fmt.Errorf("create recovery request: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO recovery_requests(id, owner_id, public_key, threshold, epoch, created_at, expires_at, status)
		VALUES(?,?,?,?,?,?,?,?)`, r.ID, r.Owner, r.PublicKey, r.Threshold, r.Epoch, ms(r.CreatedAt), ms(r.ExpiresAt), RecoveryOpen); err != nil {
		return fmt.Errorf("create recovery request: %w", err)
	}
	return tx.Commit()
}

const recoveryCols = `id, owner_id, public_key, threshold, epoch, created_at, expires_at, status, COALESCE(closed_at, 0)`

func scanRecovery(sc interface{ Scan(...any) error }) (RecoveryRequest, error) {
	var r RecoveryRequest
	var created, expires, closed int64
	err := sc.Scan(&r.ID, &r.Owner, &r.PublicKey, &r.Threshold, &r.Epoch, &created, &expires, &r.Status, &closed)
	r.CreatedAt, r.ExpiresAt, r.ClosedAt = fromMS(created), fromMS(expires), fromMS(closed)
	return r, err
}

// RecoveryRequestByID returns the request with its approvals, or
// ErrNotFound. Sealed shares of a request that is no longer open at now
// are never returned (and are deleted).
func (s *Store) RecoveryRequestByID(ctx context.Context, id string) (RecoveryRequest, error) {
	if err := s.PurgeRecoveryShares(ctx); err != nil {
		return RecoveryRequest{}, err
	}
	r, err := scanRecovery(s.r.QueryRowContext(ctx, `SELECT `+recoveryCols+` FROM recovery_requests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("get recovery request: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT contact_id, sealed_share, created_at FROM recovery_approvals WHERE request_id = ? ORDER BY created_at, contact_id`, id)
	if err != nil {
		return r, fmt.Errorf("get recovery approvals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a RecoveryApproval
		var at int64
		if err := rows.Scan(&a.Contact, &a.SealedShare, &at); err != nil {
			return r, err
		}
		a.CreatedAt = fromMS(at)
		if r.Effective(s.now()) != RecoveryOpen {
			a.SealedShare = nil
		}
		r.Approvals = append(r.Approvals, a)
	}
	return r, rows.Err()
}

// RecoveryRequestsFor lists the open, unexpired requests of owners who
// have contact among their trusted contacts, newest first (approvals
// without their sealed shares).
func (s *Store) RecoveryRequestsFor(ctx context.Context, contact UserID) ([]RecoveryRequest, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+recoveryCols+` FROM recovery_requests WHERE status = ? AND expires_at > ?
		AND owner_id IN (SELECT owner_id FROM social_contacts WHERE contact_id = ?) ORDER BY created_at DESC`,
		RecoveryOpen, ms(s.now()), contact)
	if err != nil {
		return nil, fmt.Errorf("list recovery requests: %w", err)
	}
	var out []RecoveryRequest
	for rows.Next() {
		r, err := scanRecovery(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		arows, err := s.r.QueryContext(ctx, `SELECT contact_id, created_at FROM recovery_approvals WHERE request_id = ?`, out[i].ID)
		if err != nil {
			return nil, err
		}
		for arows.Next() {
			var a RecoveryApproval
			var at int64
			if err := arows.Scan(&a.Contact, &at); err != nil {
				arows.Close()
				return nil, err
			}
			a.CreatedAt = fromMS(at)
			out[i].Approvals = append(out[i].Approvals, a)
		}
		arows.Close()
	}
	return out, nil
}

// openRecoveryInTx checks, inside tx, that request id exists and is still
// open: ErrNotFound, ErrExpired (past its expiry) or ErrConflict
// (completed or cancelled) otherwise.
func (s *Store) openRecoveryInTx(ctx context.Context, tx *sql.Tx, id string) error {
	r, err := scanRecovery(tx.QueryRowContext(ctx, `SELECT `+recoveryCols+` FROM recovery_requests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	switch r.Effective(s.now()) {
	case RecoveryOpen:
		return nil
	case RecoveryExpired:
		return ErrExpired
	}
	return ErrConflict
}

// AddRecoveryApproval stores contact's sealed share for the request. It
// fails with ErrNotFound (no such request), ErrExpired (past its expiry),
// ErrConflict (completed or cancelled) or ErrUsed (this contact already
// approved it).
func (s *Store) AddRecoveryApproval(ctx context.Context, requestID string, contact UserID, sealed []byte) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.openRecoveryInTx(ctx, tx, requestID); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO recovery_approvals(request_id, contact_id, sealed_share, created_at) VALUES(?,?,?,?)
		ON CONFLICT DO NOTHING`, requestID, contact, sealed, ms(s.now()))
	if err != nil {
		return fmt.Errorf("add recovery approval: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrUsed
	}
	return tx.Commit()
}

// CloseRecoveryRequest sets an open request's status (RecoveryCompleted
// or RecoveryCancelled) and deletes its sealed shares. A request that is
// not open, or has expired, is ErrConflict / ErrExpired; unknown ids
// ErrNotFound.
func (s *Store) CloseRecoveryRequest(ctx context.Context, id, status string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.openRecoveryInTx(ctx, tx, id); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE recovery_requests SET status = ?, closed_at = ? WHERE id = ?`, status, ms(s.now()), id); err != nil {
		return fmt.Errorf("close recovery request: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE recovery_approvals SET sealed_share = NULL WHERE request_id = ?`, id); err != nil {
		return fmt.Errorf("close recovery request: %w", err)
	}
	return tx.Commit()
}

// PurgeRecoveryShares deletes the sealed shares of every request that is
// closed or has expired.
func (s *Store) PurgeRecoveryShares(ctx context.Context) error {
	_, err := s.w.ExecContext(ctx, `UPDATE recovery_approvals SET sealed_share = NULL WHERE sealed_share IS NOT NULL AND request_id IN
		(SELECT id FROM recovery_requests WHERE status != ? OR expires_at <= ?)`, RecoveryOpen, ms(s.now()))
	if err != nil {
		return fmt.Errorf("purge recovery shares: %w", err)
	}
	return nil
}
