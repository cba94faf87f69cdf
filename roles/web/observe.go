package web

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/metrics"
)

// MaxRequestIDLen bounds an X-Request-Id a client or proxy sends; a longer
// or otherwise unsafe one is replaced by a fresh id.
const MaxRequestIDLen = 64

// requestID is the first pre-routing middleware: it keeps a safe incoming
// X-Request-Id (validRequestID) or makes a new one (16 hex digits), and
// echoes it in the response header, where the error handler and the access
// log read it.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

// validRequestID reports whether id is 1..MaxRequestIDLen characters of
// A-Z a-z 0-9 . _ - : safe in a log line and a header, whatever the log
// format.
func validRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// quietRoutes are logged at DEBUG, not INFO: probes and scrapes that
// would drown the log.
var quietRoutes = map[string]bool{"/livez": true, "/readyz": true, "/healthz": true, "/metrics": true}

// Observe adds the access log and the HTTP metrics to e (before routing,
// so requests no route matches are seen too). Each request gets one log
// line "http request" with method, route (the route template, never the
// path: ids and query strings with tokens stay out; "unmatched" when no
// route matched), status, duration_ms, bytes (response body), request_id
// and client_ip (echo's RealIP, which believes X-Forwarded-For only from
// trusted proxies; see New). Neither the query string, nor cookies, nor
// the Authorization header are logged. Probes and scrapes (/livez,
// /readyz, /healthz, /metrics) log at DEBUG. m may be nil (no metrics).
//
// An error a handler returns is handed to e's error handler here, so the
// status logged is the one sent; a request whose client went away before
// an answer (no response written) is logged as 499.
func Observe(e *echo.Echo, log *slog.Logger, m *metrics.Registry, level slog.Level) {
	var known sync.Map // route → bool: is it a registered route template?
	isRoute := func(p string) bool {
		if v, ok := known.Load(p); ok {
			return v.(bool)
		}
		found := false
		for _, r := range e.Routes() {
			if r.Path == p {
				found = true
				break
			}
		}
		known.Store(p, found) // bounded: p is a router node's template, never the request path
		return found
	}
	e.Pre(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			d := time.Since(start)
			res := c.Response()
			status := res.Status
			if !res.Committed {
				status = 499 // the error handler wrote nothing: the client went away
			}
			route := c.Path()
			if route == "" || !isRoute(route) {
				route = metrics.Unmatched
			}
			req := c.Request()
			m.HTTP(route, req.Method, status, d)
			lvl := level
			if quietRoutes[route] {
				lvl = slog.LevelDebug
			}
			ctx := context.Background()
			if !log.Enabled(ctx, lvl) {
				return nil
			}
			log.LogAttrs(ctx, lvl, "http request",
				slog.String("method", req.Method),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				slog.Int64("bytes", res.Size),
				slog.String("request_id", res.Header().Get(echo.HeaderXRequestID)),
				slog.String("client_ip", c.RealIP()),
			)
			return nil
		}
	})
}
