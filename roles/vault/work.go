package vault

import (
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
)

// Work in flight (SPEC §4: activity means real work). The agent role's
// hibernation sweep asks GET /internal/work before it pauses an idle
// container, so that a chat run (model calls and tool calls included) or
// a capability call being executed for a peer (a shared model key too) is
// not frozen half-way because nobody is looking at the page. Reading the
// answer is not itself work.

// workTracker counts the work under way. The zero value is ready.
type workTracker struct {
	mu      sync.Mutex
	next    uint64
	started map[uint64]time.Time // guarded by mu
}

// begin records one piece of work starting now; call the returned func
// (idempotent) when it ends.
func (w *workTracker) begin() (end func()) {
	w.mu.Lock()
	if w.started == nil {
		w.started = map[uint64]time.Time{}
	}
	w.next++
	id := w.next
	w.started[id] = time.Now()
	w.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			delete(w.started, id)
			w.mu.Unlock()
		})
	}
}

// snapshot returns how many pieces of work are under way and the age of the
// youngest (0 when none).
func (w *workTracker) snapshot(now time.Time) (n int, youngest time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.started {
		if age := now.Sub(t); n == 0 || age < youngest {
			youngest = age
		}
		n++
	}
	return n, youngest
}

// work answers GET /internal/work with api.VaultWork.
func (s *Server) work(c echo.Context) error {
	n, youngest := s.inflight.snapshot(time.Now())
	return c.JSON(http.StatusOK, api.VaultWork{InFlight: n, YoungestMs: youngest.Milliseconds()})
}
