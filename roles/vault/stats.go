package vault

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/metrics"
)

// Counters the agent role reads (GET /internal/stats, api.VaultStats): a
// vault is not scraped by Prometheus itself; the agent role asks every
// running vault on its sweep and before a pause or stop, and adds what
// changed to its own ocmt_capability_calls_total. The counts are kept
// whether or not this vault has a metrics registry of its own.

// capCounts counts capability calls by result label since this process
// started. The zero value is ready.
type capCounts struct {
	mu sync.Mutex
	n  map[string]uint64 // guarded by mu
}

func (c *capCounts) add(result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]uint64{}
	}
	c.n[result]++
}

func (c *capCounts) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		return map[string]uint64{}
	}
	return maps.Clone(c.n)
}

// newInstanceID returns 16 random bytes, hex: api.VaultStats.Instance.
func newInstanceID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// capabilityCall records one capability call answered with result (see
// metrics.Registry.CapabilityCall) in the vault's registry, if any, and in
// the counts the agent role reads.
func (s *Server) capabilityCall(result string) {
	s.metrics.CapabilityCall(result)
	s.capCalls.add(metrics.CapabilityResult(result))
}

// stats answers GET /internal/stats with api.VaultStats.
func (s *Server) stats(c echo.Context) error {
	return c.JSON(http.StatusOK, api.VaultStats{Instance: s.instance, CapabilityCalls: s.capCalls.snapshot()})
}
