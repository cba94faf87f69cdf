package relay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
)

// t0 is the fake clock's start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is an injectable, advanceable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeDir is the public-key directory: user id → Ed25519 key.
type fakeDir struct {
	mu   sync.Mutex
	keys map[string]ed25519.PublicKey
}

func (d *fakeDir) Ed25519Key(_ context.Context, user string) (ed25519.PublicKey, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k, ok := d.keys[user]
	if !ok {
		return nil, store.ErrNotFound
	}
	return k, nil
}

// fakeWaker records wake requests.
type fakeWaker struct {
	mu    sync.Mutex
	calls []string
	// onWake, or nil, runs inside Wake with the wake's number (1, 2, …);
	// set it before the first wake.
	onWake func(user string, n int)
}

func (w *fakeWaker) Wake(_ context.Context, user string) error {
	w.mu.Lock()
	w.calls = append(w.calls, user)
	n := len(w.calls)
	w.mu.Unlock()
	if w.onWake != nil {
		w.onWake(user, n)
	}
	return nil
}

func (w *fakeWaker) count(user string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, u := range w.calls {
		if u == user {
			n++
		}
	}
	return n
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// user is a test identity registered in the directory.
type user struct {
	id  string
	key *crypto.Identity
}

// env is a relay on a temp-dir SQLite behind a real HTTP server.
type env struct {
	t      testing.TB
	dbPath string
	st     *store.Store
	clock  *clock
	dir    *fakeDir
	waker  *fakeWaker
	logs   *syncBuffer
	opt    Options
	srv    *Server
	http   *httptest.Server
}

// newEnv starts a relay; edit may change its Options (Store, Directory,
// Waker, Log and Now are filled in).
func newEnv(t testing.TB, edit func(*Options)) *env {
	t.Helper()
	e := &env{
		t:      t,
		dbPath: filepath.Join(t.TempDir(), store.FileName),
		clock:  &clock{t: t0},
		dir:    &fakeDir{keys: map[string]ed25519.PublicKey{}},
		waker:  &fakeWaker{},
		logs:   &syncBuffer{},
	}
	st, err := store.Open(context.Background(), e.dbPath, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	t.Cleanup(func() { st.Close() })
	e.opt = Options{Store: st, Directory: e.dir, Waker: e.waker, Now: e.clock.Now,
		Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if edit != nil {
		edit(&e.opt)
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

// start runs a fresh Server and HTTP server over the same database.
func (e *env) start() {
	e.t.Helper()
	srv, err := New(e.opt)
	if err != nil {
		e.t.Fatal(err)
	}
	ec := web.New(e.opt.Log, false)
	srv.Routes(ec.Group("/relay/v1"))
	e.srv, e.http = srv, httptest.NewServer(ec)
}

func (e *env) stop() {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	e.http.Close()
	e.srv, e.http = nil, nil
}

// restart closes the Server and makes a new one on the same database.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

// newUser makes an identity and registers it in the directory as id.
func (e *env) newUser(id string) *user {
	e.t.Helper()
	k, err := crypto.NewIdentity()
	if err != nil {
		e.t.Fatal(err)
	}
	e.dir.mu.Lock()
	e.dir.keys[id] = k.Public().Ed25519
	e.dir.mu.Unlock()
	return &user{id: id, key: k}
}

// client is a test WebSocket client. A goroutine reads frames into in
// (a Read whose context expires would close the connection).
type client struct {
	t   testing.TB
	ws  *websocket.Conn
	in  chan []byte
	err error // why in was closed; valid after in is closed
}

// dial opens /connect without authenticating.
func (e *env) dial() *client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.http.URL, "http")+"/relay/v1/connect", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	ws.SetReadLimit(1 << 20)
	c := &client{t: e.t, ws: ws, in: make(chan []byte, 1024)}
	go func() {
		defer close(c.in)
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			c.in <- b
		}
	}()
	e.t.Cleanup(func() { ws.CloseNow() })
	return c
}

// connect dials and authenticates as u, returning after "ready".
func (e *env) connect(u *user) *client {
	e.t.Helper()
	c := e.dial()
	ch := c.expect(FrameChallenge)
	nonce, err := base64.RawURLEncoding.DecodeString(ch.Nonce)
	if err != nil || len(nonce) != NonceSize {
		e.t.Fatalf("bad challenge nonce %q", ch.Nonce)
	}
	c.write(Frame{Type: FrameAuth, User: u.id, Sig: base64.RawURLEncoding.EncodeToString(u.key.Sign(AuthMessage(nonce, u.id)))})
	c.expect(FrameReady)
	return c
}

// read returns the next frame (fails the test after 5 s).
func (c *client) read() Frame {
	c.t.Helper()
	f, err := c.tryRead(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

func (c *client) tryRead(d time.Duration) (Frame, error) {
	var b []byte
	select {
	case m, ok := <-c.in:
		if !ok {
			return Frame{}, c.err
		}
		b = m
	case <-time.After(d):
		return Frame{}, errors.New("timed out")
	}
	var f Frame
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("relay sent a non-JSON frame %q", b)
	}
	return f, nil
}

// expect reads one frame and fails unless it has type typ.
func (c *client) expect(typ string) Frame {
	c.t.Helper()
	f := c.read()
	if f.Type != typ {
		c.t.Fatalf("got frame %+v, want type %q", f, typ)
	}
	return f
}

// expectError reads one frame and fails unless it is an error with code.
func (c *client) expectError(code string) Frame {
	c.t.Helper()
	f := c.expect(FrameError)
	if f.Code != code {
		c.t.Fatalf("got error %q (%s), want %q", f.Code, f.Message, code)
	}
	return f
}

// expectNothing fails if a frame arrives within d.
func (c *client) expectNothing(d time.Duration) {
	c.t.Helper()
	if f, err := c.tryRead(d); err == nil {
		c.t.Fatalf("unexpected frame %+v", f)
	}
}

func (c *client) write(f any) {
	c.t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		c.t.Fatal(err)
	}
	c.writeRaw(websocket.MessageText, b)
}

func (c *client) writeRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, typ, b); err != nil {
		c.t.Fatalf("write frame: %v", err)
	}
}

// newID returns a random envelope id / jti text.
func newID() string {
	var b [IDSize]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// seal returns an envelope from → to carrying plaintext sealed to to's
// X25519 key, dated now.
func seal(t testing.TB, from, to *user, plaintext []byte, now time.Time) Envelope {
	t.Helper()
	pub := to.key.Public().X25519
	box, err := from.key.SealBox(&pub, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return Envelope{
		Header:  Header{ID: newID(), From: from.id, To: to.id, TS: now.UnixMilli(), Type: "test.message"},
		Payload: box,
	}
}

// send sends e and waits for "accepted".
func (c *client) send(e Envelope) {
	c.t.Helper()
	c.write(Frame{Type: FrameSend, Envelope: &e})
	f := c.read()
	if f.Type != FrameAccepted || f.ID != e.Header.ID {
		c.t.Fatalf("send: got %+v, want accepted %s", f, e.Header.ID)
	}
}

// queued returns how many envelopes the store holds for u.
func (e *env) queued(u *user) int {
	e.t.Helper()
	n, err := e.st.CountQueued(context.Background(), store.UserID(u.id))
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// eventually polls cond for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
