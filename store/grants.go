package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// PeerGrant is the management role's record of one capability: metadata
// only, never the token.
type PeerGrant struct {
	JTI       string
	IssuerID  UserID
	SubjectID UserID
	Resource  string
	Scope     []string
	MaxCalls  int
	ExpiresAt time.Time
	RevokedAt time.Time // zero while not revoked
	CreatedAt time.Time
	SeenAt    time.Time // when the subject saw it in the app; zero = not yet (new)
}

// Status is "revoked", "expired" or "active" at now.
func (g PeerGrant) Status(now time.Time) string {
	switch {
	case !g.RevokedAt.IsZero():
		return "revoked"
	case !now.Before(g.ExpiresAt):
		return "expired"
	}
	return "active"
}

// New reports whether the grant counts as new for its subject at now: not
// yet seen in the app and still active (a share that was revoked or has
// expired before it was seen is no news to act on).
func (g PeerGrant) New(now time.Time) bool {
	return g.SeenAt.IsZero() && g.Status(now) == "active"
}

// PutPeerGrant records a new grant (an existing jti is left as is).
func (s *Store) PutPeerGrant(ctx context.Context, g PeerGrant) error {
	if g.CreatedAt.IsZero() {
		g.CreatedAt = s.now()
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO peer_grants(jti, issuer_id, subject_id, resource, scope, max_calls, expires_at, created_at)
		VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(jti) DO NOTHING`,
		g.JTI, g.IssuerID, g.SubjectID, g.Resource, strings.Join(g.Scope, ","), g.MaxCalls, ms(g.ExpiresAt), ms(g.CreatedAt))
	if err != nil {
		return fmt.Errorf("put peer grant: %w", err)
	}
	return nil
}

// RevokePeerGrant marks the issuer's grant revoked and returns it. revoked
// is true only for the call that revoked it (false if it already was).
// Unknown ids, and grants of another issuer, are ErrNotFound.
func (s *Store) RevokePeerGrant(ctx context.Context, issuer UserID, jti string) (g PeerGrant, revoked bool, err error) {
	res, err := s.w.ExecContext(ctx, `UPDATE peer_grants SET revoked_at = ? WHERE jti = ? AND issuer_id = ? AND revoked_at IS NULL`, ms(s.now()), jti, issuer)
	if err != nil {
		return PeerGrant{}, false, fmt.Errorf("revoke peer grant: %w", err)
	}
	n, _ := res.RowsAffected()
	gs, err := s.peerGrantsWhere(ctx, `jti = ? AND issuer_id = ?`, jti, issuer)
	if err != nil {
		return PeerGrant{}, false, fmt.Errorf("revoke peer grant: %w", err)
	}
	if len(gs) == 0 {
		return PeerGrant{}, false, ErrNotFound
	}
	return gs[0], n > 0, nil
}

// MarkPeerGrantsSeen records that subject has seen every grant they
// received (only theirs: the issuer's side has no "seen"). It returns how
// many were new (see [PeerGrant.New]): unseen grants that were revoked or
// had expired are marked too but not counted.
func (s *Store) MarkPeerGrantsSeen(ctx context.Context, subject UserID) (int, error) {
	now := ms(s.now())
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("mark peer grants seen: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE peer_grants SET seen_at = ? WHERE subject_id = ? AND seen_at IS NULL AND revoked_at IS NULL AND expires_at > ?`, now, subject, now)
	if err != nil {
		return 0, fmt.Errorf("mark peer grants seen: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, `UPDATE peer_grants SET seen_at = ? WHERE subject_id = ? AND seen_at IS NULL`, now, subject); err != nil {
		return 0, fmt.Errorf("mark peer grants seen: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("mark peer grants seen: %w", err)
	}
	return int(n), nil
}

// PeerGrants lists the grants a user issued (issued=true) or received,
// newest first.
func (s *Store) PeerGrants(ctx context.Context, user UserID, issued bool) ([]PeerGrant, error) {
	col := "subject_id"
	if issued {
		col = "issuer_id"
	}
	gs, err := s.peerGrantsWhere(ctx, col+` = ?`, user)
	if err != nil {
		return nil, fmt.Errorf("list peer grants: %w", err)
	}
	return gs, nil
}

// peerGrantsWhere lists the grants matching where (trusted SQL with ?
// placeholders for args), newest first.
func (s *Store) peerGrantsWhere(ctx context.Context, where string, args ...any) ([]PeerGrant, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT jti, issuer_id, subject_id, resource, scope, max_calls, expires_at, revoked_at, created_at, seen_at
		FROM peer_grants WHERE `+where+` ORDER BY created_at DESC, jti`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PeerGrant
	for rows.Next() {
		var g PeerGrant
		var scope string
		var exp, created int64
		var revoked, seen sql.NullInt64
		if err := rows.Scan(&g.JTI, &g.IssuerID, &g.SubjectID, &g.Resource, &scope, &g.MaxCalls, &exp, &revoked, &created, &seen); err != nil {
			return nil, err
		}
		g.Scope = strings.Split(scope, ",")
		g.ExpiresAt, g.CreatedAt = fromMS(exp), fromMS(created)
		if revoked.Valid {
			g.RevokedAt = fromMS(revoked.Int64)
		}
		if seen.Valid {
			g.SeenAt = fromMS(seen.Int64)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}
