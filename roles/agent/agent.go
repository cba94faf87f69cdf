// Package agent is the agent role: it owns the lifecycle of every user's
// container (provision, start, pause, stop, wake, repair, remove) through a
// runtime.Driver, hibernates idle containers, and proxies HTTP and WebSocket
// traffic from the management role to a user's container, waking it first.
//
// *Server satisfies api.Agent, which the management role calls in-process
// in "all" mode; Routes exposes the same operations over HTTP, behind the
// per-deployment service secret, for split deployments.
package agent

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/metrics"
	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/store"
)

// Options configure a Server.
type Options struct {
	Driver          runtime.Driver
	Store           *store.Store
	Log             *slog.Logger
	Now             func() time.Time // nil = time.Now
	Version         string
	PublicURL       string // passed to containers as OCMT_PUBLIC_URL (for unlock links)
	Binary          string // process driver: executable to run
	DataDir         string // process driver: parent of per-user data dirs
	MemoryMiB       int64
	NanoCPUs        int64
	PidsLimit       int64
	IdlePauseAfter  time.Duration // 0 = never pause
	PausedStopAfter time.Duration // 0 = never stop
	WakeTimeout     time.Duration
	SweepInterval   time.Duration // how often hibernation runs; 0 = 15 s
	// AllowPrivateTargets is passed to vaults (OCMT_ALLOW_PRIVATE_TARGETS).
	AllowPrivateTargets config.PrivateTargets
	// HibernateUnlocked keeps a vault that is unlocked when its container
	// is stopped for hibernation unlocked after the next start, until its
	// own auto-lock time (see hibernate.go); false = a stop locks it.
	HibernateUnlocked bool
	// VaultAutoLock is passed to vaults (OCMT_VAULT_AUTO_LOCK); 0 = the
	// vault's default.
	VaultAutoLock time.Duration
	HealthTimeout time.Duration // how long a started container may take to answer /healthz; 0 = 30 s
	// PingInterval is how often the proxy pings both ends of a proxied
	// WebSocket; 0 = DefaultPingInterval.
	PingInterval time.Duration
	// PongTimeout is how long a pong may take; a peer that misses it is
	// closed (the browser) or checked with the engine (the container).
	// A write to either end may take twice as long. 0 = DefaultPongTimeout.
	PongTimeout time.Duration
	// Metrics, if set, receives wakes, hibernations and the containers by
	// state (ocmt_containers, read from the store at scrape time).
	Metrics *metrics.Registry
}

// LogTailLines is how many of a container's last output lines are logged
// when it fails to become healthy.
const LogTailLines = 20

// Server is the agent role.
type Server struct {
	opt       Options
	drv       runtime.Driver
	st        *store.Store
	log       *slog.Logger
	now       func() time.Time
	secretKey []byte
	http      *http.Client

	wakes  singleflight.Group
	mu     sync.Mutex
	users  map[string]*userState
	base   context.Context // lives as long as the server; provisioning runs under it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	imageMu sync.Mutex
	image   string

	relayURL atomic.Pointer[string] // OCMT_RELAY_URL for new containers; see SetRelayURL

	streams sync.Map // api.StreamHeader id → context.CancelCauseFunc of a proxied WebSocket (split mode; routes.go)

	collecting atomic.Bool // a round of collectAllCapCalls is under way (capcalls.go)
}

// SetRelayURL sets the relay URL that containers created from now on are
// given (OCMT_RELAY_URL). Call it before serving.
func (s *Server) SetRelayURL(u string) { s.relayURL.Store(&u) }

// userState is the in-memory state of one user's container.
type userState struct {
	op       sync.Mutex // serialises lifecycle operations
	progress atomic.Pointer[api.Progress]
	activity atomic.Int64 // unix ms of last activity not yet flushed (0 = none)
	inflight atomic.Int32 // proxied HTTP requests under way
	// resumeKey re-opens the vault after the next start (hibernate.go);
	// nil = none. Memory only; guarded by op.
	resumeKey *[32]byte
	// caps is the vault's capability-call counts as last read (capcalls.go).
	caps capTally
}

// secretKeyName is the kv key of the master key from which per-container
// secrets are derived.
const secretKeyName = "agent.container-secret-key"

