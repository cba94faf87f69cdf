package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// RelayEnvelope is an envelope queued at the relay for its recipient
// (SPEC §7.2): the relay-readable header and the sealed payload.
type RelayEnvelope struct {
	// ID is the envelope id (base64url of 16 random bytes), unique.
	ID string
	// Seq orders the queue (assigned by PutEnvelope, increasing; read
	// only). It is the cursor of [Store.EnvelopesAfter].
	Seq int64
	// Sender and Recipient are the header's from and to.
	Sender    UserID
	Recipient UserID
	// TS is the header's ts (the sender's clock, millisecond precision).
	TS time.Time
	// Type is the header's type ("capability.request", …).
	Type string
	// JTI is the capability id the envelope carries, or "".
	JTI string
	// Payload is the NaCl box ciphertext exactly as sent; nil in the
	// results of [Store.TrimEnvelopes] (metadata only).
	Payload []byte
	// CreatedAt is when the relay accepted it; ExpiresAt when it is
	// dropped if still unacknowledged.
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Size returns the payload size in bytes.
func (e *RelayEnvelope) Size() int { return len(e.Payload) }

// isUniqueViolation reports whether err is a SQLite UNIQUE/PRIMARY KEY
// constraint failure.
func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrConstraint &&
		(se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey || se.ExtendedCode == sqlite3.ErrConstraintUnique)
}

// PutEnvelope stores e at the end of its recipient's queue. CreatedAt
// defaults to now; ExpiresAt must be set. The payload is stored as given
// (ciphertext). Errors: [ErrConflict] if the id is already queued.
func (s *Store) PutEnvelope(ctx context.Context, e RelayEnvelope) error {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = s.now()
	}
	if e.Payload == nil {
		e.Payload = []byte{}
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO relay_envelopes(id, seq, sender, recipient, ts, type, jti, payload, created_at, expires_at)
		VALUES(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM relay_envelopes), ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.Sender, e.Recipient, ms(e.TS), e.Type, e.JTI, e.Payload, ms(e.CreatedAt), ms(e.ExpiresAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("put envelope: %w", ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("put envelope: %w", err)
	}
	return nil
}

const envelopeCols = `id, seq, sender, recipient, ts, type, jti, created_at, expires_at`

func scanEnvelope(sc interface{ Scan(...any) error }, withPayload bool) (RelayEnvelope, error) {
	var e RelayEnvelope
	var ts, created, expires int64
	dst := []any{&e.ID, &e.Seq, &e.Sender, &e.Recipient, &ts, &e.Type, &e.JTI, &created, &expires}
	if withPayload {
		dst = append(dst, &e.Payload)
	}
	if err := sc.Scan(dst...); err != nil {
		return RelayEnvelope{}, err
	}
	e.TS, e.CreatedAt, e.ExpiresAt = fromMS(ts), fromMS(created), fromMS(expires)
	return e, nil
}

// EnvelopesFor returns up to limit unexpired envelopes queued for
// recipient, oldest first, with their payloads. limit ≤ 0 means 1000.
func (s *Store) EnvelopesFor(ctx context.Context, recipient UserID, limit int) ([]RelayEnvelope, error) {
	return s.EnvelopesAfter(ctx, recipient, 0, limit)
}

// EnvelopesAfter is [Store.EnvelopesFor] for the envelopes whose Seq is
// greater than afterSeq: pass the last Seq of one page to get the next.
func (s *Store) EnvelopesAfter(ctx context.Context, recipient UserID, afterSeq int64, limit int) ([]RelayEnvelope, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+envelopeCols+`, payload FROM relay_envelopes
		WHERE recipient = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?`, recipient, afterSeq, ms(s.now()), limit)
	if err != nil {
		return nil, fmt.Errorf("list envelopes: %w", err)
	}
	defer rows.Close()
	var out []RelayEnvelope
	for rows.Next() {
		e, err := scanEnvelope(rows, true)
		if err != nil {
			return nil, fmt.Errorf("list envelopes: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list envelopes: %w", err)
	}
	return out, nil
}

// DeleteEnvelope removes the envelope id if it is queued for recipient
// (an acknowledgement: only the recipient may remove it). Errors:
// [ErrNotFound] when there is no such envelope for that recipient.
func (s *Store) DeleteEnvelope(ctx context.Context, id string, recipient UserID) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM relay_envelopes WHERE id = ? AND recipient = ?`, id, recipient)
	if err != nil {
		return fmt.Errorf("delete envelope: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete envelope: %w", err)
	} else if n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteExpiredEnvelopes removes envelopes, cached snapshots and
// capability-issuer records whose expiry has passed and returns how many
// envelopes went.
func (s *Store) DeleteExpiredEnvelopes(ctx context.Context) (int64, error) {
	now := ms(s.now())
	res, err := s.w.ExecContext(ctx, `DELETE FROM relay_envelopes WHERE expires_at <= ?`, now)
	if err != nil {
		return 0, fmt.Errorf("delete expired envelopes: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM relay_snapshots WHERE expires_at <= ?`, now); err != nil {
		return 0, fmt.Errorf("delete expired snapshots: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM relay_capability_issuers WHERE expires_at <= ?`, now); err != nil {
		return 0, fmt.Errorf("delete expired capability issuers: %w", err)
	}
	return res.RowsAffected()
}

