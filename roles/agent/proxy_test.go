package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

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
	if res := s.forward(w, r, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", up.URL, false); res.failed || w.Code != http.StatusOK {
		t.Fatalf("forward: %+v, status %d", res, w.Code)
	}
	for _, h := range []string{"Upgrade", "Connection", "Http2-Settings"} {
		if v := got.Values(h); len(v) > 0 {
			t.Errorf("container got %s: %q", h, v)
		}
	}
}

// TestWebSocketCloseCodes: close codes and reasons cross the proxy both
// ways, and a request context ended with a websocket.CloseError cause (the
// management role's hook for a session that ended) closes the browser's
// socket with that code and reason.
func TestWebSocketCloseCodes(t *testing.T) {
	s := newProxyServer(t)
	upstreamClosed := make(chan websocket.CloseError, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				var ce websocket.CloseError
				errors.As(err, &ce)
				upstreamClosed <- ce
				return
			}
			if string(b) == "close please" {
				c.Close(4123, "the container's own reason")
				return
			}
			c.Write(r.Context(), typ, b)
		}
	}))
	defer up.Close()
	ctx := context.Background()
	if err := s.st.PutContainer(ctx, store.Container{UserID: "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", Runtime: "process", State: store.StateRunning, Endpoint: up.URL}); err != nil {
		t.Fatal(err)
	}
	end := make(chan context.CancelCauseFunc, 1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithCancelCause(r.Context())
		end <- cancel
		s.Proxy("usr_bobaaaaaaaaaaaaaaaaaaaaaaa").ServeHTTP(w, r.WithContext(rctx))
	}))
	defer front.Close()
	dial := func() *websocket.Conn {
		t.Helper()
		c, _, err := websocket.Dial(ctx, strings.Replace(front.URL, "http", "ws", 1)+"/ws/echo", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, b, err := c.Read(ctx); err != nil || string(b) != "hi" {
			t.Fatalf("echo: %q %v", b, err)
		}
		return c
	}
	readClose := func(c *websocket.Conn) websocket.CloseError {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, _, err := c.Read(rctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read: %v, want a close frame", err)
		}
		return ce
	}

	t.Run("upstream close reaches the browser", func(t *testing.T) {
		c := dial()
		<-end
		c.Write(ctx, websocket.MessageText, []byte("close please"))
		if ce := readClose(c); ce.Code != 4123 || ce.Reason != "the container's own reason" {
			t.Fatalf("browser got %v", ce)
		}
	})
	t.Run("browser close reaches the container", func(t *testing.T) {
		c := dial()
		<-end
		c.Close(4321, "the browser's reason")
		select {
		case ce := <-upstreamClosed:
			if ce.Code != 4321 || ce.Reason != "the browser's reason" {
				t.Fatalf("container got %v", ce)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("container's socket not closed")
		}
	})
	t.Run("request context cause closes the browser", func(t *testing.T) {
		c := dial()
		(<-end)(websocket.CloseError{Code: 4001, Reason: "signed out"})
		if ce := readClose(c); ce.Code != 4001 || ce.Reason != "signed out" {
			t.Fatalf("browser got %v", ce)
		}
	})
}
