package relay

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/store"
)

// StatusReplaced is the close code of a connection replaced by a newer
// one of the same user.
const StatusReplaced websocket.StatusCode = 4000

// conn is one authenticated client connection. Frames to the client go
// through out to a single writer goroutine; the handler goroutine reads.
type conn struct {
	s      *Server
	ws     *websocket.Conn
	user   string
	out    chan []byte     // encoded frames waiting to be written
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	mu       sync.Mutex
	inflight map[string]struct{} // envelope ids sent and not acked; guarded by mu

	closeOnce sync.Once
}

// handleConnect serves GET /connect: the WebSocket upgrade, the
// challenge/auth handshake, then the frame loop until the client leaves,
// is replaced or the server closes.
//
// Vaults send no Origin header; a request with one comes from a web page
// (browsers always send it on WebSocket handshakes) and is refused with
// 403 origin_refused, and logged, before the upgrade.
func (s *Server) handleConnect(ec echo.Context) error {
	if o := ec.Request().Header.Get("Origin"); o != "" {
		if len(o) > 100 {
			o = o[:100]
		}
		r := ec.Request()
		s.log.Warn("origin refused", "kind", "relay", "method", r.Method, "path", r.URL.Path, "origin", o, "ip", ec.RealIP(),
			"request_id", ec.Response().Header().Get(echo.HeaderXRequestID))
		return api.Forbidden("origin_refused", "the relay takes connections from vaults, not from web pages")
	}
	ws, err := websocket.Accept(ec.Response(), ec.Request(), &websocket.AcceptOptions{InsecureSkipVerify: true}) // Origin: none, checked above
	if err != nil {
		return nil // Accept has answered the request
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.Close(websocket.StatusGoingAway, "relay shutting down")
		return nil
	}
	s.connWG.Add(1)
	s.mu.Unlock()
	defer s.connWG.Done()

	ws.SetReadLimit(preAuthReadLimit)
	user, ok := s.authenticate(ws)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithCancel(s.base)
	c := &conn{s: s, ws: ws, user: user, out: make(chan []byte, outQueue), ctx: ctx, cancel: cancel}
	defer cancel()
	old, ok := s.register(c)
	if !ok {
		ws.Close(websocket.StatusGoingAway, "relay shutting down")
		return nil
	}
	if old != nil {
		old.close(StatusReplaced, "replaced")
		s.log.Info("relay connection replaced", "user", user)
	}
	s.wakes.connected(user)
	s.log.Info("relay connected", "user", user)
	ws.SetReadLimit(s.readLimit)

	wdone := make(chan struct{})
	go func() { defer close(wdone); c.writeLoop() }()
	c.readLoop()
	s.unregister(c)
	cancel()
	<-wdone
	ws.CloseNow()
	s.log.Info("relay disconnected", "user", user)
	return nil
}

// authenticate runs the challenge/auth exchange and returns the user id.
// On failure it has sent auth_failed and closed the connection (1008).
func (s *Server) authenticate(ws *websocket.Conn) (string, bool) {
	ctx, cancel := context.WithTimeout(s.base, AuthTimeout)
	defer cancel()
	var nonce [NonceSize]byte
	rand.Read(nonce[:])
	hello, _ := json.Marshal(Frame{Type: FrameChallenge, Nonce: base64.RawURLEncoding.EncodeToString(nonce[:]), TS: s.now().UnixMilli()})
	if err := ws.Write(ctx, websocket.MessageText, hello); err != nil {
		ws.CloseNow()
		return "", false
	}
	fail := func(msg string) (string, bool) {
		b, _ := json.Marshal(Frame{Type: FrameError, Code: CodeAuthFailed, Message: msg})
		_ = ws.Write(ctx, websocket.MessageText, b)
		ws.Close(websocket.StatusPolicyViolation, "authentication failed")
		return "", false
	}
	typ, b, err := ws.Read(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return fail("authentication timed out")
		}
		ws.CloseNow()
		return "", false
	}
	var f Frame
	if typ != websocket.MessageText || json.Unmarshal(b, &f) != nil || f.Type != FrameAuth || !validUserID(f.User) {
		return fail("expected an auth frame")
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(f.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fail("authentication failed")
	}
	key, err := s.opt.Directory.Ed25519Key(ctx, f.User)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("relay directory lookup failed", "user", f.User, "err", err)
		}
		return fail("authentication failed")
	}
	if !crypto.Verify(key, AuthMessage(nonce[:], f.User), sig) {
		s.log.Info("relay auth refused", "user", f.User)
		return fail("authentication failed")
	}
	return f.User, true
}

// close closes the connection with code and reason, once, without
// blocking the caller (the close handshake waits for the client).
func (c *conn) close(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		go func() {
			c.ws.Close(code, reason)
			c.cancel()
		}()
	})
}

