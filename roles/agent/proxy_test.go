package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/ocmt/ocmt/roles/agent/process"
	"github.com/ocmt/ocmt/store"
)

// newProxyServer returns an agent role with no containers, for calling
// forward against a stand-in upstream.
func newProxyServer(t *testing.T) *Server {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(ctx, Options{Driver: process.New(log), Store: st, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestForwardDropsOtherUpgrades: a request asking for a protocol other than
// WebSocket reaches the container without Upgrade or Connection headers.
func TestForwardDropsOtherUpgrades(t *testing.T) {
	s := newProxyServer(t)
	var got http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		io.WriteString(w, "plain")
	}))
	defer up.Close()
	r := httptest.NewRequest("GET", "/healthz", nil)
	r.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	r.Header.Set("Upgrade", "h2c")
	r.Header.Set("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")
	w := httptest.NewRecorder()
	if res := s.forward(w, r, "usr_bob", up.URL, false); res.failed || w.Code != http.StatusOK {
		t.Fatalf("forward: %+v, status %d", res, w.Code)
	}
	for _, h := range []string{"Upgrade", "Connection", "Http2-Settings"} {
		if v := got.Values(h); len(v) > 0 {
			t.Errorf("container got %s: %q", h, v)
		}
	}
}