// New makes the agent role and rebuilds its state from the engine.
func New(ctx context.Context, opt Options) (*Server, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.SweepInterval <= 0 {
		opt.SweepInterval = 15 * time.Second
	}
	if opt.HealthTimeout <= 0 {
		opt.HealthTimeout = 30 * time.Second
	}
	if opt.WakeTimeout <= 0 {
		opt.WakeTimeout = 60 * time.Second
	}
	if opt.PingInterval <= 0 {
		opt.PingInterval = DefaultPingInterval
	}
	if opt.PongTimeout <= 0 {
		opt.PongTimeout = DefaultPongTimeout
	}
	key, err := opt.Store.GetOrCreateKV(ctx, secretKeyName, func() []byte {
		b := make([]byte, 32)
		rand.Read(b)
		return b
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &Server{
		opt: opt, drv: opt.Driver, st: opt.Store, log: opt.Log, now: opt.Now, secretKey: key,
		http:  &http.Client{Timeout: 5 * time.Second},
		users: map[string]*userState{}, base: base, cancel: cancel,
	}
	if err := s.reconcile(ctx); err != nil {
		cancel()
		return nil, err
	}
	if opt.Metrics != nil {
		if err := opt.Metrics.ContainerStates(containerStates, s.countByState); err != nil {
			cancel()
			return nil, fmt.Errorf("agent: metrics: %w", err)
		}
	}
	return s, nil
}

// containerStates are the states ocmt_containers reports.
var containerStates = []string{store.StateProvisioning, store.StateRunning, store.StatePaused, store.StateStopped, store.StateError}

// countByState counts the container records by state (a scrape).
func (s *Server) countByState() (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := s.st.Containers(ctx)
	if err != nil {
		return nil, err
	}
	n := make(map[string]int, len(containerStates))
	for _, r := range recs {
		n[r.State]++
	}
	return n, nil
}

// Runtime is the driver's name ("docker" or "process").
func (s *Server) Runtime() string { return s.drv.Name() }

// Run runs the hibernation loop until ctx ends, then waits for background
// provisioning to finish and flushes activity.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.opt.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.cancel()
			s.wg.Wait()
			s.flushActivity(context.Background())
			return
		case <-t.C:
			s.Sweep(ctx)
		}
	}
}

func (s *Server) user(id string) *userState {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[id]
	if u == nil {
		u = &userState{}
		s.users[id] = u
	}
	return u
}

// ContainerSecret returns the per-container secret of a user's container:
// HMAC-SHA256(master key, "ocmt container secret v1\x00" ‖ userID), hex.
// The master key is random per deployment and kept in the agent role's
// database, so the secret survives restarts without being stored itself.
func (s *Server) ContainerSecret(userID string) string {
	m := hmac.New(sha256.New, s.secretKey)
	m.Write([]byte("ocmt container secret v1\x00"))
	m.Write([]byte(userID))
	return hex.EncodeToString(m.Sum(nil))
}

func containerName(userID string) string { return "ocmt-" + userID }

