package vault

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
)

// Relay client (SPEC §7.2): while the vault is unlocked it keeps one
// authenticated WebSocket to the relay (Options.RelayURL), reconnecting
// with backoff; it disconnects when the vault locks, since it cannot open
// or seal envelopes without the identity key. The protocol is the relay
// role's (see roles/relay's package documentation; wire types in package
// api).

const (
	relayDialTimeout   = 10 * time.Second
	relaySendTimeout   = 10 * time.Second
	relayPollInterval  = 200 * time.Millisecond
	relayBackoffMin    = 250 * time.Millisecond
	relayBackoffMax    = 30 * time.Second
	relayReadLimit     = 1 << 20
	relayDedupWindow   = 30 * time.Minute
	relayMaxPayloadRaw = 64 << 10 // the relay's default MaxPayloadBytes
	// relayPingInterval and relayPongTimeout: the vault pings the relay
	// every relayPingInterval; when two pings in a row get no pong within
	// relayPongTimeout (two, because a container paused in between
	// misses one through no fault of the relay), the connection is dropped
	// and redialed, so a relay that stalled or vanished without a close
	// (a half-open TCP connection) is noticed within 2 × (interval +
	// timeout) = 60 s at most.
	relayPingInterval = 20 * time.Second
	relayPongTimeout  = 10 * time.Second
)

// errRelayUnavailable means there is no relay connection right now.
var errRelayUnavailable = errors.New("relay unavailable")

// relayRefusal is an error frame answering one of our frames. rev is the
// signed revocation a capability_revoked refusal shows, or nil: the relay
// is not trusted, so it proves something only once verified with the
// issuer key of the token it is about.
type relayRefusal struct {
	code, msg string
	rev       *capability.Revocation
}

func (e *relayRefusal) Error() string { return "relay refused: " + e.code + ": " + e.msg }

type relayClient struct {
	s   *Server
	url string

	mu       sync.Mutex
	conn     *websocket.Conn                // nil while disconnected
	waiters  map[string]chan api.RelayFrame // "id:<envelope id>" or "rev"
	seen     map[string]time.Time           // delivered envelope ids (dedup)
	revMu    sync.Mutex                     // one revoke frame in flight
	unlocked chan struct{}                  // kicked when the vault unlocks (buffered 1)
	// pingEvery and pongWait are relayPingInterval and relayPongTimeout
	// (tests shorten them before Run).
	pingEvery, pongWait time.Duration
}

func newRelayClient(s *Server, url string) *relayClient {
	return &relayClient{s: s, url: url, waiters: map[string]chan api.RelayFrame{}, seen: map[string]time.Time{},
		unlocked: make(chan struct{}, 1), pingEvery: relayPingInterval, pongWait: relayPongTimeout}
}

// kick tells run that the vault has just unlocked, so it connects now
// rather than at its next poll (a woken issuer's pending call waits on it).
func (rc *relayClient) kick() {
	select {
	case rc.unlocked <- struct{}{}:
	default:
	}
}

// connected reports whether an authenticated connection is up.
func (rc *relayClient) connected() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.conn != nil
}

