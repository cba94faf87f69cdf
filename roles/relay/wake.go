package relay

import (
	"context"
	"sync"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/metrics"
	"github.com/ocmt/ocmt/store"
)

// wakeState deduplicates wake requests: at most one per recipient per
// WakeCooldown unless it connected in between, and none while one is
// running (a request meanwhile makes the running one go again once it
// ends, if the recipient is offline by then).
type wakeState struct {
	mu      sync.Mutex
	last    map[string]time.Time // start of the latest wake per user; guarded by mu
	running map[string]bool      // guarded by mu
	again   map[string]bool      // a wake was asked for while one ran; guarded by mu
	// conns counts each user's authenticated connections, so a wake can
	// tell that its recipient connected even if it has gone again since
	// (a container stopped right after it served). Guarded by mu.
	conns map[string]uint64
	// unavailable holds when a woken user last failed to connect within
	// ConnectGrace; calls to it are refused at once for WakeCooldown
	// afterwards, or until it connects. Guarded by mu.
	unavailable map[string]time.Time
}

// unavailableMsg tells a caller why its call failed at once.
const unavailableMsg = "the owner's vault is locked or their agent is not running; the call will work once they unlock it"

func (w *wakeState) markUnavailable(user string, now time.Time) {
	w.mu.Lock()
	w.unavailable[user] = now
	w.mu.Unlock()
}

func (w *wakeState) isUnavailable(user string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.unavailable[user]
	return ok && now.Sub(t) < WakeCooldown && now.Sub(t) > -WakeCooldown
}

// start reports whether a wake of user should start at now, and records it.
func (w *wakeState) start(user string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running[user] {
		w.again[user] = true
		return false
	}
	if t, ok := w.last[user]; ok && now.Sub(t) < WakeCooldown && now.Sub(t) > -WakeCooldown {
		return false
	}
	w.last[user] = now
	w.running[user] = true
	return true
}

// next ends a wake of user, or reports true (still running) if another
// was asked for meanwhile and the one that ended reached the recipient
// (ok); one that did not is not repeated at once.
func (w *wakeState) next(user string, ok bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	again := w.again[user]
	delete(w.again, user)
	if again && ok {
		return true
	}
	delete(w.running, user)
	return false
}

// connected records that user connected: it clears the cooldown (the next
// time it is offline, wake it again) and counts the connection.
func (w *wakeState) connected(user string) {
	w.mu.Lock()
	delete(w.last, user)
	delete(w.unavailable, user)
	w.conns[user]++
	w.mu.Unlock()
}

// connCount is the number of user's connections so far.
func (w *wakeState) connCount(user string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conns[user]
}

func (w *wakeState) prune(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for u, t := range w.last {
		if now.Sub(t) >= WakeCooldown {
			delete(w.last, u)
		}
	}
	for u, t := range w.unavailable {
		if now.Sub(t) >= WakeCooldown {
			delete(w.unavailable, u)
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
		s.wakes.next(user, false)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ok := true
		for again := true; again; again = s.wakes.next(user, ok) {
			if s.connFor(user) != nil || s.base.Err() != nil {
				continue
			}
			ok = s.wakeOnce(user)
		}
	}()
}

// wakeOnce asks the Waker to wake user and waits for it to connect; if it
// does not, its queued calls fail (failCalls) and it reports false.
func (s *Server) wakeOnce(user string) bool {
	ctx, cancel := context.WithTimeout(s.base, WakeTimeout)
	defer cancel()
	before := s.wakes.connCount(user)
	if err := s.opt.Waker.Wake(ctx, user); err != nil {
		s.log.Warn("relay wake failed", "user", user, "err", err)
	} else {
		s.log.Info("relay woke recipient", "user", user)
	}
	if !s.awaitConnect(ctx, user, before) {
		s.failCalls(user)
		return false
	}
	return true
}

// awaitConnect reports whether user is connected now, or connects within
// ConnectGrace, or has connected since its connection count was before.
func (s *Server) awaitConnect(ctx context.Context, user string, before uint64) bool {
	deadline := time.Now().Add(s.opt.ConnectGrace)
	for s.connFor(user) == nil && s.wakes.connCount(user) == before {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// failCalls handles a recipient that did not connect after a wake (its
// vault is locked, or its container could not start): the calls queued for
// it are dropped, since their senders are waiting, and each connected
// sender gets an error frame recipient_unavailable naming the envelope.
// Other envelopes (grants, results) stay queued for when it connects.
func (s *Server) failCalls(user string) {
	s.wakes.markUnavailable(user, s.now())
	ctx, cancel := context.WithTimeout(s.base, opTimeout)
	defer cancel()
	envs, err := s.st.EnvelopesFor(ctx, store.UserID(user), 0)
	if err != nil {
		s.log.Error("relay list envelopes", "err", err)
		return
	}
	for _, e := range envs {
		if e.Type != api.RelayTypeCall {
			continue
		}
		if err := s.st.DeleteEnvelope(ctx, e.ID, e.Recipient); err != nil {
			continue // acknowledged meanwhile
		}
		s.opt.Metrics.Envelopes(metrics.EnvelopeDropped, 1)
		s.log.Info("relay dropped call: recipient unavailable", "id", e.ID, "from", e.Sender, "to", e.Recipient)
		if c := s.connFor(string(e.Sender)); c != nil {
			c.sendError(CodeRecipientUnavailable, e.ID, unavailableMsg)
		}
	}
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