// reconcile rebuilds state from the engine: every record is matched with
// the engine's instance (by engine id, else by owner label) and its state
// and endpoint are refreshed; instances without a record get one.
func (s *Server) reconcile(ctx context.Context) error {
	insts, err := s.drv.List(ctx)
	if err != nil {
		return fmt.Errorf("agent: list %s instances: %w", s.drv.Name(), err)
	}
	byUser := map[string]runtime.Instance{}
	for _, in := range insts {
		byUser[in.UserID] = in
	}
	recs, err := s.st.Containers(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, rec := range recs {
		uid := string(rec.UserID)
		seen[uid] = true
		in, ok := byUser[uid]
		if rec.Runtime != s.drv.Name() {
			s.log.Warn("container record from another runtime; it will be recreated on wake", "user", uid, "runtime", rec.Runtime)
			ok = false
		}
		if !ok {
			rec.Runtime, rec.EngineID, rec.Endpoint = s.drv.Name(), "", ""
			if rec.State != store.StateError {
				rec.State = store.StateStopped
			}
		} else {
			rec.EngineID, rec.Endpoint, rec.Image = in.ID, in.Endpoint, in.Image
			rec.State = engineToState(in.State)
		}
		if rec.State == store.StateProvisioning {
			rec.State = store.StateStopped
		}
		if err := s.st.PutContainer(ctx, rec); err != nil {
			return err
		}
	}
	for uid, in := range byUser {
		if seen[uid] {
			continue
		}
		s.log.Info("adopting container found in the engine", "user", uid)
		if err := s.st.PutContainer(ctx, store.Container{
			UserID: store.UserID(uid), Runtime: s.drv.Name(), EngineID: in.ID, State: engineToState(in.State),
			Endpoint: in.Endpoint, Image: in.Image,
		}); err != nil {
			return err
		}
	}
	return nil
}

func engineToState(s string) string {
	switch s {
	case runtime.EngineRunning:
		return store.StateRunning
	case runtime.EnginePaused:
		return store.StatePaused
	default:
		return store.StateStopped
	}
}

// Status implements api.Agent.
func (s *Server) Status(ctx context.Context, userID string) (api.AgentStatus, error) {
	if !validUserID(userID) {
		return api.AgentStatus{}, api.InvalidUserID()
	}
	rec, err := s.st.ContainerByUser(ctx, store.UserID(userID))
	if errors.Is(err, store.ErrNotFound) {
		return api.AgentStatus{UserID: userID, State: api.StateNone, Runtime: s.drv.Name()}, nil
	}
	if err != nil {
		return api.AgentStatus{}, err
	}
	return s.status(rec), nil
}

func (s *Server) status(rec store.Container) api.AgentStatus {
	u := s.user(string(rec.UserID))
	st := api.AgentStatus{
		UserID: string(rec.UserID), State: rec.State, Runtime: rec.Runtime, Image: rec.Image,
		LastActivityAt: rec.LastActivityAt, StateSince: rec.StateSince, CreatedAt: rec.CreatedAt,
	}
	if a := u.activity.Load(); a > rec.LastActivityAt.UnixMilli() {
		st.LastActivityAt = time.UnixMilli(a)
	}
	if rec.State == store.StateProvisioning {
		st.Progress = u.progress.Load()
	}
	if rec.State == store.StateError {
		st.Error = rec.LastError
	}
	return st
}

// List implements api.Agent.
func (s *Server) List(ctx context.Context) ([]api.AgentStatus, error) {
	recs, err := s.st.Containers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.AgentStatus, 0, len(recs))
	for _, r := range recs {
		out = append(out, s.status(r))
	}
	return out, nil
}

// Provision implements api.Agent: it starts provisioning in the background
// for a user without a container (or one in error), and wakes an existing one.
func (s *Server) Provision(ctx context.Context, userID string) error {
	if !validUserID(userID) {
		return api.InvalidUserID()
	}
	rec, err := s.st.ContainerByUser(ctx, store.UserID(userID))
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && rec.State == store.StateError):
		return s.startProvision(ctx, userID, rec)
	case err != nil:
		return err
	case rec.State == store.StateProvisioning:
		return nil
	default:
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.base, s.opt.WakeTimeout)
			defer cancel()
			if _, err := s.WakeChecked(ctx, userID); err != nil {
				s.log.Warn("wake failed", "user", userID, "err", err)
			}
		}()
		return nil
	}
}

// WakeChecked is Wake after asking the engine how the container really is,
// for callers that have reason to doubt the record (the relay wakes a
// recipient because it is not connected; a user asks to start their
// agent): a container that vanished or died behind ocmt's back is noticed
// and recreated now, not at the next sweep. It costs one inspect, which
// Wake, on every proxied request, does not pay.
func (s *Server) WakeChecked(ctx context.Context, userID string) (store.Container, error) {
	s.refresh(ctx, userID)
	return s.Wake(ctx, userID)
}