// run keeps the connection up while the vault is unlocked, until ctx ends.
func (rc *relayClient) run(ctx context.Context) {
	backoff := relayBackoffMin
	for ctx.Err() == nil {
		if !rc.s.isUnlocked() {
			t := time.NewTimer(relayPollInterval)
			select {
			case <-ctx.Done():
			case <-rc.unlocked:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		start := time.Now()
		err := rc.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = relayBackoffMin
		}
		if err != nil && rc.s.isUnlocked() {
			rc.s.log.Warn("relay connection", "err", err, "retryIn", backoff)
			sleepCtx(ctx, backoff)
			backoff = min(backoff*2, relayBackoffMax)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func readFrame(ctx context.Context, ws *websocket.Conn) (api.RelayFrame, error) {
	var f api.RelayFrame
	typ, b, err := ws.Read(ctx)
	if err != nil {
		return f, err
	}
	if typ != websocket.MessageText {
		return f, errors.New("binary frame from relay")
	}
	err = json.Unmarshal(b, &f)
	return f, err
}

func writeFrame(ctx context.Context, ws *websocket.Conn, f *api.RelayFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return ws.Write(ctx, websocket.MessageText, b)
}

// session dials, authenticates and serves one connection until it fails,
// the vault locks or ctx ends.
func (rc *relayClient) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dctx, dcancel := context.WithTimeout(sctx, relayDialTimeout)
	ws, _, err := websocket.Dial(dctx, rc.url, nil)
	if err != nil {
		dcancel()
		return err
	}
	defer ws.CloseNow()
	ws.SetReadLimit(relayReadLimit)
	ch, err := readFrame(dctx, ws)
	if err != nil {
		dcancel()
		return err
	}
	nonce, err := base64.RawURLEncoding.DecodeString(ch.Nonce)
	if ch.Type != api.RelayFrameChallenge || err != nil || len(nonce) != 32 {
		dcancel()
		return errors.New("relay: bad challenge")
	}
	sig, ok := rc.s.signRelayAuth(nonce)
	if !ok {
		dcancel()
		return nil // locked meanwhile
	}
	if err := writeFrame(dctx, ws, &api.RelayFrame{Type: api.RelayFrameAuth, User: rc.s.userID, Sig: base64.RawURLEncoding.EncodeToString(sig)}); err != nil {
		dcancel()
		return err
	}
	rd, err := readFrame(dctx, ws)
	dcancel()
	if err != nil {
		return err
	}
	if rd.Type != api.RelayFrameReady {
		return errors.New("relay: authentication refused: " + rd.Code)
	}
	rc.mu.Lock()
	rc.conn = ws
	rc.mu.Unlock()
	rc.s.log.Info("relay connected")
	defer func() {
		rc.mu.Lock()
		rc.conn = nil
		for k, w := range rc.waiters { // fail everything in flight
			select {
			case w <- api.RelayFrame{Type: api.RelayFrameError, Code: "disconnected"}:
			default:
			}
			delete(rc.waiters, k)
		}
		rc.mu.Unlock()
	}()
	// Disconnect when the vault locks.
	go func() {
		t := time.NewTicker(relayPollInterval)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				if !rc.s.isUnlocked() {
					rc.s.log.Info("relay disconnecting: vault locked")
					ws.Close(websocket.StatusNormalClosure, "vault locked")
					cancel()
					return
				}
			}
		}
	}()
	go rc.keepAlive(sctx, ws, cancel)
	go rc.s.relayResync(sctx)
	for {
		f, err := readFrame(sctx, ws)
		if err != nil {
			if sctx.Err() != nil {
				return nil
			}
			return err
		}
		switch f.Type {
		case api.RelayFrameDeliver:
			if f.Envelope != nil {
				env := *f.Envelope
				go rc.deliver(sctx, &env)
			}
		case api.RelayFrameAccepted, api.RelayFrameAcked:
			rc.wake("id:"+f.ID, f)
		case api.RelayFrameRevoked:
			rc.wake("rev", f)
		case api.RelayFrameError:
			switch {
			case f.ID != "":
				if !rc.wake("id:"+f.ID, f) && !rc.s.calls.failEnvelope(f.ID, f.Code, f.Message) {
					rc.s.log.Warn("relay error frame", "code", f.Code, "id", f.ID)
				}
			case len(f.Code) > 11 && f.Code[:11] == "revocation_", f.Code == "not_issuer", f.Code == "rate_limited":
				// Refusals of our revoke frame (an envelope's carry its id).
				rc.wake("rev", f)
			default:
				rc.s.log.Warn("relay error frame", "code", f.Code)
			}
		}
	}
}

// keepAlive pings the relay until ctx ends; after two missed pongs in a
// row it closes ws and calls cancel, so session returns and run redials.
func (rc *relayClient) keepAlive(ctx context.Context, ws *websocket.Conn, cancel context.CancelFunc) {
	t := time.NewTicker(rc.pingEvery)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, rc.pongWait)
		err := ws.Ping(pctx)
		pcancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			missed = 0
		default:
			if missed++; missed >= 2 {
				rc.s.log.Warn("relay stopped answering pings; reconnecting")
				ws.CloseNow()
				cancel()
				return
			}
		}
	}
}