// CountQueued returns how many envelopes are queued for recipient,
// expired ones not yet swept included.
func (s *Store) CountQueued(ctx context.Context, recipient UserID) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM relay_envelopes WHERE recipient = ?`, recipient).Scan(&n); err != nil {
		return 0, fmt.Errorf("count envelopes: %w", err)
	}
	return n, nil
}

// TrimEnvelopes keeps only the newest keep envelopes queued for
// recipient and returns the dropped ones, oldest first, without payloads
// (for a metadata log line). keep must be ≥ 1.
func (s *Store) TrimEnvelopes(ctx context.Context, recipient UserID, keep int) ([]RelayEnvelope, error) {
	if keep < 1 {
		return nil, fmt.Errorf("trim envelopes: keep %d < 1", keep)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("trim envelopes: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM relay_envelopes WHERE recipient = ?`, recipient).Scan(&n); err != nil {
		return nil, fmt.Errorf("trim envelopes: %w", err)
	}
	if n <= keep {
		return nil, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+envelopeCols+` FROM relay_envelopes WHERE recipient = ? ORDER BY seq LIMIT ?`, recipient, n-keep)
	if err != nil {
		return nil, fmt.Errorf("trim envelopes: %w", err)
	}
	var dropped []RelayEnvelope
	for rows.Next() {
		e, err := scanEnvelope(rows, false)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("trim envelopes: %w", err)
		}
		dropped = append(dropped, e)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("trim envelopes: %w", err)
	}
	for _, e := range dropped {
		if _, err := tx.ExecContext(ctx, `DELETE FROM relay_envelopes WHERE id = ?`, e.ID); err != nil {
			return nil, fmt.Errorf("trim envelopes: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("trim envelopes: %w", err)
	}
	return dropped, nil
}

// RelayRevocation is a capability revocation accepted by the relay
// (SPEC §7.1, §7.2). The caller has verified it. A revocation is scoped
// to its signer: it names (JTI, IssuerUser, Issuer), since a jti is only
// unique per issuer (anyone can choose the same 16 bytes).
type RelayRevocation struct {
	// JTI is the revoked capability id (base64url text form).
	JTI string
	// IssuerUser is the user who sent it (whose directory key signed
	// it); "" for revocations stored before revocations were scoped.
	IssuerUser UserID
	// Issuer is the capability issuer's key, "ed25519:<base64url>".
	Issuer string
	// TS is the revocation's own time.
	TS time.Time
	// Reason is the issuer's free text, or "".
	Reason string
	// Revocation and Sig are the signed revocation as received
	// (base64url JSON and signature), kept so it can be re-verified and
	// shown to a refused caller.
	Revocation string
	Sig        string
	// CreatedAt is when the relay stored it (defaults to now).
	CreatedAt time.Time
}

// PutRevocation records r and deletes the cached snapshot of r.JTI put by
// r.Issuer, if any, in one transaction. It reports whether r is new:
// revoking an already revoked (jti, user, key) keeps the first record and
// returns false, nil.
func (s *Store) PutRevocation(ctx context.Context, r RelayRevocation) (added bool, err error) {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.now()
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("put revocation: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO relay_revocations(jti, issuer_user, issuer, ts, reason, revocation, sig, created_at)
		VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(jti, issuer_user, issuer) DO NOTHING`,
		r.JTI, r.IssuerUser, r.Issuer, ms(r.TS), r.Reason, r.Revocation, r.Sig, ms(r.CreatedAt))
	if err != nil {
		return false, fmt.Errorf("put revocation: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("put revocation: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM relay_snapshots WHERE jti = ? AND issuer = ?`, r.JTI, r.Issuer); err != nil {
		return false, fmt.Errorf("put revocation: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("put revocation: %w", err)
	}
	return n > 0, nil
}

// Revocations returns every revocation of jti (by any signer), oldest
// first; none is an empty slice. The caller decides which of them apply
// (the authoritative answer behind the relay's Bloom filter).
func (s *Store) Revocations(ctx context.Context, jti string) ([]RelayRevocation, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT jti, issuer_user, issuer, ts, reason, revocation, sig, created_at
		FROM relay_revocations WHERE jti = ? ORDER BY created_at`, jti)
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	defer rows.Close()
	var out []RelayRevocation
	for rows.Next() {
		var r RelayRevocation
		var ts, created int64
		if err := rows.Scan(&r.JTI, &r.IssuerUser, &r.Issuer, &ts, &r.Reason, &r.Revocation, &r.Sig, &created); err != nil {
			return nil, fmt.Errorf("revocations: %w", err)
		}
		r.TS, r.CreatedAt = fromMS(ts), fromMS(created)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	return out, nil
}

// NoteCapabilityIssuer records that user was seen on the issuer side of
// capability jti (the sender of its grant, the recipient of a call with
// it), until expiresAt; a later sighting pushes expiresAt forward. Several
// users may be recorded for one jti.
func (s *Store) NoteCapabilityIssuer(ctx context.Context, jti string, user UserID, expiresAt time.Time) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO relay_capability_issuers(jti, issuer_user, expires_at) VALUES(?,?,?)
		ON CONFLICT(jti, issuer_user) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)`,
		jti, user, ms(expiresAt))
	if err != nil {
		return fmt.Errorf("note capability issuer: %w", err)
	}
	return nil
}

// CapabilityIssuers returns the users recorded (unexpired) on the issuer
// side of jti by [Store.NoteCapabilityIssuer], or none.
func (s *Store) CapabilityIssuers(ctx context.Context, jti string) ([]UserID, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT issuer_user FROM relay_capability_issuers WHERE jti = ? AND expires_at > ?`, jti, ms(s.now()))
	if err != nil {
		return nil, fmt.Errorf("capability issuers: %w", err)
	}
	defer rows.Close()
	var out []UserID
	for rows.Next() {
		var u UserID
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("capability issuers: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("capability issuers: %w", err)
	}
	return out, nil
}

// AllRevokedJTIs calls fn with every revoked jti (in no particular
// order), stopping at and returning fn's first error.
func (s *Store) AllRevokedJTIs(ctx context.Context, fn func(jti string) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT jti FROM relay_revocations`)
	if err != nil {
		return fmt.Errorf("list revocations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var jti string
		if err := rows.Scan(&jti); err != nil {
			return fmt.Errorf("list revocations: %w", err)
		}
		if err := fn(jti); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list revocations: %w", err)
	}
	return nil
}

// RelaySnapshot is the cached-tier snapshot of a `cached` capability
// (SPEC §7.2): an encrypted blob pushed by the capability's issuer for its
// subject.
type RelaySnapshot struct {
	// JTI is the capability id (base64url).
	JTI string
	// Issuer and Subject are the token's iss and sub, "ed25519:<base64url>".
	Issuer  string
	Subject string
	// Blob is the issuer's ciphertext as sent; Sig the issuer's signature
	// over it (base64url), relayed to the subject as is.
	Blob []byte
	Sig  string
	// UpdatedAt is when it was last put; ExpiresAt the token's expiry.
	UpdatedAt time.Time
	ExpiresAt time.Time
}

// PutSnapshot stores or replaces the snapshot of (sn.JTI, sn.Issuer):
// a jti is unique only per issuer, so each issuer has its own slot and
// nobody can take or replace another issuer's. UpdatedAt defaults to now.
func (s *Store) PutSnapshot(ctx context.Context, sn RelaySnapshot) error {
	if sn.UpdatedAt.IsZero() {
		sn.UpdatedAt = s.now()
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO relay_snapshots(jti, issuer, subject, blob, sig, updated_at, expires_at)
		VALUES(?,?,?,?,?,?,?) ON CONFLICT(jti, issuer) DO UPDATE SET subject=excluded.subject, blob=excluded.blob,
		sig=excluded.sig, updated_at=excluded.updated_at, expires_at=excluded.expires_at`,
		sn.JTI, sn.Issuer, sn.Subject, sn.Blob, sn.Sig, ms(sn.UpdatedAt), ms(sn.ExpiresAt))
	if err != nil {
		return fmt.Errorf("put snapshot: %w", err)
	}
	return nil
}

// Snapshot returns the newest unexpired snapshot of jti for subject (an
// "ed25519:…" key text), put by issuer if issuer is not "", or
// [ErrNotFound].
func (s *Store) Snapshot(ctx context.Context, jti, subject, issuer string) (RelaySnapshot, error) {
	var sn RelaySnapshot
	var upd, exp int64
	err := s.r.QueryRowContext(ctx, `SELECT jti, issuer, subject, blob, sig, updated_at, expires_at FROM relay_snapshots
		WHERE jti = ? AND subject = ? AND (? = '' OR issuer = ?) AND expires_at > ? ORDER BY updated_at DESC LIMIT 1`,
		jti, subject, issuer, issuer, ms(s.now())).Scan(&sn.JTI, &sn.Issuer, &sn.Subject, &sn.Blob, &sn.Sig, &upd, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return RelaySnapshot{}, ErrNotFound
	}
	if err != nil {
		return RelaySnapshot{}, fmt.Errorf("get snapshot: %w", err)
	}
	sn.UpdatedAt, sn.ExpiresAt = fromMS(upd), fromMS(exp)
	return sn, nil
}

// DeleteSnapshot removes the snapshot of jti if issuer put it. Errors:
// [ErrNotFound] when there is none from that issuer.
func (s *Store) DeleteSnapshot(ctx context.Context, jti, issuer string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM relay_snapshots WHERE jti = ? AND issuer = ?`, jti, issuer)
	if err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	} else if n == 0 {
		return ErrNotFound
	}
	return nil
}