func (s *Server) startProvision(ctx context.Context, userID string, old store.Container) error {
	u := s.user(userID)
	if !u.op.TryLock() {
		return nil // another operation (provisioning) is under way
	}
	now := s.now()
	rec := store.Container{UserID: store.UserID(userID), Runtime: s.drv.Name(), State: store.StateProvisioning,
		LastActivityAt: now, StateSince: now, CreatedAt: old.CreatedAt, EngineID: old.EngineID}
	if err := s.st.PutContainer(ctx, rec); err != nil {
		u.op.Unlock()
		return err
	}
	u.progress.Store(&api.Progress{Phase: api.PhaseImage, Message: "Getting ready…", Percent: 0})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer u.op.Unlock()
		start := time.Now()
		err := s.provision(s.base, userID, rec, u)
		if err != nil {
			s.log.Error("provision failed", "user", userID, "err", err)
			rec.State, rec.LastError, rec.StateSince = store.StateError, readable(err), s.now()
			if perr := s.st.PutContainer(context.Background(), rec); perr != nil {
				s.log.Error("record provision failure", "err", perr)
			}
			s.audit(userID, "agent.provision_failed", map[string]string{"runtime": s.drv.Name()})
			return
		}
		ms := time.Since(start).Milliseconds()
		s.log.Info("provisioned container", "user", userID, "runtime", s.drv.Name(), "ms", ms)
		s.audit(userID, "agent.provisioned", map[string]string{"runtime": s.drv.Name(), "ms": fmt.Sprint(ms)})
	}()
	return nil
}

// readable turns a provisioning error into a message fit for the owner.
func readable(err error) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Msg
	}
	return err.Error()
}

func (s *Server) progress(u *userState, phase, msg string, pct int) {
	u.progress.Store(&api.Progress{Phase: phase, Message: msg, Percent: pct})
}

// provision runs under u.op.
func (s *Server) provision(ctx context.Context, userID string, rec store.Container, u *userState) error {
	image, err := s.prepare(ctx, func(p api.Progress) { u.progress.Store(&p) })
	if err != nil {
		return fmt.Errorf("prepare agent image: %w", err)
	}
	if rec.EngineID != "" { // a failed earlier attempt may have left an instance
		_ = s.drv.Remove(ctx, rec.EngineID, true)
	}
	s.progress(u, api.PhaseCreate, "Setting up your private space…", 45)
	u.caps.started()
	in, err := s.drv.Create(ctx, s.spec(userID, image))
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	rec.EngineID, rec.Image = in.ID, image
	if err := s.st.PutContainer(ctx, rec); err != nil {
		return err
	}
	s.progress(u, api.PhaseStart, "Starting your agent…", 65)
	in, err = s.drv.Start(ctx, in.ID)
	if err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	s.progress(u, api.PhaseReady, "Waiting for your agent to say hello…", 85)
	if err := s.waitHealthy(ctx, userID, in.ID, in.Endpoint); err != nil {
		return err
	}
	rec.State, rec.Endpoint, rec.LastError, rec.StateSince = store.StateRunning, in.Endpoint, "", s.now()
	s.progress(u, api.PhaseDone, "Your agent is ready.", 100)
	return s.st.PutContainer(ctx, rec)
}

// prepare builds or finds the agent image once per process.
func (s *Server) prepare(ctx context.Context, progress func(api.Progress)) (string, error) {
	s.imageMu.Lock()
	defer s.imageMu.Unlock()
	if s.image != "" {
		return s.image, nil
	}
	img, err := s.drv.Prepare(ctx, progress)
	if err != nil {
		return "", err
	}
	s.image = img
	return img, nil
}

func (s *Server) spec(userID, image string) runtime.Spec {
	return runtime.Spec{
		UserID: userID, Name: containerName(userID), Secret: s.ContainerSecret(userID), Image: image,
		Binary: s.opt.Binary, DataDir: s.opt.DataDir, MemoryMiB: s.opt.MemoryMiB, NanoCPUs: s.opt.NanoCPUs,
		PidsLimit: s.opt.PidsLimit, Version: s.opt.Version,
		Env: s.containerEnv(userID),
	}
}

func (s *Server) containerEnv(userID string) map[string]string {
	env := map[string]string{"OCMT_PUBLIC_URL": s.opt.PublicURL, "OCMT_VAULT_USER": userID}
	if u := s.relayURL.Load(); u != nil && *u != "" {
		env["OCMT_RELAY_URL"] = *u
	}
	if s.opt.AllowPrivateTargets.Enabled() {
		env["OCMT_ALLOW_PRIVATE_TARGETS"] = s.opt.AllowPrivateTargets.String()
	}
	if s.opt.VaultAutoLock > 0 {
		env["OCMT_VAULT_AUTO_LOCK"] = s.opt.VaultAutoLock.String()
	}
	return env
}

