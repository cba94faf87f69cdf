package vault

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
)

// TestRelayClientDropsSilentRelay: a relay that accepts the vault and then
// stops reading (stalled, or a half-open connection) is noticed by the
// vault's pings and redialed, instead of holding a dead socket forever.
func TestRelayClientDropsSilentRelay(t *testing.T) {
	var conns atomic.Int32
	hold := make(chan struct{})
	defer close(hold)
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		conns.Add(1)
		ctx := r.Context()
		nonce := make([]byte, 32)
		rand.Read(nonce)
		if writeFrame(ctx, ws, &api.RelayFrame{Type: api.RelayFrameChallenge, Nonce: base64.RawURLEncoding.EncodeToString(nonce)}) != nil {
			return
		}
		if _, err := readFrame(ctx, ws); err != nil { // auth: accepted unseen
			return
		}
		if writeFrame(ctx, ws, &api.RelayFrame{Type: api.RelayFrameReady}) != nil {
			return
		}
		select { // then silence: nothing read, so no pong
		case <-hold:
		case <-time.After(30 * time.Second):
		}
	}))
	defer relay.Close()
	d := t.TempDir()
	s, err := New(Options{Secret: testSecret, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		DataDir: d, PublicURL: "https://ocmt.example", UserID: "usr_aliceaaaaaaaaaaaaaaaaaaaaa", RelayURL: strings.Replace(relay.URL, "http", "ws", 1)})
	if err != nil {
		t.Fatal(err)
	}
	s.relay.pingEvery, s.relay.pongWait = 200*time.Millisecond, 200*time.Millisecond
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	v := &tv{t: t, s: s, srv: srv, dir: d}
	key := make([]byte, 32)
	rand.Read(key)
	if st, body := v.do("POST", "/vault/init", map[string]string{"derivedKey": b64(key)}); st != http.StatusCreated {
		t.Fatalf("init: %d %v", st, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	waitFor(t, "a second connection after the relay went silent", 10*time.Second, func() bool { return conns.Load() >= 2 })
	t.Logf("silent relay dropped and redialed after %v (ping 200ms, pong timeout 200ms, two misses)", time.Since(start).Round(time.Millisecond))
}
