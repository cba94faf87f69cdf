package capability

import (
	"sync"
	"time"
)

// Limiter is an in-memory [Counter]: per jti, a count of calls for
// max_calls and a GCRA (generic cell rate algorithm, i.e. a token bucket)
// state for the rate. A rate "N/u" allows a burst of N calls and then one
// call every ⌈u/N⌉: N calls per u on average, at most N at once, and at
// most 2N−1 in any window of length u (a full burst plus the refill).
// Counts are lost on restart (the vault persists them separately). The
// zero Limiter is ready to use; it is safe for concurrent use. Entries
// stay until [Limiter.Forget].
type Limiter struct {
	mu sync.Mutex
	m  map[JTI]*usage // guarded by mu
}

type usage struct {
	calls int
	tat   int64 // GCRA theoretical arrival time, unix nanoseconds
}

// Use implements [Counter].
func (l *Limiter) Use(jti JTI, maxCalls int, rate Rate, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.m[jti]
	if u == nil {
		if l.m == nil {
			l.m = make(map[JTI]*usage)
		}
		u = &usage{}
		l.m[jti] = u
	}
	if maxCalls > 0 && u.calls >= maxCalls {
		return ErrBudgetExhausted
	}
	if !rate.IsZero() {
		if rate.validate() != nil {
			return ErrCheckConfig.with("invalid rate")
		}
		// Emission interval T = ⌈Per/N⌉; a call is allowed if the new
		// theoretical arrival time is at most N·T ahead of now, so a burst
		// holds exactly N calls.
		n := int64(rate.Calls)
		t := (int64(rate.Per) + n - 1) / n
		nowNs := now.UnixNano()
		tat := max(u.tat, nowNs) + t
		if tat-nowNs > n*t {
			return ErrRateLimited
		}
		u.tat = tat
	}
	u.calls++
	return nil
}

// Calls returns the number of calls recorded for jti.
func (l *Limiter) Calls(jti JTI) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u := l.m[jti]; u != nil {
		return u.calls
	}
	return 0
}

// Forget drops the state of jti (after it expired or was revoked).
func (l *Limiter) Forget(jti JTI) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, jti)
}
