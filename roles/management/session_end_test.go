package management_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/xtest"
)

// offsetClock is time.Now moved forward by a settable offset.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) Advance(d time.Duration) { c.off.Add(int64(d)) }
func (c *offsetClock) Set(d time.Duration)     { c.off.Store(int64(d)) }

// chatSocket is the chat WebSocket of one browser session, past the
// connect handshake.
type chatSocket struct {
	t  *testing.T
	ws *websocket.Conn
	n  int
}

func openChat(t *testing.T, env *xtest.Env, c *api.Client) *chatSocket {
	t.Helper()
	ws := env.DialChat(c)
	s := &chatSocket{t: t, ws: ws}
	if err := s.call("connect", map[string]any{"minProtocol": 3, "maxProtocol": 3,
		"client": map[string]any{"id": "test", "version": "1", "platform": "go", "mode": "test"}, "role": "operator", "scopes": []string{}}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	return s
}

// call sends a request and waits for its response (any ok value: a locked
// vault answers chat requests with an error frame, which still shows that
// the socket works). It returns the socket's error, if any.
func (s *chatSocket) call(method string, params any) error {
	s.n++
	id := method + "-" + string(rune('a'+s.n%26))
	b, _ := json.Marshal(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.ws.Write(ctx, websocket.MessageText, b); err != nil {
		return err
	}
	for {
		_, data, err := s.ws.Read(ctx)
		if err != nil {
			return err
		}
		var f struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		}
		if json.Unmarshal(data, &f) == nil && f.Type == "res" && f.ID == id {
			return nil
		}
	}
}

// closed waits up to within for the server to close the socket and returns
// the close error.
func (s *chatSocket) closed(within time.Duration) error {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		if _, _, err := s.ws.Read(ctx); err != nil {
			if ctx.Err() != nil {
				s.t.Fatalf("the socket was still open after %s", within)
			}
			return err
		}
	}
}

// TestSocketsEndWithSession: every socket opened with a session is closed
// with api.StatusSessionEnded ("signed out", "session expired") as soon as
// that session ends, in one process and with the roles apart; sockets of
// the user's other sessions stay open, and the closed ones take no more
// frames.
func TestSocketsEndWithSession(t *testing.T) {
	for _, mode := range deployModes {
		t.Run(mode.name, func(t *testing.T) {
			clock := &offsetClock{}
			env := mode.new(t, xtest.WithClock(clock.Now))
			ctx := context.Background()
			a := provisioned(t, env) // session A of admin@example.org
			b := env.Client()        // session B of the same user
			if err := b.RequestLink(ctx, "admin@example.org"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Verify(ctx, env.LinkFor("admin@example.org"), ""); err != nil {
				t.Fatal(err)
			}
			chatA, chatB := openChat(t, env, a), openChat(t, env, b)
			hist := map[string]any{"sessionKey": "main", "limit": 10}
			for _, s := range []*chatSocket{chatA, chatB} {
				if err := s.call("chat.history", hist); err != nil {
					t.Fatalf("chat.history before logout: %v", err)
				}
			}
			// Logout closes session A's socket at once with the code.
			if err := a.Logout(ctx); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err := chatA.closed(5 * time.Second)
			if st := websocket.CloseStatus(err); st != api.StatusSessionEnded || !strings.Contains(err.Error(), "signed out") {
				t.Fatalf("after logout: %v (status %d), want %d \"signed out\"", err, st, api.StatusSessionEnded)
			}
			t.Logf("closed %s after logout", time.Since(start).Round(time.Millisecond))
			if err := chatA.call("chat.send", map[string]any{"sessionKey": "main", "message": "hi", "idempotencyKey": "k1"}); err == nil {
				t.Fatal("chat.send still works on the socket of a signed-out session")
			}
			if err := chatA.call("chat.history", hist); err == nil {
				t.Fatal("chat.history still works on the socket of a signed-out session")
			}
			// Session B is another sign-in: its socket is untouched.
			if err := chatB.call("chat.history", hist); err != nil {
				t.Fatalf("the user's other session lost its socket: %v", err)
			}
			// Expiry closes too, within the documented second (plus slack).
			clock.Advance(env.Cfg.SessionTTL + time.Second)
			start = time.Now()
			err = chatB.closed(5 * time.Second)
			if st := websocket.CloseStatus(err); st != api.StatusSessionEnded || !strings.Contains(err.Error(), "session expired") {
				t.Fatalf("after expiry: %v (status %d), want %d \"session expired\"", err, st, api.StatusSessionEnded)
			}
			t.Logf("closed %s after expiry", time.Since(start).Round(time.Millisecond))
			if err := chatB.call("chat.history", hist); err == nil {
				t.Fatal("chat.history still works on the socket of an expired session")
			}
			var ae *api.Error
			if _, err := b.Me(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
				t.Fatalf("me with an expired session: %v", err)
			}
			// A socket opened just before its session expires is closed too.
			cc := env.Client()
			if err := cc.RequestLink(ctx, "admin@example.org"); err != nil {
				t.Fatal(err)
			}
			if _, err := cc.Verify(ctx, env.LinkFor("admin@example.org"), ""); err != nil {
				t.Fatal(err)
			}
			clock.Set(env.Cfg.SessionTTL - 3*time.Second) // the store dates sessions by the real clock
			chatC := openChat(t, env, cc)
			err = chatC.closed(8 * time.Second)
			if st := websocket.CloseStatus(err); st != api.StatusSessionEnded || !strings.Contains(err.Error(), "session expired") {
				t.Fatalf("socket opened just before expiry: %v (status %d)", err, st)
			}
		})
	}
}

// TestSocketEndsWithSessionWhileAgentPaused: logout closes a chat socket
// at once also while its container is paused (a paused container cannot
// answer a close handshake, which must not delay the browser's close).
func TestSocketEndsWithSessionWhileAgentPaused(t *testing.T) {
	for _, mode := range deployModes {
		t.Run(mode.name, func(t *testing.T) {
			env := mode.new(t)
			ctx := context.Background()
			a := provisioned(t, env)
			me, err := a.Me(ctx)
			if err != nil {
				t.Fatal(err)
			}
			chat := openChat(t, env, a)
			if err := chat.call("chat.history", map[string]any{"sessionKey": "main", "limit": 10}); err != nil {
				t.Fatal(err)
			}
			if err := a.AdminAction(ctx, me.ID, "pause"); err != nil {
				t.Fatal(err)
			}
			if err := a.Logout(ctx); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = chat.closed(10 * time.Second)
			took := time.Since(start)
			if st := websocket.CloseStatus(err); st != api.StatusSessionEnded {
				t.Fatalf("after logout: %v (status %d), want %d", err, st, api.StatusSessionEnded)
			}
			t.Logf("closed %s after logout with the container paused", took.Round(time.Millisecond))
			if took > 2*time.Second {
				t.Fatalf("the socket closed %s after logout, want at once", took.Round(time.Millisecond))
			}
		})
	}
}
