package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Container states as stored and reported (SPEC §11 GET /api/v1/me/agent).
const (
	StateProvisioning = "provisioning"
	StateRunning      = "running"
	StatePaused       = "paused"
	StateStopped      = "stopped"
	StateError        = "error"
)

// Container is the agent role's record of one user's container.
type Container struct {
	UserID         UserID
	Runtime        string // "docker" or "process"
	EngineID       string // docker container id or process id; "" before creation
	State          string
	Endpoint       string // base URL of the vault role inside, e.g. "http://127.0.0.1:49153"
	Image          string
	LastError      string // safe to show the owner and admins
	LastActivityAt time.Time
	StateSince     time.Time
	CreatedAt      time.Time
}

const containerCols = `user_id, runtime, engine_id, state, endpoint, image, last_error, last_activity_at, state_since, created_at`

func scanContainer(sc interface{ Scan(...any) error }) (Container, error) {
	var c Container
	var act, since, created int64
	err := sc.Scan(&c.UserID, &c.Runtime, &c.EngineID, &c.State, &c.Endpoint, &c.Image, &c.LastError, &act, &since, &created)
	c.LastActivityAt, c.StateSince, c.CreatedAt = fromMS(act), fromMS(since), fromMS(created)
	return c, err
}

// PutContainer inserts or replaces the record for c.UserID.
func (s *Store) PutContainer(ctx context.Context, c Container) error {
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	if c.StateSince.IsZero() {
		c.StateSince = s.now()
	}
	if c.LastActivityAt.IsZero() {
		c.LastActivityAt = s.now()
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO containers(`+containerCols+`) VALUES(?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(user_id) DO UPDATE SET runtime=excluded.runtime, engine_id=excluded.engine_id, state=excluded.state,
		endpoint=excluded.endpoint, image=excluded.image, last_error=excluded.last_error,
		last_activity_at=MAX(containers.last_activity_at, excluded.last_activity_at), state_since=excluded.state_since`,
		c.UserID, c.Runtime, c.EngineID, c.State, c.Endpoint, c.Image, c.LastError,
		ms(c.LastActivityAt), ms(c.StateSince), ms(c.CreatedAt))
	if err != nil {
		return fmt.Errorf("put container: %w", err)
	}
	return nil
}

// TouchContainer records activity at t (never moving it backwards).
func (s *Store) TouchContainer(ctx context.Context, user UserID, t time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE containers SET last_activity_at = MAX(last_activity_at, ?) WHERE user_id = ?`, ms(t), user)
	return err
}

// ContainerByUser returns a user's container record or ErrNotFound.
func (s *Store) ContainerByUser(ctx context.Context, user UserID) (Container, error) {
	c, err := scanContainer(s.r.QueryRowContext(ctx, `SELECT `+containerCols+` FROM containers WHERE user_id = ?`, user))
	if errors.Is(err, sql.ErrNoRows) {
		return Container{}, ErrNotFound
	}
	if err != nil {
		return Container{}, fmt.Errorf("get container: %w", err)
	}
	return c, nil
}

// Containers lists every container record.
func (s *Store) Containers(ctx context.Context) ([]Container, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+containerCols+` FROM containers ORDER BY created_at, user_id`)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	defer rows.Close()
	var out []Container
	for rows.Next() {
		c, err := scanContainer(rows)
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteContainer removes a record. Deleting an unknown one is not an error.
func (s *Store) DeleteContainer(ctx context.Context, user UserID) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM containers WHERE user_id = ?`, user)
	return err
}
