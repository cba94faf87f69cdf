package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/metrics"
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
// way, or whose vault reports work in flight (workInFlight), is not paused.
// Open but idle WebSockets and polling (pollRequest) do not count as
// activity. Then it starts reading the capability-call counts of every
// running vault, in the background (capcalls.go).
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
	s.collectAllCapCalls()
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
	if want == store.StateRunning && s.workInFlight(ctx, uid, rec.Endpoint) {
		s.Touch(uid) // work is activity: the idle time starts again when it ends
		return
	}
	if err := f(ctx, &rec); err != nil {
		s.log.Error("hibernate", "user", uid, "action", action, "err", err)
		return
	}
	s.log.Info("hibernated container", "user", uid, "state", rec.State)
	if want == store.StateRunning {
		s.opt.Metrics.Hibernated(metrics.HibernatePause)
	} else {
		s.opt.Metrics.Hibernated(metrics.HibernateStop)
	}
	s.audit(uid, action, nil)
}

// workInFlight asks the vault (GET /internal/work, api.VaultWork) whether
// real work is under way that started less than api.MaxWorkHold ago: a
// chat run or a capability call executed for a peer. Such work holds the
// container awake even with no browser watching; a run stuck for longer
// than the ceiling does not. A vault that does not answer (an operator's
// own image, a hung process) holds nothing.
func (s *Server) workInFlight(ctx context.Context, userID, endpoint string) bool {
	if endpoint == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, hibernateCallTimeout)
	defer cancel()
	var w api.VaultWork
	if s.getVault(ctx, userID, endpoint, "/internal/work", &w) != nil {
		return false
	}
	if w.InFlight > 0 && time.Duration(w.YoungestMs)*time.Millisecond < api.MaxWorkHold {
		s.log.Info("idle container not paused: work in flight", "user", userID, "inFlight", w.InFlight)
		return true
	}
	return false
}

// vaultStats reads the vault's counters (GET api.VaultStatsPath) within
// statsCallTimeout.
func (s *Server) vaultStats(ctx context.Context, userID, endpoint string) (api.VaultStats, error) {
	ctx, cancel := context.WithTimeout(ctx, statsCallTimeout)
	defer cancel()
	var st api.VaultStats
	err := s.getVault(ctx, userID, endpoint, api.VaultStatsPath, &st)
	return st, err
}

// getVault GETs one of the vault's /internal endpoints with the container
// secret in both headers and decodes its JSON answer (at most 16 KiB) into
// out.
func (s *Server) getVault(ctx context.Context, userID, endpoint, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+path, nil)
	if err != nil {
		return err
	}
	secret := s.ContainerSecret(userID)
	req.Header.Set(runtime.SecretHeader, secret)
	req.Header.Set(api.LifecycleHeader, secret)
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vault answered %d", resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<10)).Decode(out)
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
// wake recreates it, keeping its data), an exited one stopped, one paused
// or unpaused by someone else paused or running. It reports whether it
// changed the record.
func (s *Server) refresh(ctx context.Context, userID string) bool {
	u := s.user(userID)
	if !u.op.TryLock() {
		return false // a lifecycle operation is under way; it knows better
	}
	defer u.op.Unlock()
	rec, err := s.st.ContainerByUser(ctx, store.UserID(userID))
	if err != nil || rec.EngineID == "" || rec.State == store.StateProvisioning {
		return false
	}
	in, err := s.drv.Inspect(ctx, rec.EngineID)
	state, endpoint, engineID := "", "", rec.EngineID
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		state, engineID = store.StateStopped, ""
	case err != nil:
		return false
	default:
		state, endpoint = engineToState(in.State), in.Endpoint
	}
	if state == rec.State && endpoint == rec.Endpoint && engineID == rec.EngineID {
		return false
	}
	s.log.Warn("container changed outside ocmt", "user", userID, "was", rec.State, "now", state, "gone", engineID == "")
	rec.State, rec.Endpoint, rec.EngineID, rec.StateSince = state, endpoint, engineID, s.now()
	if err := s.st.PutContainer(ctx, rec); err != nil {
		s.log.Error("refresh container record", "err", err)
		return false
	}
	s.audit(userID, "agent.changed_outside", map[string]string{"state": state})
	return true
}

// Keeping a vault unlocked across a stop (Options.HibernateUnlocked; the
// vault side is roles/vault/hibernate.go). Before a stop the agent role
// gives the vault a fresh random key, under which the vault wraps its DEK
// into a file on its volume, bound to its auto-lock deadline; the key stays
// in this process's memory only and goes back to the vault right after the
// next start. A restart of this process forgets every key, and those
// vaults stay locked.

// hibernateCallTimeout bounds each lifecycle call to a vault.
const hibernateCallTimeout = 5 * time.Second

// statsCallTimeout bounds a read of a vault's counters (metrics only: a
// vault that does not answer at once is skipped).
const statsCallTimeout = 2 * time.Second

// lifecycleResp is the vault's answer to /internal/hibernate and /resume.
type lifecycleResp struct {
	Unlocked bool   `json:"unlocked"`
	Reason   string `json:"reason"`
}

// prepareStop asks the vault to keep its unlocked state across the coming
// stop. Any failure just means the vault will be locked after the start.
// Runs under the user's op lock.
func (s *Server) prepareStop(ctx context.Context, userID, endpoint string) {
	u := s.user(userID)
	forgetResumeKey(u)
	if !s.opt.HibernateUnlocked || endpoint == "" {
		return
	}
	key := new([32]byte)
	rand.Read(key[:])
	res, err := s.lifecycleCall(ctx, userID, endpoint, "/internal/hibernate", key)
	switch {
	case err != nil:
		s.log.Warn("vault not prepared for hibernation; it will start locked", "user", userID, "err", err)
		clear(key[:])
	case !res.Unlocked:
		clear(key[:]) // locked or not initialized: nothing to keep
	default:
		u.resumeKey = key
	}
}

// resumeVault hands the key from prepareStop back after a start. Runs under
// the user's op lock.
func (s *Server) resumeVault(ctx context.Context, userID string, u *userState, endpoint string) {
	key := u.resumeKey
	if key == nil {
		return
	}
	defer forgetResumeKey(u)
	res, err := s.lifecycleCall(ctx, userID, endpoint, "/internal/resume", key)
	switch {
	case err != nil:
		s.log.Warn("vault not resumed after hibernation; it stays locked", "user", userID, "err", err)
	case !res.Unlocked:
		s.log.Info("vault stays locked after hibernation", "user", userID, "reason", res.Reason)
	default:
		s.log.Info("vault resumed unlocked after hibernation", "user", userID)
	}
}

func forgetResumeKey(u *userState) {
	if u.resumeKey != nil {
		clear(u.resumeKey[:])
		u.resumeKey = nil
	}
}

// lifecycleCall POSTs {"key"} to one of the vault's /internal endpoints with
// the container secret in both headers.
func (s *Server) lifecycleCall(ctx context.Context, userID, endpoint, path string, key *[32]byte) (lifecycleResp, error) {
	var res lifecycleResp
	body, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString(key[:])})
	defer clear(body)
	ctx, cancel := context.WithTimeout(ctx, hibernateCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+path, bytes.NewReader(body))
	if err != nil {
		return res, err
	}
	secret := s.ContainerSecret(userID)
	req.Header.Set(runtime.SecretHeader, secret)
	req.Header.Set(api.LifecycleHeader, secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("vault answered %d", resp.StatusCode)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&res)
	return res, err
}
