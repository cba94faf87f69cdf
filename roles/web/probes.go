package web

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
)

// CheckTimeout bounds each readiness check.
const CheckTimeout = 3 * time.Second

// Check is one readiness check of a role.
type Check struct {
	// Name is a fixed word naming the dependency ("database", "engine",
	// "relay"), the key in api.Probe.Checks.
	Name string
	// Func returns nil when the dependency works. Its error is logged,
	// never sent.
	Func func(ctx context.Context) error
}

// Probes serves a role's liveness and readiness:
//
//	GET|HEAD /livez   200 {"status":"ok"}: the process answers; no dependency is asked
//	GET|HEAD /readyz  200 when every check passes, else 503; the body
//	                  (api.Probe) names each check and its status
//
// Checks run concurrently, each within CheckTimeout.
type Probes struct {
	Checks []Check
	Log    *slog.Logger // where failing checks are logged (WARN); nil = discarded
}

// Routes adds /livez and /readyz to e.
func (p Probes) Routes(e *echo.Echo) {
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		e.Add(m, "/livez", p.live)
		e.Add(m, "/readyz", p.ready)
	}
}

// Handler serves /livez and /readyz alone (for the metrics listener).
func (p Probes) Handler(log *slog.Logger) http.Handler {
	e := New(log, false)
	p.Routes(e)
	return e
}

func (p Probes) live(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, api.Probe{Status: api.ProbeOK})
}

func (p Probes) ready(c echo.Context) error {
	res := p.Run(c.Request().Context())
	code := http.StatusOK
	if res.Status != api.ProbeOK {
		code = http.StatusServiceUnavailable
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(code, res)
}

// Run runs every check and returns the readiness body.
func (p Probes) Run(ctx context.Context) api.Probe {
	res := api.Probe{Status: api.ProbeOK, Checks: make(map[string]string, len(p.Checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ch := range p.Checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
			defer cancel()
			err := ch.Func(cctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Checks[ch.Name], res.Status = api.ProbeFailing, api.ProbeFailing
				if p.Log != nil {
					p.Log.Warn("readiness check failing", "check", ch.Name, "err", err)
				}
				return
			}
			res.Checks[ch.Name] = api.ProbeOK
		})
	}
	wg.Wait()
	return res
}
