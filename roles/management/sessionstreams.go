package management

import (
	"context"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/store"
)

// SessionSweepInterval is how often the management role looks for open
// requests and sockets whose session has expired: they are closed at most
// this long after the expiry.
const SessionSweepInterval = time.Second

// tiedRequest is one request in flight (a plain request, a proxied answer
// or a WebSocket) made with a session.
type tiedRequest struct {
	session string // store.TokenHash of the session token
	expires time.Time
	cancel  context.CancelCauseFunc
}

// sessionRequests holds the requests in flight of every session, so that
// ending a session (logout, expiry) ends them too: their contexts are
// cancelled with an *api.SessionEnded cause, and the part that holds a
// WebSocket to the browser (the agent role's proxy) closes it with
// api.StatusSessionEnded.
type sessionRequests struct {
	mu sync.Mutex
	m  map[*tiedRequest]struct{} // guarded by mu
}

func (r *sessionRequests) add(t *tiedRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[*tiedRequest]struct{}{}
	}
	r.m[t] = struct{}{}
}

func (r *sessionRequests) remove(t *tiedRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, t)
}

// end cancels (and forgets) every request that match selects, with cause
// &api.SessionEnded{reason}, and returns how many there were.
func (r *sessionRequests) end(match func(*tiedRequest) bool, reason string) int {
	r.mu.Lock()
	var ended []*tiedRequest
	for t := range r.m {
		if match(t) {
			ended = append(ended, t)
			delete(r.m, t)
		}
	}
	r.mu.Unlock()
	for _, t := range ended {
		t.cancel(&api.SessionEnded{Reason: reason})
	}
	return len(ended)
}

// tieToSession runs the request with a context that ends when the session
// it was made with ends (endSession, expiry), not only when the client goes
// away.
func (s *Server) tieToSession(c echo.Context, sess store.Session, next echo.HandlerFunc) error {
	ctx, cancel := context.WithCancelCause(c.Request().Context())
	t := &tiedRequest{session: sess.TokenHash, expires: sess.ExpiresAt, cancel: cancel}
	s.tied.add(t)
	defer func() {
		s.tied.remove(t)
		cancel(nil)
	}()
	c.SetRequest(c.Request().WithContext(ctx))
	return next(c)
}

// endSession ends the requests and sockets of the session whose token hash
// is given (store.TokenHash), with reason (api.CloseReasonSignedOut, …).
func (s *Server) endSession(tokenHash, reason string) int {
	n := s.tied.end(func(t *tiedRequest) bool { return t.session == tokenHash }, reason)
	if n > 0 {
		s.log.Info("session ended: closed its open requests", "reason", reason, "count", n)
	}
	return n
}

// runSessionSweep ends the requests of expired sessions every
// SessionSweepInterval until ctx ends.
func (s *Server) runSessionSweep(ctx context.Context) {
	tk := time.NewTicker(SessionSweepInterval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			now := s.now()
			if n := s.tied.end(func(t *tiedRequest) bool { return !now.Before(t.expires) }, api.CloseReasonExpired); n > 0 {
				s.log.Info("session expired: closed its open requests", "count", n)
			}
		}
	}
}
