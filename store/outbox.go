package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// States of an outbox mail.
const (
	MailQueued = "queued" // waiting to be sent (or being sent)
	MailSent   = "sent"   // accepted by the mail server
	MailFailed = "failed" // given up for good: permanent SMTP error, expired link or too old
)

// MailKeepAfterDone is how long a sent or failed mail's metadata stays in
// the outbox for the admin to see.
const MailKeepAfterDone = 7 * 24 * time.Hour

// OutboxMail is one row of the mail outbox (migration 00007).
type OutboxMail struct {
	ID        string // "mail_…" (NewID)
	To        string
	Subject   string
	Body      string // "" once sent or failed
	Link      string // the link the console mailer shows; "" once sent or failed
	Kind      string // "signin", "invite", "share"
	State     string // MailQueued, MailSent or MailFailed
	CreatedAt time.Time
	UpdatedAt time.Time
	ExpiresAt time.Time // zero = never; a queued mail past it is given up, never sent
	Attempts  int
	NextAt    time.Time // when the next attempt is due (MailQueued)
	LastError string    // the last failure, without secrets; "" = none
}

// EnqueueMail stores m as queued, due at once. It sets m.ID, CreatedAt,
// UpdatedAt and NextAt, and returns the stored row.
func (s *Store) EnqueueMail(ctx context.Context, m OutboxMail) (OutboxMail, error) {
	now := s.now().Truncate(time.Millisecond)
	m.ID, m.State, m.CreatedAt, m.UpdatedAt, m.NextAt, m.Attempts, m.LastError = NewID("mail"), MailQueued, now, now, now, 0, ""
	var exp int64
	if !m.ExpiresAt.IsZero() {
		exp = ms(m.ExpiresAt)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO mail_outbox(id, recipient, subject, body, link, kind, state, created_at, updated_at, expires_at, next_attempt_at)
		VALUES(?,?,?,?,?,?,?,?,?,?,?)`, m.ID, m.To, m.Subject, m.Body, m.Link, m.Kind, MailQueued, ms(now), ms(now), exp, ms(now))
	if err != nil {
		return OutboxMail{}, fmt.Errorf("enqueue mail: %w", err)
	}
	return m, nil
}

// ClaimDueMail returns up to limit queued mails due at now (next attempt
// reached, or expired: the caller gives those up), oldest due first, and
// marks each as being sent (sending_since = now). A claim that is never
// settled (the process died while sending) is released by ReleaseMailClaims.
func (s *Store) ClaimDueMail(ctx context.Context, now time.Time, limit int) ([]OutboxMail, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("claim mail: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+outboxCols+` FROM mail_outbox
		WHERE state = ? AND sending_since IS NULL AND (next_attempt_at <= ? OR (expires_at > 0 AND expires_at <= ?))
		ORDER BY next_attempt_at, created_at, id LIMIT ?`, MailQueued, ms(now), ms(now), limit)
	if err != nil {
		return nil, fmt.Errorf("claim mail: %w", err)
	}
	out, err := scanOutbox(rows)
	if err != nil {
		return nil, fmt.Errorf("claim mail: %w", err)
	}
	for _, m := range out {
		if _, err := tx.ExecContext(ctx, `UPDATE mail_outbox SET sending_since = ? WHERE id = ?`, ms(now), m.ID); err != nil {
			return nil, fmt.Errorf("claim mail: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("claim mail: %w", err)
	}
	return out, nil
}

// ReleaseMailClaims makes every mail that was being sent due again at
// now, and returns how many there were. The outbox calls it once at start:
// a claim left over is a send the last process did not finish, so the mail
// is sent again (at least once; it may arrive twice).
func (s *Store) ReleaseMailClaims(ctx context.Context, now time.Time) (int, error) {
	r, err := s.w.ExecContext(ctx, `UPDATE mail_outbox SET sending_since = NULL, next_attempt_at = ? WHERE sending_since IS NOT NULL`, ms(now))
	if err != nil {
		return 0, fmt.Errorf("release mail claims: %w", err)
	}
	n, _ := r.RowsAffected()
	return int(n), nil
}

// MailSent records that mail id was accepted by the server: its body and
// link are deleted.
func (s *Store) MailSent(ctx context.Context, id string, now time.Time, attempts int) error {
	_, err := s.w.ExecContext(ctx, `UPDATE mail_outbox SET state = ?, body = '', link = '', sending_since = NULL, attempts = ?, last_error = '', updated_at = ? WHERE id = ?`,
		MailSent, attempts, ms(now), id)
	if err != nil {
		return fmt.Errorf("mail sent: %w", err)
	}
	return nil
}

// MailFailed records that mail id is given up for good, with reason (no
// secrets): its body and link are deleted.
func (s *Store) MailFailed(ctx context.Context, id string, now time.Time, attempts int, reason string) error {
	_, err := s.w.ExecContext(ctx, `UPDATE mail_outbox SET state = ?, body = '', link = '', sending_since = NULL, attempts = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		MailFailed, attempts, reason, ms(now), id)
	if err != nil {
		return fmt.Errorf("mail failed: %w", err)
	}
	return nil
}

