package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/store"
)

// Applying a changed configuration. Every container carries the
// fingerprint of the spec it was created from (runtime.LabelConfig: image,
// environment, limits, network). When ocmt restarts with other settings or
// another binary, a container whose fingerprint differs from that of its
// current spec is recreated, keeping its data: a stopped one at its next
// start (startOrRecreate), running and paused ones by ApplyConfig right
// after ocmt starts. Either way the hibernation key (hibernate.go) carries
// an unlocked vault across the recreation.

// applyConcurrency is how many containers ApplyConfig recreates at a time.
const applyConcurrency = 2

// ApplyConfig recreates, in the background and at most applyConcurrency at
// a time, every running or paused container created from another
// configuration than the current one, keeping its data. Each one, under
// its user's lifecycle lock, is stopped with its vault prepared for
// hibernation, recreated from the current spec, started and resumed, so an
// unlocked vault stays unlocked (until its own deadline, or the new
// auto-lock if that is sooner); a paused one is paused again. A failure is
// logged and leaves the record in state error with a readable message.
// Stopped containers are left to their next start.
//
// Call it once, after SetRelayURL (the relay URL is part of the
// configuration). The returned channel is closed when the pass is over.
func (s *Server) ApplyConfig() <-chan struct{} {
	done := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		s.applyConfig(s.base)
	}()
	return done
}

func (s *Server) applyConfig(ctx context.Context) {
	insts, err := s.drv.List(ctx)
	if err != nil {
		s.log.Warn("cannot check containers against the current configuration", "err", err)
		return
	}
	var live []runtime.Instance
	for _, in := range insts {
		if in.State == runtime.EngineRunning || in.State == runtime.EnginePaused {
			live = append(live, in)
		}
	}
	if len(live) == 0 {
		return
	}
	var stale []runtime.Instance
	for _, in := range live {
		cur, err := s.currentConfig(ctx, in.UserID)
		if err != nil {
			s.log.Warn("cannot check containers against the current configuration", "err", err)
			return
		}
		if in.Config != cur {
			stale = append(stale, in)
		}
	}
	if len(stale) == 0 {
		s.log.Debug("containers match the current configuration", "checked", len(live))
		return
	}
	s.log.Info("configuration changed; updating containers", "count", len(stale))
	var updated, failed atomic.Int32
	sem := make(chan struct{}, applyConcurrency)
	var wg sync.WaitGroup
	for _, in := range stale {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ok, err := s.applyOne(ctx, in)
			switch {
			case err != nil:
				failed.Add(1)
				s.log.Error("update container to the current configuration", "user", in.UserID, "err", err)
			case ok:
				updated.Add(1)
			}
		})
	}
	wg.Wait()
	s.log.Info("containers updated to the current configuration", "updated", updated.Load(), "failed", failed.Load())
}

// applyOne recreates one running or paused container from the current
// spec (see ApplyConfig). It reports false, with no error, if the
// container changed since the scan.
func (s *Server) applyOne(ctx context.Context, in runtime.Instance) (bool, error) {
	u := s.user(in.UserID)
	u.op.Lock()
	defer u.op.Unlock()
	rec, err := s.st.ContainerByUser(ctx, store.UserID(in.UserID))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if rec.EngineID != in.ID || (rec.State != store.StateRunning && rec.State != store.StatePaused) {
		return false, nil // another operation got there first
	}
	wasPaused, pausedSince := rec.State == store.StatePaused, rec.StateSince
	fail := func(err error) (bool, error) {
		if ctx.Err() != nil { // shutting down: the next start reconciles
			return false, err
		}
		rec.State, rec.LastError, rec.StateSince = store.StateError, "updating to the new configuration failed: "+readable(err), s.now()
		if perr := s.st.PutContainer(context.WithoutCancel(ctx), rec); perr != nil {
			s.log.Error("record update failure", "user", in.UserID, "err", perr)
		}
		return false, err
	}
	endpoint := rec.Endpoint
	if wasPaused {
		_ = s.drv.Unpause(ctx, rec.EngineID) // a paused process can neither hibernate nor handle SIGTERM
	} else {
		// Requests wait for the lifecycle lock (through a wake) instead of
		// reaching the container being replaced. A paused record needs no
		// change: a wake of it waits anyway.
		rec.State, rec.Endpoint, rec.StateSince = store.StateStopped, "", s.now()
		if err := s.st.PutContainer(ctx, rec); err != nil {
			return false, err
		}
	}
	s.prepareStop(ctx, in.UserID, endpoint) // hands the vault a resume key
	if err := s.drv.Stop(ctx, rec.EngineID, 10*time.Second); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fail(fmt.Errorf("stop: %w", err))
	}
	rec.Endpoint = ""
	if err := s.startOrRecreate(ctx, in.UserID, &rec, u); err != nil { // recreates, resumes the vault
		return fail(err)
	}
	rec.State, rec.LastError, rec.StateSince = store.StateRunning, "", s.now()
	if wasPaused {
		if err := s.drv.Pause(ctx, rec.EngineID); err != nil {
			s.log.Warn("container updated but not paused again; idle hibernation will pause it", "user", in.UserID, "err", err)
		} else {
			rec.State, rec.StateSince = store.StatePaused, pausedSince
		}
	}
	if err := s.st.PutContainer(ctx, rec); err != nil {
		return false, err
	}
	return true, nil
}

// currentConfig is the fingerprint a container of userID created now gets.
func (s *Server) currentConfig(ctx context.Context, userID string) (string, error) {
	image, err := s.prepare(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("prepare agent image: %w", err)
	}
	return s.drv.Fingerprint(s.spec(userID, image)), nil
}

// configChanged reports whether instance id was created from another
// configuration than the current one. An instance the engine does not know
// counts as unchanged (Start then recreates it), and so does one whose
// configuration cannot be checked (it is started as it is).
func (s *Server) configChanged(ctx context.Context, userID, id string) bool {
	in, err := s.drv.Inspect(ctx, id)
	if err != nil {
		return false
	}
	cur, err := s.currentConfig(ctx, userID)
	if err != nil {
		s.log.Warn("cannot check the container's configuration; starting it as it is", "user", userID, "err", err)
		return false
	}
	return in.Config != cur
}
