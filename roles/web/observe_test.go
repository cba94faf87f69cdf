package web_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/metrics"
	"github.com/ocmt/ocmt/roles/web"
)

// benchServer is an echo server with one route with an id parameter,
// observed (access log to io.Discard in format, metrics) or not.
func benchServer(observe bool, json bool) *echo.Echo {
	var h slog.Handler = slog.NewTextHandler(io.Discard, nil)
	if json {
		h = slog.NewJSONHandler(io.Discard, nil)
	}
	log := slog.New(h)
	e := web.New(log, false)
	if observe {
		web.Observe(e, log, metrics.New(), slog.LevelInfo)
	}
	e.GET("/api/v1/things/:id", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	return e
}

// BenchmarkObserve measures what the access log and the HTTP metrics add
// to a request (compare the sub-benchmarks: "bare" is web.New alone).
func BenchmarkObserve(b *testing.B) {
	for _, bc := range []struct {
		name          string
		observe, json bool
	}{{"bare", false, false}, {"observed-text", true, false}, {"observed-json", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			e := benchServer(bc.observe, bc.json)
			req := httptest.NewRequest(http.MethodGet, "/api/v1/things/usr_0123456789abcdefghjkmnpqrs?token=x", nil)
			req.Header.Set("X-Request-Id", "bench-1")
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				e.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