// MailRetry records a failed attempt of mail id (reason without secrets)
// and when to try again.
func (s *Store) MailRetry(ctx context.Context, id string, now time.Time, attempts int, reason string, next time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE mail_outbox SET sending_since = NULL, attempts = ?, last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?`,
		attempts, reason, ms(next), ms(now), id)
	if err != nil {
		return fmt.Errorf("mail retry: %w", err)
	}
	return nil
}

// NextMailDue returns when the earliest queued mail that is not being sent
// is due (its next attempt or its expiry, whichever comes first); ok is
// false when none is queued.
func (s *Store) NextMailDue(ctx context.Context) (t time.Time, ok bool, err error) {
	var v sql.NullInt64
	err = s.r.QueryRowContext(ctx, `SELECT MIN(CASE WHEN expires_at > 0 AND expires_at < next_attempt_at THEN expires_at ELSE next_attempt_at END)
		FROM mail_outbox WHERE state = ? AND sending_since IS NULL`, MailQueued).Scan(&v)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next mail due: %w", err)
	}
	if !v.Valid {
		return time.Time{}, false, nil
	}
	return fromMS(v.Int64), true, nil
}

// MailCounts returns how many outbox rows are in each state (states with
// none are absent).
func (s *Store) MailCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT state, COUNT(*) FROM mail_outbox GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("mail counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("mail counts: %w", err)
		}
		out[st] = n
	}
	return out, rows.Err()
}

// OutboxList returns up to limit outbox rows, newest first, without body
// or link (the admin's view).
func (s *Store) OutboxList(ctx context.Context, limit int) ([]OutboxMail, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+outboxCols+` FROM mail_outbox ORDER BY created_at DESC, id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list mail: %w", err)
	}
	out, err := scanOutbox(rows)
	if err != nil {
		return nil, fmt.Errorf("list mail: %w", err)
	}
	for i := range out {
		out[i].Body, out[i].Link = "", ""
	}
	return out, nil
}

// DeleteOldMail deletes sent and failed rows last changed before before,
// and returns how many.
func (s *Store) DeleteOldMail(ctx context.Context, before time.Time) (int, error) {
	r, err := s.w.ExecContext(ctx, `DELETE FROM mail_outbox WHERE state != ? AND updated_at < ?`, MailQueued, ms(before))
	if err != nil {
		return 0, fmt.Errorf("delete old mail: %w", err)
	}
	n, _ := r.RowsAffected()
	return int(n), nil
}

const outboxCols = `id, recipient, subject, body, link, kind, state, created_at, updated_at, expires_at, attempts, next_attempt_at, last_error`

func scanOutbox(rows *sql.Rows) ([]OutboxMail, error) {
	defer rows.Close()
	var out []OutboxMail
	for rows.Next() {
		var m OutboxMail
		var created, updated, exp, next int64
		if err := rows.Scan(&m.ID, &m.To, &m.Subject, &m.Body, &m.Link, &m.Kind, &m.State, &created, &updated, &exp, &m.Attempts, &next, &m.LastError); err != nil {
			return nil, err
		}
		m.CreatedAt, m.UpdatedAt, m.ExpiresAt, m.NextAt = fromMS(created), fromMS(updated), fromMS(exp), fromMS(next)
		out = append(out, m)
	}
	return out, rows.Err()
}
