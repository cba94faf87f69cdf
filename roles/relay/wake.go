package relay

import (
	"context"
	"sync"
	"time"
)

// wakeState deduplicates wake requests: at most one per recipient per
// WakeCooldown, and none while one is running.
type wakeState struct {
	mu      sync.Mutex
	last    map[string]time.Time // start of the latest wake per user; guarded by mu
	running map[string]bool      // guarded by mu
}

// start reports whether a wake of user should start at now, and records it.
func (w *wakeState) start(user string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running[user] {
		return false
	}
	if t, ok := w.last[user]; ok && now.Sub(t) < WakeCooldown && now.Sub(t) > -WakeCooldown {
		return false
	}
	if w.running == nil {
		w.running = map[string]bool{}
	}
	w.last[user] = now
	w.running[user] = true
	return true
}

func (w *wakeState) done(user string) {
	w.mu.Lock()
	delete(w.running, user)
	w.mu.Unlock()
}

// forget clears user's cooldown (it connected: the next time it is
// offline, wake it again).
func (w *wakeState) forget(user string) {
	w.mu.Lock()
	delete(w.last, user)
	w.mu.Unlock()
}

func (w *wakeState) prune(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for u, t := range w.last {
		if now.Sub(t) >= WakeCooldown {
			delete(w.last, u)
		}
	}
}

// wake asks the Waker, in the background, to wake an offline recipient
// (deduplicated, see wakeState). Failures are logged.
func (s *Server) wake(user string) {
	if s.opt.Waker == nil || !s.wakes.start(user, s.now()) {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wakes.done(user)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.wakes.done(user)
		ctx, cancel := context.WithTimeout(s.base, WakeTimeout)
		defer cancel()
		if err := s.opt.Waker.Wake(ctx, user); err != nil {
			s.log.Warn("relay wake failed", "user", user, "err", err)
			return
		}
		s.log.Info("relay woke recipient", "user", user)
	}()
}

// nudge tells the Waker about a delivery to a connected recipient, without
// deduplication: the agent role counts it as activity and unpauses a paused
// container (a no-op for a running one), so the envelope gets read.
func (s *Server) nudge(user string) {
	if s.opt.Waker == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(s.base, WakeTimeout)
		defer cancel()
		if err := s.opt.Waker.Wake(ctx, user); err != nil {
			s.log.Warn("relay nudge failed", "user", user, "err", err)
		}
	}()
}