// waitHealthy polls the vault role's /healthz with the container secret
// until it answers 200 or HealthTimeout passes, or the instance (engine
// id) exits. On failure it logs the container's last LogTailLines output
// lines: the cause (a vault that refused its settings, a crash) is there.
func (s *Server) waitHealthy(ctx context.Context, userID, id, endpoint string) error {
	err := s.pollHealthy(ctx, userID, id, endpoint)
	if err != nil {
		s.logTail(userID, id, err)
	}
	return err
}

func (s *Server) pollHealthy(ctx context.Context, userID, id, endpoint string) error {
	if endpoint == "" {
		return errors.New("container has no endpoint")
	}
	ctx, cancel := context.WithTimeout(ctx, s.opt.HealthTimeout)
	defer cancel()
	// Poll fast at first (a vault answers within tens of milliseconds of
	// starting), then back off to 100 ms.
	delay, fastUntil := 5*time.Millisecond, time.Now().Add(300*time.Millisecond)
	var lastInspect time.Time
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/healthz", nil)
		req.Header.Set(runtime.SecretHeader, s.ContainerSecret(userID))
		resp, err := s.http.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		} else if time.Since(lastInspect) >= 250*time.Millisecond {
			// Not answering: a container that exited never will.
			lastInspect = time.Now()
			if in, ierr := s.drv.Inspect(ctx, id); errors.Is(ierr, runtime.ErrNotFound) || ierr == nil && in.State == runtime.EngineStopped {
				return errors.New("agent exited before becoming healthy")
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent did not become healthy within %s", s.opt.HealthTimeout)
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond && time.Now().After(fastUntil) {
			delay *= 2
		}
	}
}

// logTail logs why a container failed to become healthy: cause, then its
// last LogTailLines output lines, one log record each ("container output").
func (s *Server) logTail(userID, id string, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lines, err := s.drv.Logs(ctx, id, LogTailLines)
	if err != nil {
		s.log.Error("container did not become healthy; its output could not be read", "user", userID, "err", cause, "logs_err", err)
		return
	}
	s.log.Error("container did not become healthy; its last output follows", "user", userID, "err", cause, "lines", len(lines))
	for _, l := range lines {
		s.log.Warn("container output", "user", userID, "line", l)
	}
}

// Wake makes sure the user's container is running and returns its record.
// Concurrent wakes of one container coalesce into one.
func (s *Server) Wake(ctx context.Context, userID string) (store.Container, error) {
	rec, err := s.st.ContainerByUser(ctx, store.UserID(userID))
	if errors.Is(err, store.ErrNotFound) {
		return rec, api.Conflict("agent_not_provisioned", "you have no agent yet; create it first")
	}
	if err != nil {
		return rec, err
	}
	if rec.State == store.StateRunning && rec.Endpoint != "" {
		return rec, nil
	}
	ch := s.wakes.DoChan(userID, func() (any, error) {
		// Not tied to one caller: the first caller's cancellation must not
		// fail the others. Bounded by the wake timeout.
		wctx, cancel := context.WithTimeout(s.base, s.opt.WakeTimeout)
		defer cancel()
		return s.wake(wctx, userID)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return store.Container{}, r.Err
		}
		return r.Val.(store.Container), nil
	case <-ctx.Done():
		return store.Container{}, api.E(http.StatusGatewayTimeout, "wake_timeout", "your agent is taking too long to wake; try again in a moment")
	}
}

