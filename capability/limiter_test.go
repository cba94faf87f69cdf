package capability_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocmt/ocmt/capability"
)

func TestLimiterBudget(t *testing.T) {
	var l capability.Limiter
	j := capability.JTI{1}
	for i := range 3 {
		wantOnly(t, l.Use(j, 3, capability.Rate{}, t0.Add(time.Duration(i)*time.Hour)), nil)
	}
	wantOnly(t, l.Use(j, 3, capability.Rate{}, t0.Add(time.Hour)), capability.ErrBudgetExhausted)
	if n := l.Calls(j); n != 3 {
		t.Fatalf("Calls = %d", n)
	}
	// Budgets are per jti.
	wantOnly(t, l.Use(capability.JTI{2}, 3, capability.Rate{}, t0), nil)
	l.Forget(j)
	if n := l.Calls(j); n != 0 {
		t.Fatalf("Calls after Forget = %d", n)
	}
}

func TestLimiterRate(t *testing.T) {
	var l capability.Limiter
	j := capability.JTI{1}
	r := capability.Rate{Calls: 3, Per: time.Second}
	for range 3 { // a burst of N is allowed
		wantOnly(t, l.Use(j, 0, r, t0), nil)
	}
	wantOnly(t, l.Use(j, 0, r, t0), capability.ErrRateLimited)
	// One more call becomes possible every ⌈1s/3⌉.
	wantOnly(t, l.Use(j, 0, r, t0.Add(333*time.Millisecond)), capability.ErrRateLimited)
	wantOnly(t, l.Use(j, 0, r, t0.Add(333333334*time.Nanosecond)), nil)
	wantOnly(t, l.Use(j, 0, r, t0.Add(400*time.Millisecond)), capability.ErrRateLimited)
	// After a full idle period the whole burst is back, and no more.
	later := t0.Add(time.Hour)
	for range 3 {
		wantOnly(t, l.Use(j, 0, r, later), nil)
	}
	wantOnly(t, l.Use(j, 0, r, later), capability.ErrRateLimited)
	if n := l.Calls(j); n != 7 {
		t.Fatalf("Calls = %d, want 7 (refused calls are not counted)", n)
	}
	// Budget is checked before rate, and a rate refusal spends no budget.
	wantOnly(t, l.Use(j, 7, r, later), capability.ErrBudgetExhausted)
	wantOnly(t, l.Use(j, 8, r, later), capability.ErrRateLimited)
	wantOnly(t, l.Use(j, 8, r, later.Add(time.Second)), nil)
}

// TestLimiterRateLongRun: over a long time, a rate N/u admits N per u (the
// burst aside), including for large N where ⌊u/N⌋ would round down.
func TestLimiterRateLongRun(t *testing.T) {
	for _, r := range []capability.Rate{{60, time.Hour}, {7, time.Second}, {99_991, time.Second}} {
		var l capability.Limiter
		j := capability.JTI{9}
		ok := 0
		step := r.Per / time.Duration(r.Calls) / 4
		if step == 0 {
			step = 1
		}
		for now := t0; now.Before(t0.Add(r.Per * 4)); now = now.Add(step) {
			if l.Use(j, 0, r, now) == nil {
				ok++
			}
		}
		if max := r.Calls * 5; ok > max || ok < r.Calls*4 {
			t.Errorf("%v: %d calls in 4 periods, want %d..%d", r, ok, r.Calls*4, max)
		}
		// A burst is exactly N.
		var b capability.Limiter
		n := 0
		for b.Use(j, 0, r, t0) == nil {
			n++
		}
		if n != r.Calls {
			t.Errorf("%v: burst of %d", r, n)
		}
	}
}

func TestLimiterConcurrent(t *testing.T) {
	var l capability.Limiter
	j := capability.JTI{1}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 10 {
				if l.Use(j, 100, capability.Rate{Calls: 1000, Per: time.Minute}, t0) == nil {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 100 {
		t.Fatalf("%d calls allowed, want 100", ok.Load())
	}
}
