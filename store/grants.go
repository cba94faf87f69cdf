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

// RevokePeerGrant marks the issuer's grant revoked; unknown ids are ErrNotFound.
func (s *Store) RevokePeerGrant(ctx context.Context, issuer UserID, jti string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE peer_grants SET revoked_at = COALESCE(revoked_at, ?) WHERE jti = ? AND issuer_id = ?`, ms(s.now()), jti, issuer)
	if err != nil {
		return fmt.Errorf("revoke peer grant: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// PeerGrants lists the grants a user issued (issued=true) or received,
// newest first.
func (s *Store) PeerGrants(ctx context.Context, user UserID, issued bool) ([]PeerGrant, error) {
	col := "subject_id"
	if issued {
		col = "issuer_id"
	}
	rows, err := s.r.QueryContext(ctx, `SELECT jti, issuer_id, subject_id, resource, scope, max_calls, expires_at, revoked_at, created_at
		FROM peer_grants WHERE `+col+` = ? ORDER BY created_at DESC, jti`, user)
	if err != nil {
		return nil, fmt.Errorf("list peer grants: %w", err)
	}
	defer rows.Close()
	var out []PeerGrant
	for rows.Next() {
		var g PeerGrant
		var scope string
		var exp, created int64
		var revoked sql.NullInt64
		if err := rows.Scan(&g.JTI, &g.IssuerID, &g.SubjectID, &g.Resource, &scope, &g.MaxCalls, &exp, &revoked, &created); err != nil {
			return nil, fmt.Errorf("list peer grants: %w", err)
		}
		g.Scope = strings.Split(scope, ",")
		g.ExpiresAt, g.CreatedAt = fromMS(exp), fromMS(created)
		if revoked.Valid {
			g.RevokedAt = fromMS(revoked.Int64)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}