func (s *Server) wake(ctx context.Context, userID string) (rec store.Container, err error) {
	u := s.user(userID)
	u.op.Lock()
	defer u.op.Unlock()
	rec, err = s.st.ContainerByUser(ctx, store.UserID(userID))
	if err != nil {
		return rec, err
	}
	from := rec.State
	start := time.Now()
	if from != store.StateProvisioning && (from != store.StateRunning || rec.Endpoint == "") {
		defer func() { s.opt.Metrics.Wake(from, time.Since(start), err) }()
	}
	recorded := false // the running record below is written already
	switch rec.State {
	case store.StateRunning:
		if rec.Endpoint != "" {
			return rec, nil
		}
		fallthrough
	case store.StateStopped, store.StateError:
		if err := s.startOrRecreate(ctx, userID, &rec, u); err != nil {
			return rec, err
		}
	case store.StatePaused:
		// A paused container answers the messages waiting in its sockets
		// the moment it resumes, so the record says running first: a
		// client that got its answer must not read "paused" afterwards.
		// A failed unpause puts the paused record back.
		paused := rec
		rec.State, rec.LastError, rec.StateSince, rec.LastActivityAt = store.StateRunning, "", s.now(), s.now()
		if err := s.st.PutContainer(ctx, rec); err != nil {
			return paused, err
		}
		recorded = true
		if err := s.drv.Unpause(ctx, rec.EngineID); err != nil {
			recorded = false
			rec = paused
			if perr := s.st.PutContainer(context.WithoutCancel(ctx), rec); perr != nil {
				s.log.Error("restore the paused record after a failed unpause", "user", userID, "err", perr)
			}
			// The record may be stale: ask the engine how it really is.
			in, ierr := s.drv.Inspect(ctx, rec.EngineID)
			switch {
			case ierr == nil && in.State == runtime.EngineRunning && in.Endpoint != "":
				rec.Endpoint = in.Endpoint // unpaused behind our back
			case errors.Is(err, runtime.ErrNotFound) || errors.Is(ierr, runtime.ErrNotFound) ||
				ierr == nil && in.State == runtime.EngineStopped:
				if err := s.startOrRecreate(ctx, userID, &rec, u); err != nil {
					return rec, err
				}
			default:
				return rec, fmt.Errorf("unpause: %w", err)
			}
		}
	case store.StateProvisioning:
		return rec, api.E(http.StatusServiceUnavailable, "agent_provisioning", "your agent is still being set up")
	}
	if !recorded {
		rec.State, rec.LastError, rec.StateSince, rec.LastActivityAt = store.StateRunning, "", s.now(), s.now()
		if err := s.st.PutContainer(ctx, rec); err != nil {
			return rec, err
		}
	}
	s.log.Info("woke container", "user", userID, "from", from, "ms", time.Since(start).Milliseconds())
	s.audit(userID, "agent.wake", map[string]string{"from": from})
	return rec, nil
}

// startOrRecreate starts a stopped instance, recreating it (keeping data)
// if the engine lost it or its configuration changed (configchange.go),
// then hands the vault its resume key, if any. It runs under u.op.
func (s *Server) startOrRecreate(ctx context.Context, userID string, rec *store.Container, u *userState) error {
	var in runtime.Instance
	var err error
	if rec.EngineID != "" && s.configChanged(ctx, userID, rec.EngineID) {
		s.log.Info("configuration changed; recreating the container, keeping its data", "user", userID)
		if err := s.drv.Remove(ctx, rec.EngineID, true); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return fmt.Errorf("remove outdated container: %w", err)
		}
		rec.EngineID = ""
		s.audit(userID, "agent.reconfigured", nil)
	}
	u.caps.started()
	if rec.EngineID != "" {
		in, err = s.drv.Start(ctx, rec.EngineID)
	}
	if rec.EngineID == "" || errors.Is(err, runtime.ErrNotFound) {
		image, perr := s.prepare(ctx, nil)
		if perr != nil {
			return fmt.Errorf("prepare agent image: %w", perr)
		}
		in, err = s.drv.Create(ctx, s.spec(userID, image))
		if err != nil {
			return fmt.Errorf("recreate container: %w", err)
		}
		rec.EngineID, rec.Image = in.ID, image
		in, err = s.drv.Start(ctx, in.ID)
	}
	if err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	rec.Endpoint = in.Endpoint
	if err := s.waitHealthy(ctx, userID, in.ID, in.Endpoint); err != nil {
		return err
	}
	s.resumeVault(ctx, userID, u, in.Endpoint)
	return nil
}

