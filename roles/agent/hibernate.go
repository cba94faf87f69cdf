package agent

import (
	"context"
	"errors"
	"time"

	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/store"
)

// Touch records real work for a user's container (a proxied request, a
// WebSocket message from the client, a relay delivery). It is cheap: the
// time is kept in memory and flushed to the database by Sweep.
func (s *Server) Touch(userID string) {
	s.user(userID).activity.Store(s.now().UnixMilli())
}

// flushActivity writes in-memory activity times to the database.
func (s *Server) flushActivity(ctx context.Context) {
	s.mu.Lock()
	pending := map[string]int64{}
	for id, u := range s.users {
		if a := u.activity.Swap(0); a != 0 {
			pending[id] = a
		}
	}
	s.mu.Unlock()
	for id, a := range pending {
		if err := s.st.TouchContainer(ctx, store.UserID(id), time.UnixMilli(a)); err != nil {
			s.log.Error("persist activity", "user", id, "err", err)
			s.user(id).activity.CompareAndSwap(0, a) // retry next sweep
		}
	}
}

// Sweep flushes activity and applies the hibernation tiers once: a running
// container idle for IdlePauseAfter is paused; a container paused for
// PausedStopAfter is stopped. A container with a proxied HTTP request under
// way is never paused. Open but idle WebSockets do not count as activity.
func (s *Server) Sweep(ctx context.Context) {
	s.flushActivity(ctx)
	s.syncEngine(ctx)
	recs, err := s.st.Containers(ctx)
	if err != nil {
		s.log.Error("sweep", "err", err)
		return
	}
	now := s.now()
	for _, rec := range recs {
		uid := string(rec.UserID)
		u := s.user(uid)
		switch {
		case rec.State == store.StateRunning && s.opt.IdlePauseAfter > 0 &&
			now.Sub(rec.LastActivityAt) >= s.opt.IdlePauseAfter && u.inflight.Load() == 0:
			s.hibernate(ctx, uid, u, store.StateRunning, s.pauseLocked, "agent.idle_pause")
		case rec.State == store.StatePaused && s.opt.PausedStopAfter > 0 &&
			now.Sub(rec.StateSince) >= s.opt.PausedStopAfter:
			s.hibernate(ctx, uid, u, store.StatePaused, s.stopLocked, "agent.idle_stop")
		}
	}
}

func (s *Server) hibernate(ctx context.Context, uid string, u *userState, want string, f func(context.Context, *store.Container) error, action string) {
	if !u.op.TryLock() {
		return // busy: try next sweep
	}
	defer u.op.Unlock()
	rec, err := s.st.ContainerByUser(ctx, store.UserID(uid))
	if err != nil || rec.State != want || u.inflight.Load() > 0 || u.activity.Load() > rec.LastActivityAt.UnixMilli() {
		return // changed since the scan
	}
	if err := f(ctx, &rec); err != nil {
		s.log.Error("hibernate", "user", uid, "action", action, "err", err)
		return
	}
	s.log.Info("hibernated container", "user", uid, "state", rec.State)
	s.audit(uid, action, nil)
}

// syncEngine corrects records whose container changed behind our back (it
// vanished, exited or was paused by someone else), so status is true and
// the next request wakes or recreates it.
func (s *Server) syncEngine(ctx context.Context) {
	insts, err := s.drv.List(ctx)
	if err != nil {
		s.log.Warn("sync with engine", "err", err)
		return
	}
	byID := map[string]runtime.Instance{}
	for _, in := range insts {
		byID[in.ID] = in
	}
	recs, err := s.st.Containers(ctx)
	if err != nil {
		return
	}
	for _, rec := range recs {
		if rec.State == store.StateProvisioning || rec.State == store.StateError || rec.EngineID == "" {
			continue
		}
		in, ok := byID[rec.EngineID]
		if ok && engineToState(in.State) == rec.State && (in.Endpoint == "" || in.Endpoint == rec.Endpoint) {
			continue
		}
		s.refresh(ctx, string(rec.UserID))
	}
}

// refresh re-reads one user's container from the engine and fixes the
// record: a vanished container becomes stopped with no engine id (the next
// wake recreates it, keeping its data), an exited one stopped.
func (s *Server) refresh(ctx context.Context, userID string) {
	u := s.user(userID)
	if !u.op.TryLock() {
		return // a lifecycle operation is under way; it knows better
	}
	defer u.op.Unlock()
	rec, err := s.st.ContainerByUser(ctx, store.UserID(userID))
	if err != nil || rec.EngineID == "" || rec.State == store.StateProvisioning {
		return
	}
	in, err := s.drv.Inspect(ctx, rec.EngineID)
	state, endpoint, engineID := "", "", rec.EngineID
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		state, engineID = store.StateStopped, ""
	case err != nil:
		return
	default:
		state, endpoint = engineToState(in.State), in.Endpoint
	}
	if state == rec.State && endpoint == rec.Endpoint && engineID == rec.EngineID {
		return
	}
	s.log.Warn("container changed outside ocmt", "user", userID, "was", rec.State, "now", state, "gone", engineID == "")
	rec.State, rec.Endpoint, rec.EngineID, rec.StateSince = state, endpoint, engineID, s.now()
	if err := s.st.PutContainer(ctx, rec); err != nil {
		s.log.Error("refresh container record", "err", err)
		return
	}
	s.audit(userID, "agent.changed_outside", map[string]string{"state": state})
}
