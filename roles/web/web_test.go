package web_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/roles/web"
)

func newServer(t *testing.T, d time.Duration, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = web.NewServer(h, d, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestBodyDeadlineLongHandler: once the body has been read (or when there is
// none), the deadline no longer applies: a handler that works for longer
// keeps its context, and the connection serves the next request.
func TestBodyDeadlineLongHandler(t *testing.T) {
	const d = 200 * time.Millisecond
	addr := newServer(t, d, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(3 * d):
			io.WriteString(w, "done")
		case <-r.Context().Done():
			t.Errorf("request context ended %s into a long handler: %v", 3*d, r.Context().Err())
		}
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i, req := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		io.WriteString(conn, req)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "done" {
			t.Fatalf("request %d: %s %q", i, resp.Status, body)
		}
	}
}

// TestBodyDeadlineStalled: a body that stops coming ends the request soon
// after the deadline, whether the handler reads it or not; a slow body that
// is complete within the deadline is served.
func TestBodyDeadlineStalled(t *testing.T) {
	const d = 200 * time.Millisecond
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"reads", func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.ReadAll(r.Body); err != nil {
				http.Error(w, "read", http.StatusBadRequest)
			}
		}},
		{"ignores", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := newServer(t, d, tc.h)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":")
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(conn) // an answer, then the close
			if ne, ok := err.(net.Error); ok && ne.Timeout() || time.Since(start) > d+2*time.Second {
				t.Fatalf("connection still open %s after a stalled body", time.Since(start))
			}
		})
	}
	t.Run("slow but in time", func(t *testing.T) {
		addr := newServer(t, d, func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, "read", http.StatusBadRequest)
				return
			}
			w.Write(b)
		})
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
		time.Sleep(d / 2)
		io.WriteString(conn, "cd")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.EqualFold(string(body), "abcd") {
			t.Fatalf("%s %q", resp.Status, body)
		}
	})
}

func TestIsWebSocket(t *testing.T) {
	for _, tc := range []struct {
		connection, upgrade []string
		want                bool
	}{
		{[]string{"Upgrade"}, []string{"websocket"}, true},
		{[]string{"upgrade"}, []string{"WebSocket"}, true},
		{[]string{"keep-alive, Upgrade"}, []string{"websocket, foo"}, true},
		{[]string{"keep-alive", "UPGRADE"}, []string{"foo", " websocket "}, true},
		{nil, []string{"websocket"}, false},
		{[]string{"Upgrade"}, nil, false},
		{[]string{"Upgrade"}, []string{"h2c"}, false},
		{[]string{"Upgrade"}, []string{"websocketx"}, false},
		{[]string{"upgraded"}, []string{"websocket"}, false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Connection"], r.Header["Upgrade"] = tc.connection, tc.upgrade
		if got := web.IsWebSocket(r); got != tc.want {
			t.Errorf("Connection %q Upgrade %q: IsWebSocket = %v, want %v", tc.connection, tc.upgrade, got, tc.want)
		}
	}
}