// readLoop handles the client's frames until the connection ends.
// Malformed frames are answered with an error frame.
func (c *conn) readLoop() {
	for {
		typ, b, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			c.sendError(CodeBadFrame, "", "frames are JSON text")
			continue
		}
		var f Frame
		if err := json.Unmarshal(b, &f); err != nil {
			c.sendError(CodeBadFrame, "", "frame is not a JSON object of the expected shape")
			continue
		}
		switch f.Type {
		case FrameSend:
			c.handleSend(&f)
		case FrameAck:
			c.handleAck(&f)
		case FrameRevoke:
			c.handleRevoke(&f)
		case FrameSnapshotPut:
			c.handleSnapshotPut(&f)
		case FrameSnapshotGet:
			c.handleSnapshotGet(&f)
		case FrameSnapshotDelete:
			c.handleSnapshotDelete(&f)
		default:
			c.sendError(CodeBadFrame, "", "unknown frame type")
		}
	}
}

// writeLoop writes "ready", then the user's queued envelopes oldest
// first, then whatever arrives on out, until the connection ends.
func (c *conn) writeLoop() {
	if !c.write(mustJSON(Frame{Type: FrameReady})) {
		return
	}
	// The backlog, in pages (a full queue of large envelopes is never
	// all in memory at once).
	var after int64
	for sent := 0; sent < c.s.opt.MaxQueuedPerRecipient; {
		ctx, cancel := context.WithTimeout(c.ctx, opTimeout)
		page, err := c.s.st.EnvelopesAfter(ctx, store.UserID(c.user), after, backlogPage)
		cancel()
		if err != nil {
			c.s.log.Error("relay backlog load failed", "user", c.user, "err", err)
			c.close(websocket.StatusInternalError, "relay storage unavailable")
			return
		}
		for i := range page {
			e := &page[i]
			after = e.Seq
			sent++
			if !c.markInflight(e.ID) {
				continue
			}
			if !c.write(mustJSON(Frame{Type: FrameDeliver, Envelope: envelopeOf(e)})) {
				return
			}
		}
		if len(page) < backlogPage {
			break
		}
	}
	for {
		select {
		case b := <-c.out:
			if !c.write(b) {
				return
			}
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *conn) write(b []byte) bool {
	ctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.cancel()
		return false
	}
	return true
}

// send queues f for the client, waiting while the queue is full (called
// from the reader: backpressure on the client's own requests).
func (c *conn) send(f *Frame) {
	select {
	case c.out <- mustJSON(*f):
	case <-c.ctx.Done():
	}
}

// sendError queues an error frame about envelope or jti id ("" if none).
func (c *conn) sendError(code, id, msg string) {
	c.send(&Frame{Type: FrameError, Code: code, ID: id, Message: msg})
}

// markInflight records that envelope id is being delivered on c and
// reports false if it already was (at-most-once per connection).
func (c *conn) markInflight(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.inflight[id]; ok {
		return false
	}
	if c.inflight == nil || len(c.inflight) > 2*c.s.opt.MaxQueuedPerRecipient {
		// Ids trimmed or expired without an ack would accumulate;
		// forgetting them risks only a duplicate delivery.
		c.inflight = map[string]struct{}{}
	}
	c.inflight[id] = struct{}{}
	return true
}

func (c *conn) unmarkInflight(id string) {
	c.mu.Lock()
	delete(c.inflight, id)
	c.mu.Unlock()
}

// push delivers an accepted envelope live, without waiting: a recipient
// whose write queue is full is disconnected (the envelope stays queued
// and is delivered when it reconnects).
func (c *conn) push(e *Envelope) {
	if !c.markInflight(e.Header.ID) {
		return
	}
	select {
	case c.out <- mustJSON(Frame{Type: FrameDeliver, Envelope: e}):
	default:
		c.unmarkInflight(e.Header.ID)
		c.s.log.Warn("relay recipient too slow, disconnecting", "user", c.user)
		c.close(websocket.StatusTryAgainLater, "too slow")
	}
}

// envelopeOf is the wire form of a queued envelope.
func envelopeOf(e *store.RelayEnvelope) *Envelope {
	return &Envelope{
		Header:  Header{ID: e.ID, From: string(e.Sender), To: string(e.Recipient), TS: e.TS.UnixMilli(), Type: e.Type, JTI: e.JTI},
		Payload: e.Payload,
	}
}

// mustJSON encodes a Frame (which cannot fail: only strings, numbers,
// byte slices and structs of them).
func mustJSON(f Frame) []byte {
	b, err := json.Marshal(f)
	if err != nil {
		panic("relay: encode frame: " + err.Error())
	}
	return b
}
