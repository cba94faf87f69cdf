package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/xtest"
)

// Tests of issue 8 items 4 and 5: real work holds a container awake, polls
// neither wake it nor count, and proxied WebSockets notice silent peers.

// Fast keep-alive for tests: a silent peer is noticed within 600 ms.
const (
	testPing = 300 * time.Millisecond
	testPong = 300 * time.Millisecond
)

// chatClient is a minimal chat protocol client (SPEC §5.5).
type chatClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialChatWS(t *testing.T, env *xtest.Env, c *api.Client) *websocket.Conn {
	t.Helper()
	ws := env.DialChat(c)
	return ws
}

// connectChat dials the chat socket and completes the handshake.
func connectChat(t *testing.T, env *xtest.Env, c *api.Client) *chatClient {
	t.Helper()
	cc := &chatClient{t: t, ws: dialChatWS(t, env, c)}
	if f, err := cc.read(time.Minute); err != nil || f["event"] != "connect.challenge" {
		t.Fatalf("challenge: %v %v", f, err)
	}
	cc.send("c1", "connect", map[string]any{"minProtocol": 3, "maxProtocol": 3,
		"client": map[string]any{"id": "test", "version": "1", "platform": "go", "mode": "test"}, "role": "operator", "scopes": []string{}})
	if r := cc.until("c1", time.Minute); r["ok"] != true {
		t.Fatalf("connect: %v", r)
	}
	return cc
}

func (c *chatClient) send(id, method string, params any) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chatClient) read(timeout time.Duration) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	var f map[string]any
	return f, json.Unmarshal(b, &f)
}

// until reads frames until the response to id, failing after timeout.
func (c *chatClient) until(id string, timeout time.Duration) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f, err := c.read(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("waiting for the answer to %s: %v", id, err)
		}
		if f["id"] == id {
			return f
		}
	}
}

