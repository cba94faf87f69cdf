package web_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/roles/web"
)

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestProxyWatchCheck: a request is right only from a trusted proxy that
// says the browser used https.
func TestProxyWatchCheck(t *testing.T) {
	w := web.NewProxyWatch(slog.New(slog.NewTextHandler(io.Discard, nil)), "https://ocmt.example.org",
		[]*net.IPNet{mustCIDR(t, "127.0.0.1/32"), mustCIDR(t, "fd00::/8")}, nil)
	for _, tc := range []struct {
		peer, proto string
		want        web.ProxyProblem
	}{
		{"127.0.0.1:4000", "https", ""},
		{"127.0.0.1:4000", "HTTPS", ""},
		{"[fd00::7]:4000", "https", ""},
		{"127.0.0.1:4000", "https, http", ""}, // the browser-facing hop comes first
		{"127.0.0.1:4000", "", web.ProxyNoForwardedProto},
		{"127.0.0.1:4000", " , https", web.ProxyNoForwardedProto},
		{"127.0.0.1:4000", "http", web.ProxyPlainHTTP},
		{"127.0.0.2:4000", "https", web.ProxyUntrustedPeer}, // the header of an untrusted peer counts for nothing
		{"192.0.2.7:4000", "", web.ProxyUntrustedPeer},
		{"garbage", "https", web.ProxyUntrustedPeer},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.peer
		if tc.proto != "" {
			r.Header.Set("X-Forwarded-Proto", tc.proto)
		}
		if got := w.Check(r); got != tc.want {
			t.Errorf("peer %s, X-Forwarded-Proto %q: %q, want %q", tc.peer, tc.proto, got, tc.want)
		}
	}
}

// TestProxyWatchRecords: watched requests are counted by problem with the
// peer's address class (never the address), probes and container or
// service routes are not watched, one warning is logged per problem, and
// Run writes the report at once and a last time when it stops.
func TestProxyWatchRecords(t *testing.T) {
	var logBuf strings.Builder
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	now := time.UnixMilli(1_800_000_000_000)
	w := web.NewProxyWatch(log, "https://ocmt.example.org", []*net.IPNet{mustCIDR(t, "10.0.0.2/32")}, func() time.Time { return now })
	e := web.New(log, true)
	e.Use(w.Middleware)
	e.GET("/*", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	saved := make(chan []byte, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, time.Hour, func(_ context.Context, b []byte) error { saved <- b; return nil })
	}()
	send := func(peer, path, proto string) {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = peer
		if proto != "" {
			r.Header.Set("X-Forwarded-Proto", proto)
		}
		e.ServeHTTP(httptest.NewRecorder(), r)
	}
	send("10.0.0.2:1", "/", "https")          // right
	send("203.0.113.5:1", "/signin", "https") // untrusted, public
	select {
	case b := <-saved: // the first problem is written at once
		rep, err := web.ParseProxyReport(b)
		if err != nil || rep.Problems[web.ProxyUntrustedPeer] == nil || rep.Problems[web.ProxyUntrustedPeer].Count != 1 {
			t.Fatalf("first write: %+v %v", rep, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first problem was not written")
	}
	send("127.0.0.1:1", "/api/v1/me", "") // untrusted, loopback
	send("10.0.0.2:1", "/", "")           // no proto
	send("10.0.0.2:1", "/", "http")       // plain http
	for _, p := range []string{"/healthz", "/livez", "/readyz", "/metrics", "/relay/v1/connect", "/internal/v1/agent/x"} {
		send("127.0.0.1:1", p, "") // not watched
	}
	cancel()
	<-done
	var b []byte
	for len(saved) > 0 {
		b = <-saved
	}
	if b == nil {
		t.Fatal("no last write when Run stopped")
	}
	rep, err := web.ParseProxyReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK != 1 || rep.PublicURL != "https://ocmt.example.org" || len(rep.TrustedProxies) != 1 || rep.TrustedProxies[0] != "10.0.0.2/32" ||
		rep.SinceMS != now.UnixMilli() {
		t.Errorf("report: %+v", rep)
	}
	for p, want := range map[web.ProxyProblem]struct {
		n     int64
		peers string
	}{
		web.ProxyUntrustedPeer:    {2, "loopback,public"},
		web.ProxyNoForwardedProto: {1, "private"},
		web.ProxyPlainHTTP:        {1, "private"},
	} {
		s := rep.Problems[p]
		if s == nil || s.Count != want.n || strings.Join(s.Peers, ",") != want.peers || s.LastMS != now.UnixMilli() {
			t.Errorf("%s: %+v, want %d from %s", p, s, want.n, want.peers)
		}
	}
	if strings.Contains(string(b), "203.0.113.5") || strings.Contains(string(b), "127.0.0.1") {
		t.Errorf("the report holds a peer address: %s", b)
	}
	if n := strings.Count(logBuf.String(), "reverse proxy"); n != 3 {
		t.Errorf("%d warnings logged, want one per problem (3):\n%s", n, logBuf.String())
	}
}
