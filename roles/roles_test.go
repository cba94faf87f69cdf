package roles_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles"
	"github.com/ocmt/ocmt/xtest"
)

// testBodyDeadline is the body deadline the servers under test get.
const testBodyDeadline = 200 * time.Millisecond

// stalledBody sends the headers of a request promising a 100-byte body,
// then only part of it, and reports how long the server took to answer or
// close the connection (it fails the test after 5 s of silence).
func stalledBody(t *testing.T, addr, path string, hdr ...string) (time.Duration, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
	for _, h := range hdr {
		req += h + "\r\n"
	}
	start := time.Now()
	if _, err := io.WriteString(conn, req+"\r\n"+`{"email":`); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("POST %s: no answer and no close %s after a stalled body (deadline %s)", path, took.Round(time.Millisecond), testBodyDeadline)
	}
	if err != nil {
		return took, "closed"
	}
	resp.Body.Close()
	return took, resp.Status
}

// TestBodyDeadline: a client that stops sending a request body half way
// gets an answer or a closed connection soon after the body deadline, on
// routes that read the body and on routes that refuse the request before
// reading it (the server drains bodies of refused requests).
func TestBodyDeadline(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithBodyDeadline(testBodyDeadline))
	addr := strings.TrimPrefix(env.URL, "http://")
	for _, path := range []string{
		"/api/v1/auth/magic-link", // reads the body
		"/api/v1/me/agent",        // refused (no CSRF token) without reading it
		"/relay/v1/connect",       // relay routes, no such POST route
		"/healthz",                // method not allowed
	} {
		took, status := stalledBody(t, addr, path)
		if took > testBodyDeadline+2*time.Second {
			t.Errorf("POST %s: answered (%s) only after %s", path, status, took)
		}
	}

	t.Run("websocket outlives the deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		admin, _ := env.Admin("admin@example.org")
		if err := admin.ProvisionAgent(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.WaitAgent(ctx, api.StateRunning); err != nil {
			t.Fatal(err)
		}
		conn, resp, err := websocket.Dial(ctx, strings.Replace(env.URL, "http", "ws", 1)+"/api/v1/me/agent/ws/echo",
			&websocket.DialOptions{HTTPClient: admin.HC, HTTPHeader: http.Header{"Origin": {env.URL}}})
		if err != nil {
			t.Fatalf("dial echo: %v (%v)", err, resp)
		}
		defer conn.CloseNow()
		for i := 0; i < 2; i++ {
			time.Sleep(3 * testBodyDeadline) // idle for longer than the deadline
			if err := conn.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
				t.Fatalf("write after idling: %v", err)
			}
			if _, got, err := conn.Read(ctx); err != nil || string(got) != "ping" {
				t.Fatalf("echo after idling = %q, %v", got, err)
			}
		}
		conn.Close(websocket.StatusNormalClosure, "")
	})
}

// TestBodyDeadlineVault: the vault role (inside each container) has the
// same body deadline, for its agent proxy and for strangers alike.
func TestBodyDeadlineVault(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	cfg := config.Default()
	cfg.Role, cfg.DataDir, cfg.VaultSecret, cfg.VaultUser = config.RoleVault, t.TempDir(), secret, "usr_test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = "http://" + cfg.Listen
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		errc <- roles.Run(ctx, cfg, roles.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard,
			Listener: ln, BodyDeadline: testBodyDeadline, Ready: func(string) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("vault did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("vault exited: %v", err)
		}
	})
	for _, tc := range []struct {
		path string
		hdr  []string
	}{
		{"/vault/unlock", []string{api.ContainerSecretHeader + ": " + secret}}, // reads the body
		{"/vault/unlock", nil}, // refused without the secret, body unread
	} {
		took, status := stalledBody(t, cfg.Listen, tc.path, tc.hdr...)
		if took > testBodyDeadline+2*time.Second {
			t.Errorf("POST %s: answered (%s) only after %s", tc.path, status, took)
		}
	}
}