// setUpChat creates alice's vault with a provider key on fp and returns her
// client.
func setUpChat(t *testing.T, env *xtest.Env, fp *fakeprovider.Server) (*api.Client, api.User) {
	t.Helper()
	ctx := context.Background()
	alice, au := env.Admin("alice@example.org")
	provision(t, alice)
	vj := func(method, path string, body, out any) {
		t.Helper()
		if err := alice.JSON(ctx, method, "/api/v1/me/agent/vault"+path, body, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	var p struct {
		Salt string           `json:"salt"`
		KDF  crypto.KDFParams `json:"kdf"`
	}
	vj("GET", "/params", nil, &p)
	salt, _ := base64.StdEncoding.DecodeString(p.Salt)
	k, err := crypto.DeriveKEK([]byte("keepalive-test-password-1"), salt, p.KDF)
	if err != nil {
		t.Fatal(err)
	}
	vj("POST", "/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(k[:])}, nil)
	fp.SetKey("sk-ant-keepalive")
	vj("PUT", "/apikeys/anthropic", map[string]string{"key": "sk-ant-keepalive", "baseUrl": fp.URL()}, nil)
	return alice, au
}

// TestRunInFlightHoldsContainerAwake: a chat run that outlasts the idle
// time is not frozen when the tab closes; the container is paused once the
// run is over and the idle time has passed again.
func TestRunInFlightHoldsContainerAwake(t *testing.T) {
	fp := fakeprovider.New()
	defer fp.Close()
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) {
		c.IdlePauseAfter, c.PausedStopAfter = 1500*time.Millisecond, 0
	}), xtest.WithSweep(100*time.Millisecond))
	alice, _ := setUpChat(t, env, fp)
	const reply = "one two three four five six seven"
	fp.Script(fakeprovider.Reply{Text: reply, Chunks: 7, ChunkDelay: 700 * time.Millisecond}) // about 4.2 s
	cc := connectChat(t, env, alice)
	cc.send("s1", "chat.send", map[string]any{"sessionKey": "main", "message": "take your time", "idempotencyKey": "k1"})
	if r := cc.until("s1", 30*time.Second); r["ok"] != true {
		t.Fatalf("chat.send: %v", r)
	}
	cc.ws.Close(websocket.StatusGoingAway, "") // the tab closes
	start := time.Now()
	ctx := context.Background()
	for time.Since(start) < 3500*time.Millisecond { // the run goes on for ~4 s; idle pause is 1.5 s
		if st, _ := alice.Agent(ctx); st.State != api.StateRunning {
			t.Fatalf("container %s %v after the tab closed, with a run in flight", st.State, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The run finishes, then idle time passes: paused.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := alice.WaitAgent(wctx, api.StatePaused); err != nil {
		t.Fatalf("container not paused after the run ended: %v", err)
	}
	cc = connectChat(t, env, alice)
	cc.send("h1", "chat.history", map[string]any{"sessionKey": "main"})
	if h := cc.until("h1", 30*time.Second); !strings.Contains(fmt.Sprint(h), reply) {
		t.Fatalf("the run did not finish: history %v", h)
	}
}

// TestPollDoesNotWakeOrCount: GET /vault/status (the page's timer) of a
// sleeping container is answered "sleeping" without waking it, and polls
// of a running one do not keep it awake.
func TestPollDoesNotWakeOrCount(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) {
		c.IdlePauseAfter, c.PausedStopAfter = 1500*time.Millisecond, 0
	}), xtest.WithSweep(100*time.Millisecond))
	ctx := context.Background()
	admin, au := env.Admin("admin@example.org")
	provision(t, admin)
	poll := func() *api.Response {
		t.Helper()
		r, err := admin.Do(ctx, "GET", "/api/v1/me/agent/vault/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := poll(); r.Status != 200 || strings.Contains(string(r.Body), "sleeping") {
		t.Fatalf("status of a running container: %d %s", r.Status, r.Body)
	}
	if err := admin.AdminAction(ctx, au.ID, api.ActionPause); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r := poll()
		var got struct {
			Sleeping bool   `json:"sleeping"`
			State    string `json:"state"`
		}
		if r.Status != 200 || json.Unmarshal(r.Body, &got) != nil || !got.Sleeping || got.State != api.StatePaused {
			t.Fatalf("status of a paused container: %d %s", r.Status, r.Body)
		}
		if st, _ := admin.Agent(ctx); st.State != api.StatePaused {
			t.Fatalf("a poll woke the container: %s", st.State)
		}
	}
	healthz(t, admin) // real use wakes it
	woke := time.Now()
	for {
		r := poll()
		st, _ := admin.Agent(ctx)
		if st.State == api.StatePaused {
			if r.Status != 200 {
				t.Fatalf("poll: %d %s", r.Status, r.Body)
			}
			t.Logf("paused %v after the last real request, polled every 200 ms", time.Since(woke).Round(time.Millisecond))
			return
		}
		if time.Since(woke) > 10*time.Second {
			t.Fatalf("polls every 200 ms kept the container %s for %v (idle pause after 1.5 s)", st.State, time.Since(woke))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStalledClientIsClosed: a browser that stops reading (here: never
// reads, so never answers a ping) is disconnected within ping interval +
// pong timeout.
func TestStalledClientIsClosed(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithProxyPing(testPing, testPong))
	admin, _ := env.Admin("admin@example.org")
	provision(t, admin)
	ws := dialChatWS(t, env, admin)
	start := time.Now()
	bound := testPing + testPong + 2*time.Second
	for !strings.Contains(env.Log.String(), "the browser stopped answering") {
		if time.Since(start) > bound {
			t.Fatalf("a client that does not read is still connected after %v", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("stalled client detected and closed after %v (ping %v, pong timeout %v)", time.Since(start).Round(time.Millisecond), testPing, testPong)
	// Reading now drains what was sent, then finds the socket closed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("socket still open")
			}
			return
		}
	}
}

// TestUpstreamCloseReasonPassesThrough: the container's close code and
// reason reach the browser unchanged.
func TestUpstreamCloseReasonPassesThrough(t *testing.T) {
	env := xtest.NewEnv(t)
	admin, _ := env.Admin("admin@example.org")
	provision(t, admin)
	cc := &chatClient{t: t, ws: dialChatWS(t, env, admin)}
	cc.read(time.Minute)                            // connect.challenge
	cc.send("x1", "chat.history", map[string]any{}) // not connect: the vault refuses and closes (1008)
	var err error
	for err == nil {
		_, err = cc.read(30 * time.Second)
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "the first request must be connect" {
		t.Fatalf("close = %v, want 1008 with the vault's reason", err)
	}
}

// vaultPID finds the process driver's vault child listening on endpoint.
func vaultPID(t *testing.T, endpoint string) int {
	t.Helper()
	listen := []byte("--listen=" + strings.TrimPrefix(endpoint, "http://"))
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/cmdline")
		if err == nil && bytes.Contains(b, listen) && bytes.Contains(b, []byte("--role=vault")) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid
		}
	}
	t.Fatalf("no vault process listens on %s", endpoint)
	return 0
}

// TestPausedUpstreamProcess: a vault stopped behind ocmt's back (SIGSTOP,
// the process runtime's pause) while chat is open: a message gets its
// answer within the keep-alive bound, because the proxy notices the silent
// container, records it paused and wakes it.
func TestPausedUpstreamProcess(t *testing.T) {
	t.Run("noticed by the proxy", func(t *testing.T) { pausedUpstream(t) })
	// A sweep may record the pause before the proxy's ping notices it: the
	// waiting message must wake the container all the same.
	t.Run("noticed by a sweep first", func(t *testing.T) { pausedUpstream(t, xtest.WithSweep(50*time.Millisecond)) })
}

func pausedUpstream(t *testing.T, opts ...xtest.Option) {
	env := xtest.NewEnv(t, append([]xtest.Option{xtest.WithProxyPing(testPing, testPong)}, opts...)...)
	admin, au := env.Admin("admin@example.org")
	provision(t, admin)
	cc := connectChat(t, env, admin)
	endpoint, _ := env.ContainerAccess(au.ID)
	pid := vaultPID(t, endpoint)
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGCONT) })
	start := time.Now()
	cc.send("l1", "sessions.list", map[string]any{})
	r := cc.until("l1", testPing+testPong+5*time.Second)
	t.Logf("answer from a container paused behind ocmt's back after %v: %v", time.Since(start).Round(time.Millisecond), r["ok"])
	if st, _ := admin.Agent(context.Background()); st.State != api.StateRunning {
		t.Fatalf("state %s after the wake", st.State)
	}
}