// Do implements api.Agent.
func (s *Server) Do(ctx context.Context, userID, action string) error {
	if !validUserID(userID) {
		return api.InvalidUserID()
	}
	switch action {
	case api.ActionWake:
		_, err := s.Wake(ctx, userID)
		return err
	case api.ActionPause, api.ActionStop, api.ActionRepair, api.ActionRemove:
	default:
		return api.BadRequest("invalid_action", "unknown action; accepted: pause, stop, wake, repair, remove")
	}
	u := s.user(userID)
	u.op.Lock()
	defer u.op.Unlock()
	rec, err := s.st.ContainerByUser(ctx, store.UserID(userID))
	if errors.Is(err, store.ErrNotFound) {
		return api.NotFound("no container for this user")
	}
	if err != nil {
		return err
	}
	if rec.State == store.StateProvisioning {
		return api.Conflict("agent_provisioning", "the container is still being set up")
	}
	switch action {
	case api.ActionPause:
		err = s.pauseLocked(ctx, &rec)
	case api.ActionStop:
		err = s.stopLocked(ctx, &rec)
	case api.ActionRepair:
		err = s.repairLocked(ctx, &rec, u)
	case api.ActionRemove:
		forgetResumeKey(u)
		if rec.State == store.StateRunning {
			s.collectCapCalls(ctx, userID, rec.Endpoint)
		}
		if rec.EngineID != "" {
			if err = s.drv.Remove(ctx, rec.EngineID, false); errors.Is(err, runtime.ErrNotFound) {
				err = nil
			}
		}
		if err == nil {
			err = s.st.DeleteContainer(ctx, rec.UserID)
			u.caps.forget()
		}
	}
	if err != nil {
		return err
	}
	s.audit(userID, "agent."+action, nil)
	return nil
}

func (s *Server) pauseLocked(ctx context.Context, rec *store.Container) error {
	if rec.State != store.StateRunning {
		return api.Conflict("not_running", "only a running container can be paused")
	}
	s.collectCapCalls(ctx, string(rec.UserID), rec.Endpoint) // a paused vault cannot be read
	if err := s.drv.Pause(ctx, rec.EngineID); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	rec.State, rec.StateSince = store.StatePaused, s.now()
	return s.st.PutContainer(ctx, *rec)
}

func (s *Server) stopLocked(ctx context.Context, rec *store.Container) error {
	if rec.State == store.StateStopped {
		return nil
	}
	if rec.EngineID != "" {
		if rec.State == store.StateRunning {
			s.collectCapCalls(ctx, string(rec.UserID), rec.Endpoint) // its counts end with it
		}
		if rec.State == store.StatePaused {
			_ = s.drv.Unpause(ctx, rec.EngineID) // a paused process cannot handle SIGTERM
		}
		s.prepareStop(ctx, string(rec.UserID), rec.Endpoint)
		if err := s.drv.Stop(ctx, rec.EngineID, 10*time.Second); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return fmt.Errorf("stop: %w", err)
		}
	}
	rec.State, rec.Endpoint, rec.StateSince = store.StateStopped, "", s.now()
	return s.st.PutContainer(ctx, *rec)
}

// repairLocked recreates the container from the current image, keeping the
// user's data, and starts it.
func (s *Server) repairLocked(ctx context.Context, rec *store.Container, u *userState) error {
	if rec.EngineID != "" {
		if rec.State == store.StatePaused {
			_ = s.drv.Unpause(ctx, rec.EngineID)
		}
		if rec.State == store.StateRunning {
			s.collectCapCalls(ctx, string(rec.UserID), rec.Endpoint) // its counts end with it
		}
		if rec.State == store.StateRunning || rec.State == store.StatePaused {
			// An unlocked vault that still answers stays unlocked across
			// the recreation (hibernate.go); a broken one simply does not.
			s.prepareStop(ctx, string(rec.UserID), rec.Endpoint)
		}
		if err := s.drv.Remove(ctx, rec.EngineID, true); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return fmt.Errorf("repair: remove: %w", err)
		}
	}
	rec.EngineID, rec.Endpoint = "", ""
	if err := s.startOrRecreate(ctx, string(rec.UserID), rec, u); err != nil {
		rec.State, rec.LastError = store.StateError, readable(err)
		_ = s.st.PutContainer(ctx, *rec)
		return err
	}
	rec.State, rec.LastError, rec.StateSince = store.StateRunning, "", s.now()
	return s.st.PutContainer(ctx, *rec)
}

func (s *Server) audit(userID, action string, detail map[string]string) {
	if _, err := s.st.Audit(context.Background(), "system", action, userID, detail); err != nil {
		s.log.Error("audit", "action", action, "err", err)
	}
}

// Close stops background work (it does not stop containers) and closes the driver.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	s.flushActivity(context.Background())
	return s.drv.Close()
}

// validUserID reports whether id has the shape of a user id
// (store.ParseUserID). It keeps ids safe in container names and paths.
func validUserID(id string) bool {
	_, err := store.ParseUserID(id)
	return err == nil
}