// wake hands f to the waiter registered under key and reports whether
// there was one.
func (rc *relayClient) wake(key string, f api.RelayFrame) bool {
	rc.mu.Lock()
	w, ok := rc.waiters[key]
	delete(rc.waiters, key)
	rc.mu.Unlock()
	if ok {
		w <- f
	}
	return ok
}

// roundTrip writes f and waits for the answer registered under key.
func (rc *relayClient) roundTrip(ctx context.Context, key string, f *api.RelayFrame) (api.RelayFrame, error) {
	w := make(chan api.RelayFrame, 1)
	rc.mu.Lock()
	ws := rc.conn
	if ws == nil {
		rc.mu.Unlock()
		return api.RelayFrame{}, errRelayUnavailable
	}
	rc.waiters[key] = w
	rc.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, relaySendTimeout)
	defer cancel()
	drop := func() {
		rc.mu.Lock()
		if rc.waiters[key] == w {
			delete(rc.waiters, key)
		}
		rc.mu.Unlock()
	}
	if err := writeFrame(ctx, ws, f); err != nil {
		drop()
		return api.RelayFrame{}, errRelayUnavailable
	}
	select {
	case a := <-w:
		if a.Type == api.RelayFrameError {
			if a.Code == "disconnected" {
				return a, errRelayUnavailable
			}
			return a, &relayRefusal{code: a.Code, msg: a.Message, rev: a.Revocation}
		}
		return a, nil
	case <-ctx.Done():
		drop()
		return api.RelayFrame{}, errRelayUnavailable
	}
}

// send hands env to the relay and waits for "accepted".
func (rc *relayClient) send(ctx context.Context, env *api.RelayEnvelope) error {
	_, err := rc.roundTrip(ctx, "id:"+env.Header.ID, &api.RelayFrame{Type: api.RelayFrameSend, Envelope: env})
	return err
}

// revoke sends a signed revocation and waits for "revoked".
func (rc *relayClient) revoke(ctx context.Context, f *api.RelayFrame) error {
	rc.revMu.Lock()
	defer rc.revMu.Unlock()
	_, err := rc.roundTrip(ctx, "rev", f)
	return err
}

// deliver processes one delivered envelope (once per id) and acks it.
func (rc *relayClient) deliver(ctx context.Context, env *api.RelayEnvelope) {
	now := time.Now()
	rc.mu.Lock()
	for id, t := range rc.seen {
		if now.Sub(t) > relayDedupWindow {
			delete(rc.seen, id)
		}
	}
	_, dup := rc.seen[env.Header.ID]
	rc.seen[env.Header.ID] = now
	rc.mu.Unlock()
	if !dup {
		if !rc.s.handleEnvelope(ctx, env) {
			// Not processed (vault locked meanwhile): leave it queued at
			// the relay for the next connection.
			rc.mu.Lock()
			delete(rc.seen, env.Header.ID)
			rc.mu.Unlock()
			return
		}
	}
	rc.mu.Lock()
	ws := rc.conn
	rc.mu.Unlock()
	if ws != nil {
		wctx, cancel := context.WithTimeout(ctx, relaySendTimeout)
		writeFrame(wctx, ws, &api.RelayFrame{Type: api.RelayFrameAck, ID: env.Header.ID})
		cancel()
	}
}

// newRandomID returns 16 random bytes, base64url (22 characters): envelope,
// request and approval ids.
func newRandomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