// TestSleepingChatGetsTicks: while ocmt keeps a container asleep under an
// open chat socket, the proxy sends the tick events the chat client's
// watchdog waits for (else the browser redials, and the redial wakes the
// container), and the container stays asleep.
func TestSleepingChatGetsTicks(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) {
		c.IdlePauseAfter, c.PausedStopAfter = 1500*time.Millisecond, 0
	}), xtest.WithSweep(100*time.Millisecond), xtest.WithProxyPing(testPing, testPong))
	admin, _ := env.Admin("admin@example.org")
	provision(t, admin)
	cc := connectChat(t, env, admin)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	frames := make(chan map[string]any, 64)
	go func() {
		defer close(frames)
		for {
			f, err := cc.read(30 * time.Second)
			if err != nil {
				return
			}
			frames <- f
		}
	}()
	if _, err := admin.WaitAgent(ctx, api.StatePaused); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatal("chat socket closed while the container sleeps")
			}
			p, _ := f["payload"].(map[string]any)
			if f["event"] != "tick" || p["sleeping"] != true {
				continue
			}
			t.Logf("sleeping tick %v after the pause", time.Since(paused).Round(time.Millisecond))
			if st, _ := admin.Agent(context.Background()); st.State != api.StatePaused {
				t.Fatalf("state %s: the socket woke the container", st.State)
			}
			return
		case <-time.After(5 * time.Second):
			t.Fatal("no tick for 5 s while the container sleeps under an open chat socket")
		}
	}
}

// TestStoppedForHibernationClosesAsleep: when ocmt stops a container under
// an open chat socket, the browser is told that its agent sleeps
// (api.CloseAgentAsleep), so the page does not redial and start it again.
func TestStoppedForHibernationClosesAsleep(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(hibernateConfig), xtest.WithSweep(100*time.Millisecond), xtest.WithProxyPing(testPing, testPong))
	admin, _ := env.Admin("admin@example.org")
	provision(t, admin)
	cc := connectChat(t, env, admin)
	var err error
	for err == nil {
		_, err = cc.read(30 * time.Second)
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != api.CloseAgentAsleep {
		t.Fatalf("close after a hibernation stop: %v, want %d", err, api.CloseAgentAsleep)
	}
	if st, _ := admin.Agent(context.Background()); st.State != api.StateStopped {
		t.Fatalf("state %s", st.State)
	}
}
