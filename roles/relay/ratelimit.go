package relay

import (
	"sync"
	"time"
)

// rateLimiter is a token bucket per sender: capacity perHour tokens,
// refilled at perHour per hour. Buckets that have refilled completely are
// forgotten by prune.
type rateLimiter struct {
	perHour float64
	mu      sync.Mutex
	buckets map[string]*bucket // guarded by mu
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(perHour int) *rateLimiter {
	return &rateLimiter{perHour: float64(perHour), buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket at now. When none is left it
// returns false and how long until one is.
func (l *rateLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.perHour, last: now}
		l.buckets[key] = b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.perHour, b.tokens+d.Hours()*l.perHour)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.perHour * float64(time.Hour))
	return false, max(wait, time.Millisecond)
}

// prune forgets buckets that would be full at now.
func (l *rateLimiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Hours()*l.perHour >= l.perHour {
			delete(l.buckets, k)
		}
	}
}
