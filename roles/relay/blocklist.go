package relay

import (
	"context"
	"fmt"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"

	"github.com/ocmt/ocmt/store"
)

// Bloom filter sizing of the revocation blocklist.
const (
	// bloomMinCapacity is the smallest number of entries the filter is
	// sized for.
	bloomMinCapacity = 100_000
	// bloomFalsePositive is the target false-positive rate at capacity.
	bloomFalsePositive = 1e-6
)

// blocklist is the in-memory front of the revocation table (SPEC §7.2): a
// Bloom filter of every revoked jti, so a non-revoked jti (the common case)
// is cleared without touching the database. It has no false negatives:
// every jti is added to the filter after it is committed to the store, and
// a rebuild (when the filter outgrows its capacity) replays the additions
// it raced with. A positive answer is confirmed by store.Revocations
// (see Server.revocationFor).
type blocklist struct {
	mu         sync.RWMutex
	f          *bloom.BloomFilter // guarded by mu
	n          uint               // entries added; guarded by mu
	capacity   uint               // entries the filter is sized for; guarded by mu
	rebuilding bool               // guarded by mu
	pending    []string           // added during a rebuild; guarded by mu
}

// loadBlocklist builds the filter from every revocation in st, sized for
// at least twice their number.
func loadBlocklist(ctx context.Context, st *store.Store) (*blocklist, error) {
	var n uint
	if err := st.AllRevokedJTIs(ctx, func(string) error { n++; return nil }); err != nil {
		return nil, fmt.Errorf("relay: load revocations: %w", err)
	}
	capacity := max(bloomMinCapacity, 2*n)
	f, count, err := buildFilter(ctx, st, capacity)
	if err != nil {
		return nil, err
	}
	return &blocklist{f: f, n: count, capacity: capacity}, nil
}

// buildFilter returns a filter for capacity entries holding every jti in st.
func buildFilter(ctx context.Context, st *store.Store, capacity uint) (*bloom.BloomFilter, uint, error) {
	f := bloom.NewWithEstimates(capacity, bloomFalsePositive)
	var n uint
	err := st.AllRevokedJTIs(ctx, func(jti string) error {
		f.AddString(jti)
		n++
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("relay: load revocations: %w", err)
	}
	return f, n, nil
}

// mayContain reports whether jti may be revoked (false: certainly not).
func (b *blocklist) mayContain(jti string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.f.TestString(jti)
}

// add records a revocation that is already committed to the store. It
// reports whether the filter is over its sizing and should be rebuilt.
func (b *blocklist) add(jti string) (grow bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.f.AddString(jti)
	b.n++
	if b.rebuilding {
		b.pending = append(b.pending, jti)
		return false
	}
	if b.n > b.capacity {
		b.rebuilding = true
		return true
	}
	return false
}

// rebuild replaces the filter with one sized for twice the current count,
// built from the store; jtis added meanwhile are replayed into it.
func (b *blocklist) rebuild(ctx context.Context, st *store.Store) error {
	b.mu.RLock()
	target := 2 * b.n
	b.mu.RUnlock()
	f, n, err := buildFilter(ctx, st, target)
	b.mu.Lock()
	defer b.mu.Unlock()
	pending := b.pending
	b.rebuilding, b.pending = false, nil
	if err != nil {
		b.capacity = b.n + bloomMinCapacity // retry after more additions
		return err
	}
	for _, jti := range pending {
		f.AddString(jti)
	}
	b.f, b.n, b.capacity = f, n+uint(len(pending)), target
	return nil
}
