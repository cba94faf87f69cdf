package agent

import (
	"context"
	"maps"
	"sync"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/store"
)

// Capability calls by result (ocmt_capability_calls_total). Each vault
// counts the calls it answers since its process started and tells the
// agent role (GET api.VaultStatsPath, vaultStats); Prometheus scrapes only
// the agent role. The agent role reads every running vault after each
// sweep's hibernation decisions (in the background: it never holds up a
// wake, a pause decision or a request) and right before it pauses, stops,
// repairs or removes a running container, and adds what grew since its
// last read to its own counter. A paused container cannot answer and is
// not asked (nothing is woken for metrics); a read that fails is logged
// at debug and skipped: the next one catches up, since the vault's counts
// are cumulative. Labels carry the result only, never a user.

// capTally is what the agent role last read of one user's vault. The zero
// value knows nothing yet.
type capTally struct {
	mu       sync.Mutex
	instance string            // api.VaultStats.Instance of the last read; "" = none
	seen     map[string]uint64 // its counts at the last read
	// fresh: the agent role has (re)started this container since, so a
	// vault process seen for the first time counted every call since
	// its start here.
	fresh bool
}

// started records that the agent role is starting (or creating) the
// container: its next vault process counts from 0.
func (t *capTally) started() {
	t.mu.Lock()
	t.fresh = true
	t.mu.Unlock()
}

// forget drops what was read: the container is removed.
func (t *capTally) forget() {
	t.mu.Lock()
	t.instance, t.seen, t.fresh = "", nil, false
	t.mu.Unlock()
}

// update takes one read and returns the calls to add, by result:
//   - the same vault process as last time: each count's growth since the
//     last read. A count lower than last read's is a read answered before
//     the last one (reads may overlap): nothing is added and the higher
//     count is kept.
//   - another process (the vault restarted: a start, a recreation, a
//     crash) after a known one, or the first one after a start by this
//     agent role: every count (they started from 0).
//   - the first process seen of a container running before this agent
//     role started: nothing, only a baseline; an earlier agent role
//     process may have counted those calls already.
//
// A read without an instance is ignored.
func (t *capTally) update(st api.VaultStats) map[string]uint64 {
	if st.Instance == "" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if st.Instance != t.instance {
		var add map[string]uint64
		if t.instance != "" || t.fresh {
			add = maps.Clone(st.CapabilityCalls)
		}
		t.instance, t.seen, t.fresh = st.Instance, map[string]uint64{}, false
		maps.Copy(t.seen, st.CapabilityCalls)
		return add
	}
	add := map[string]uint64{}
	for res, n := range st.CapabilityCalls {
		if last := t.seen[res]; n > last {
			add[res] = n - last
			t.seen[res] = n
		}
	}
	return add
}

// collectCapCalls reads one vault's counters and adds what grew to the
// agent role's metrics. Without metrics it does nothing.
func (s *Server) collectCapCalls(ctx context.Context, userID, endpoint string) {
	if s.opt.Metrics == nil || endpoint == "" {
		return
	}
	st, err := s.vaultStats(ctx, userID, endpoint)
	if err != nil {
		s.log.Debug("capability call counts not read", "user", userID, "err", err)
		return
	}
	for res, n := range s.user(userID).caps.update(st) {
		s.opt.Metrics.AddCapabilityCalls(res, n)
	}
}

// collectAllCapCalls reads every running vault's counters in the
// background, unless the previous round is still under way.
func (s *Server) collectAllCapCalls() {
	if s.opt.Metrics == nil || !s.collecting.CompareAndSwap(false, true) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.collecting.Store(false)
		recs, err := s.st.Containers(s.base)
		if err != nil {
			return
		}
		for _, rec := range recs {
			if rec.State == store.StateRunning {
				s.collectCapCalls(s.base, string(rec.UserID), rec.Endpoint)
			}
		}
	}()
}
