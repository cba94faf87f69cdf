package agent_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent"
	"github.com/ocmt/ocmt/roles/agent/process"
	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/xtest"
)

// resumeWatch is a driver that reports every successful Unpause to
// resumed, right after the engine resumed the container: the moment its
// vault starts answering the messages that waited in its sockets. With
// failUnpause set, Unpause fails without touching the engine.
type resumeWatch struct {
	runtime.Driver
	mu          sync.Mutex
	resumed     func()
	failUnpause bool
}

func (d *resumeWatch) Unpause(ctx context.Context, id string) error {
	d.mu.Lock()
	fail, resumed := d.failUnpause, d.resumed
	d.mu.Unlock()
	if fail {
		return errors.New("unpause refused by the test")
	}
	if err := d.Driver.Unpause(ctx, id); err != nil {
		return err
	}
	if resumed != nil {
		resumed()
	}
	return nil
}

// TestWakeRecordsRunningBeforeResume: a paused container answers the
// messages waiting in its sockets the moment the engine resumes it, so by
// then its record must already say running; otherwise a client that got
// its answer reads "paused" afterwards (the TestPausedUpstreamProcess
// flake under load). Checked for a container paused by ocmt, one paused
// behind its back (noticed by WakeChecked's engine check), and an unpause
// that fails, which must leave the record paused.
func TestWakeRecordsRunningBeforeResume(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(&xtest.Buffer{}, nil))
	inner := process.New(log)
	drv := &resumeWatch{Driver: inner}
	s, err := agent.New(ctx, agent.Options{Driver: drv, Store: st, Log: log, Version: "test", Binary: xtest.Binary(t),
		DataDir: filepath.Join(dir, "users"), PublicURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	const uid = "usr_wakeorderaaaaaaaaaaaaaaaaa"
	state := func() string {
		t.Helper()
		as, err := s.Status(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		return as.State
	}
	if err := s.Provision(ctx, uid); err != nil {
		t.Fatal(err)
	}
	xtest.Eventually(t, time.Minute, func() error {
		if got := state(); got != api.StateRunning {
			return errString("state " + got)
		}
		return nil
	})
	var atResume []string
	drv.mu.Lock()
	drv.resumed = func() { atResume = append(atResume, state()) }
	drv.mu.Unlock()
	wake := func(what string, do func() error) {
		t.Helper()
		atResume = nil
		if err := do(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(atResume) != 1 || atResume[0] != api.StateRunning {
			t.Fatalf("%s: record at the moment the engine resumed the container: %v, want [running]", what, atResume)
		}
		if got := state(); got != api.StateRunning {
			t.Fatalf("%s: state %s after the wake", what, got)
		}
	}

	// Paused by ocmt.
	if err := s.Do(ctx, uid, api.ActionPause); err != nil {
		t.Fatal(err)
	}
	wake("wake of a container paused by ocmt", func() error { return s.Do(ctx, uid, api.ActionWake) })

	// Paused behind ocmt's back: the engine check records it paused first.
	rec, err := st.ContainerByUser(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	if err := inner.Pause(ctx, rec.EngineID); err != nil {
		t.Fatal(err)
	}
	wake("wake of a container paused behind ocmt's back", func() error {
		_, err := s.WakeChecked(ctx, uid)
		return err
	})

	// An unpause that fails leaves the record as it was.
	if err := s.Do(ctx, uid, api.ActionPause); err != nil {
		t.Fatal(err)
	}
	drv.mu.Lock()
	drv.failUnpause = true
	drv.mu.Unlock()
	if err := s.Do(ctx, uid, api.ActionWake); err == nil {
		t.Fatal("wake succeeded although the unpause failed")
	}
	if got := state(); got != api.StatePaused {
		t.Fatalf("state %s after a failed unpause, want paused", got)
	}
	drv.mu.Lock()
	drv.failUnpause = false
	drv.mu.Unlock()
	wake("wake after a failed one", func() error { return s.Do(ctx, uid, api.ActionWake) })
}
