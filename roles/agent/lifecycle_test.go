package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/xtest"
)

// dialEcho opens the proxied diagnostic WebSocket of c's container.
func dialEcho(t *testing.T, env *xtest.Env, c *api.Client) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hdr := http.Header{"Origin": {env.URL}}
	conn, resp, err := websocket.Dial(ctx, strings.Replace(env.URL, "http", "ws", 1)+"/api/v1/me/agent/ws/echo",
		&websocket.DialOptions{HTTPClient: c.HC, HTTPHeader: hdr})
	if err != nil {
		t.Fatalf("dial echo: %v (%v)", err, resp)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

func echoRoundTrip(t *testing.T, conn *websocket.Conn, msgs ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range msgs { // all sent before any answer is read: the proxy must queue them
		if err := conn.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatalf("write %q: %v", m, err)
		}
	}
	for _, m := range msgs {
		_, got, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("read echo of %q: %v", m, err)
		}
		if string(got) != m {
			t.Fatalf("echo = %q, want %q (order or loss)", got, m)
		}
	}
}

func provision(t *testing.T, c *api.Client) api.AgentStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.ProvisionAgent(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.WaitAgent(ctx, api.StateRunning)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func healthz(t *testing.T, c *api.Client) {
	t.Helper()
	r, err := c.Do(context.Background(), "GET", "/api/v1/me/agent/healthz", nil)
	if err != nil || r.Status != 200 || !strings.Contains(string(r.Body), `"roles":["vault"]`) {
		t.Fatalf("proxied healthz: %v %v", r, err)
	}
}

// lifecycle runs the container lifecycle scenario against env's runtime.
// writeData and hasData put and look for a marker in the user's /data.
func lifecycle(t *testing.T, env *xtest.Env, writeData func(userID string), hasData func(userID string) bool) {
	ctx := context.Background()
	admin, au := env.Admin("admin@example.org")
	bob, bu := env.Invite(admin, "bob@example.org")

	st := provision(t, admin)
	if st.Runtime != string(env.Cfg.Runtime) {
		t.Fatalf("runtime %q, want %q", st.Runtime, env.Cfg.Runtime)
	}
	provision(t, bob)
	healthz(t, admin)

	t.Run("proxy forwards only to the caller's own container", func(t *testing.T) {
		// The proxy never takes a user id from the request: check that the
		// secret is not visible and that cookies do not leak upstream.
		r, err := bob.Do(ctx, "GET", "/api/v1/me/agent/healthz", nil)
		if err != nil || r.Status != 200 {
			t.Fatalf("bob healthz: %v %v", r, err)
		}
		if strings.Contains(fmt.Sprint(r.Header), "Secret") {
			t.Fatalf("container secret header leaked to the browser: %v", r.Header)
		}
		r, _ = env.Client().Do(ctx, "GET", "/api/v1/me/agent/healthz", nil)
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("anonymous proxy: %d", r.Status)
		}
	})

	t.Run("websocket queues frames sent before upstream opens", func(t *testing.T) {
		if err := admin.AdminAction(ctx, bu.ID, api.ActionStop); err != nil {
			t.Fatal(err)
		}
		conn := dialEcho(t, env, bob) // container is stopped: the proxy wakes it
		echoRoundTrip(t, conn, "one", "two", "three")
		conn.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("foreign origin websocket refused", func(t *testing.T) {
		_, resp, err := websocket.Dial(ctx, strings.Replace(env.URL, "http", "ws", 1)+"/api/v1/me/agent/ws/echo",
			&websocket.DialOptions{HTTPClient: bob.HC, HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin: err %v resp %v", err, resp)
		}
	})

	t.Run("pause then wake", func(t *testing.T) {
		if err := admin.AdminAction(ctx, au.ID, api.ActionPause); err != nil {
			t.Fatal(err)
		}
		if s, _ := admin.Agent(ctx); s.State != api.StatePaused {
			t.Fatalf("state %q after pause", s.State)
		}
		healthz(t, admin) // any proxied request wakes it
		if s, _ := admin.Agent(ctx); s.State != api.StateRunning {
			t.Fatalf("state %q after wake", s.State)
		}
	})

	t.Run("stop then wake", func(t *testing.T) {
		if err := admin.AdminAction(ctx, au.ID, api.ActionStop); err != nil {
			t.Fatal(err)
		}
		if s, _ := admin.Agent(ctx); s.State != api.StateStopped {
			t.Fatalf("state %q after stop", s.State)
		}
		healthz(t, admin)
	})

	t.Run("concurrent wakes coalesce", func(t *testing.T) {
		if err := admin.AdminAction(ctx, au.ID, api.ActionStop); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(env.Log.String(), "woke container")
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			go func() {
				r, err := admin.Do(ctx, "GET", "/api/v1/me/agent/healthz", nil)
				if err == nil && r.Status != 200 {
					err = fmt.Errorf("status %d: %s", r.Status, r.Body)
				}
				errs <- err
			}()
		}
		for i := 0; i < 8; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if n := strings.Count(env.Log.String(), "woke container") - before; n != 1 {
			t.Fatalf("8 concurrent requests woke the container %d times, want 1", n)
		}
	})

	t.Run("repair keeps data", func(t *testing.T) {
		writeData(au.ID)
		before, _ := admin.Agent(ctx)
		if err := admin.AdminAction(ctx, au.ID, api.ActionRepair); err != nil {
			t.Fatal(err)
		}
		after, _ := admin.Agent(ctx)
		if after.State != api.StateRunning {
			t.Fatalf("state %q after repair", after.State)
		}
		if !hasData(au.ID) {
			t.Fatal("repair lost /data")
		}
		_ = before
		healthz(t, admin)
	})

	t.Run("restart rebuilds state and keeps last activity", func(t *testing.T) {
		if err := admin.AdminAction(ctx, bu.ID, api.ActionPause); err != nil {
			t.Fatal(err)
		}
		b1, _ := bob.Agent(ctx)
		env.Restart()
		b2, err := bob.Agent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !b2.LastActivityAt.Equal(b1.LastActivityAt) {
			t.Fatalf("last activity %v after restart, was %v", b2.LastActivityAt, b1.LastActivityAt)
		}
		want := api.StatePaused
		if env.Cfg.Runtime == config.RuntimeProcess {
			want = api.StateStopped // children do not outlive the agent role
		}
		if b2.State != want {
			t.Fatalf("state after restart %q, want %q", b2.State, want)
		}
		healthz(t, bob)
		if !hasData(au.ID) {
			t.Fatal("restart lost /data")
		}
		healthz(t, admin)
	})
}

func idleWebSocket(t *testing.T, env *xtest.Env) {
	ctx := context.Background()
	admin, _ := env.Admin("admin@example.org")
	provision(t, admin)
	conn := dialEcho(t, env, admin)
	echoRoundTrip(t, conn, "hello")
	// An open but idle socket is not activity: the container gets paused.
	ctxw, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := admin.WaitAgent(ctxw, api.StatePaused); err != nil {
		t.Fatalf("idle container with an open WebSocket was not paused: %v", err)
	}
	// A message on the open socket is activity: it wakes the container.
	echoRoundTrip(t, conn, "wake up")
	if s, _ := admin.Agent(ctx); s.State != api.StateRunning {
		t.Fatalf("state %q after a message", s.State)
	}
	// Paused long enough, it is stopped.
	if _, err := admin.WaitAgent(ctxw, api.StateStopped); err != nil {
		t.Fatalf("paused container was not stopped: %v", err)
	}
}

func hibernateConfig(c *config.Config) {
	c.IdlePauseAfter = 1500 * time.Millisecond
	c.PausedStopAfter = 3 * time.Second
}

func TestLifecycleProcess(t *testing.T) {
	env := xtest.NewEnv(t)
	dir := func(uid string) string { return env.Cfg.DataDir + "/users/" + uid + "/marker" }
	lifecycle(t, env,
		func(uid string) { writeFile(t, dir(uid), "keep me") },
		func(uid string) bool { return fileHas(dir(uid), "keep me") })
}

func TestIdleWebSocketProcess(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(hibernateConfig), xtest.WithSweep(100*time.Millisecond))
	idleWebSocket(t, env)
}

// TestUpstreamFailureClosesWithReason: when the container goes away under
// an open WebSocket, the browser side is closed with a readable reason.
func TestUpstreamFailureClosesWithReason(t *testing.T) {
	env := xtest.NewEnv(t)
	admin, au := env.Admin("admin@example.org")
	provision(t, admin)
	conn := dialEcho(t, env, admin)
	echoRoundTrip(t, conn, "before")
	if err := admin.AdminAction(context.Background(), au.ID, api.ActionStop); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err := conn.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code == websocket.StatusNormalClosure || !strings.Contains(ce.Reason, "agent") {
		t.Fatalf("close after the container stopped: %v", err)
	}
}

// TestProxyLimits: a burst of messages on an open socket is slowed, not
// cut; an oversized request body is a 413, not a 502.
func TestProxyLimits(t *testing.T) {
	env := xtest.NewEnv(t)
	admin, _ := env.Admin("admin@example.org")
	provision(t, admin)
	conn := dialEcho(t, env, admin)
	echoRoundTrip(t, conn, "warm up")
	msgs := make([]string, 2000)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("m%04d", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		for _, m := range msgs {
			if conn.Write(ctx, websocket.MessageText, []byte(m)) != nil {
				return
			}
		}
	}()
	for _, m := range msgs {
		_, got, err := conn.Read(ctx)
		if err != nil || string(got) != m {
			t.Fatalf("burst: got %q, %v; want %q", got, err, m)
		}
	}
	big := strings.NewReader(`{"x":"` + strings.Repeat("a", 2<<20) + `"}`)
	req, _ := http.NewRequest("POST", env.URL+"/api/v1/me/agent/vault/unlock", io.NopCloser(big)) // chunked: no length
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", admin.Cookie("ocmt_csrf"))
	resp, err := admin.HC.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized chunked body: %d", resp.StatusCode)
	}
}

// TestProxyRefusesLifecycleEndpoints: the vault's /internal endpoints
// (hibernation keys) answer only the agent role itself; no spelling of the
// path gets through the browser-facing proxy.
func TestProxyRefusesLifecycleEndpoints(t *testing.T) {
	env := xtest.NewEnv(t)
	admin, _ := env.Admin("admin@example.org")
	provision(t, admin)
	for _, p := range []string{"/internal/hibernate", "/internal/resume", "//internal/resume", "/vault/../internal/resume",
		"/%69nternal/resume", "/internal%2Fresume", "/INTERNAL/resume", "/./internal/hibernate"} {
		req, _ := http.NewRequest("POST", env.URL+"/api/v1/me/agent"+p, strings.NewReader(`{"key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRF-Token", admin.Cookie("ocmt_csrf"))
		req.Header.Set(api.LifecycleHeader, "guess")
		resp, err := admin.HC.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if (resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest) || strings.Contains(string(b), "unlocked") {
			t.Errorf("%s: %d %s", p, resp.StatusCode, b)
		}
	}
}
