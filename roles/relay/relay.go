package relay

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/metrics"
	"github.com/ocmt/ocmt/store"
)

// Defaults of [Options] (SPEC §7.2).
const (
	// DefaultRatePerHour is the per-sender envelope rate.
	DefaultRatePerHour = 100
	// DefaultRevocationsPerHour is the per-sender rate of revoke frames
	// (a burst of as many): room for revoking every share at once, far
	// from the 110,000 in 41 s that used to be accepted (issue 8).
	DefaultRevocationsPerHour = 300
	// DefaultEnvelopeTTL is how long an unacknowledged envelope is kept.
	DefaultEnvelopeTTL = 7 * 24 * time.Hour
	// DefaultMaxQueuedPerRecipient bounds a recipient's queue.
	DefaultMaxQueuedPerRecipient = 1000
	// DefaultMaxPayloadBytes bounds a decoded envelope payload (64 KiB).
	DefaultMaxPayloadBytes = 64 << 10
)

// Protocol constants.
const (
	// MaxClockSkew bounds |envelope ts − relay clock| and the age of a
	// revocation (SPEC §7.1: ±5 min).
	MaxClockSkew = 5 * time.Minute
	// AuthTimeout is how long a new connection has to authenticate.
	AuthTimeout = 10 * time.Second
	// WakeCooldown is the minimum time between two wake requests for the
	// same recipient.
	WakeCooldown = time.Minute
	// DefaultConnectGrace is the default Options.ConnectGrace: a woken
	// container with an unlocked vault connects within a second or two.
	DefaultConnectGrace = 10 * time.Second
	// WakeTimeout bounds one Waker.Wake call.
	WakeTimeout = 2 * time.Minute
	// sweepInterval is how often expired envelopes and idle rate-limit
	// and wake state are dropped.
	sweepInterval = time.Minute
	// writeTimeout bounds one frame write.
	writeTimeout = 10 * time.Second
	// outQueue is the per-connection buffer of frames waiting to be
	// written; a recipient whose buffer is full when a live delivery
	// arrives is disconnected (its envelopes stay queued).
	outQueue = 32
	// closeGrace bounds how long Close waits for clients to finish the
	// close handshake.
	closeGrace = 6 * time.Second
	// backlogPage is how many queued envelopes are read at a time when
	// a user connects.
	backlogPage = 32
	// preAuthReadLimit bounds frames before authentication (bytes).
	preAuthReadLimit = 4 << 10
	// issuerRecordTTL is how long the relay remembers who was seen on the
	// issuer side of a jti after its last sighting: longer than the
	// longest capability (365 days).
	issuerRecordTTL = 366 * 24 * time.Hour
)

// Directory is the public-key directory of the management role (SPEC §5.1,
// §8). In "all" mode it is called in-process; the caller adapts
// store.DirectoryEntry (parsing its "ed25519:…" text with
// crypto.ParseEd25519).
type Directory interface {
	// Ed25519Key returns the user's registered Ed25519 identity key, or
	// an error (any error, such as store.ErrNotFound, means "no key").
	Ed25519Key(ctx context.Context, userID string) (ed25519.PublicKey, error)
}

// Waker asks the agent role to wake a hibernated recipient (SPEC §4, §7.2).
type Waker interface {
	// Wake starts the user's container if it is not running. Errors are
	// logged by the relay; the envelope stays queued either way.
	Wake(ctx context.Context, userID string) error
}

// Options configure a [Server]. Zero values mean the defaults.
type Options struct {
	// Store is the relay's database (required). The Server does not close it.
	Store *store.Store
	// Directory resolves users' keys (required).
	Directory Directory
	// Waker wakes offline recipients, or nil for none.
	Waker Waker
	// Log receives metadata-only lines; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RatePerHour is the number of envelopes a sender may send per hour
	// (token bucket with a burst of the same size); 0 = DefaultRatePerHour.
	RatePerHour int
	// RevocationsPerHour is the number of revoke frames a sender may send
	// per hour (token bucket, burst of the same size);
	// 0 = DefaultRevocationsPerHour.
	RevocationsPerHour int
	// EnvelopeTTL is how long an unacknowledged envelope is kept;
	// 0 = DefaultEnvelopeTTL.
	EnvelopeTTL time.Duration
	// MaxQueuedPerRecipient bounds each recipient's queue;
	// 0 = DefaultMaxQueuedPerRecipient.
	MaxQueuedPerRecipient int
	// MaxPayloadBytes bounds decoded envelope payloads and snapshot blobs;
	// 0 = DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// ConnectGrace is how long a woken recipient has to connect before the
	// relay fails the calls (api.RelayTypeCall) queued for it;
	// 0 = DefaultConnectGrace.
	ConnectGrace time.Duration
	// Metrics, if set, counts envelopes (queued, delivered, dropped) and
	// reports the open connections.
	Metrics *metrics.Registry
}

// Server is the relay role. Make it with [New]; it is safe for concurrent use.
type Server struct {
	opt       Options
	st        *store.Store
	log       *slog.Logger
	now       func() time.Time
	readLimit int64

	base   context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // background goroutines (sweeper, wakes)
	connWG sync.WaitGroup // connection handlers

	mu     sync.Mutex
	conns  map[string]*conn // authenticated connection per user; guarded by mu
	closed bool             // guarded by mu

	limiter    *rateLimiter // envelopes per sender
	revLimiter *rateLimiter // revoke frames per sender
	revoked    *blocklist
	wakes      *wakeState
}

// New returns a relay server over opt.Store. It rebuilds the revocation
// Bloom filter from the database and starts a background sweeper of
// expired envelopes; call [Server.Close] to stop it.
func New(opt Options) (*Server, error) {
	if opt.Store == nil || opt.Directory == nil {
		return nil, errors.New("relay: Store and Directory are required")
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.RatePerHour <= 0 {
		opt.RatePerHour = DefaultRatePerHour
	}
	if opt.RevocationsPerHour <= 0 {
		opt.RevocationsPerHour = DefaultRevocationsPerHour
	}
	if opt.EnvelopeTTL <= 0 {
		opt.EnvelopeTTL = DefaultEnvelopeTTL
	}
	if opt.MaxQueuedPerRecipient <= 0 {
		opt.MaxQueuedPerRecipient = DefaultMaxQueuedPerRecipient
	}
	if opt.MaxPayloadBytes <= 0 {
		opt.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if opt.ConnectGrace <= 0 {
		opt.ConnectGrace = DefaultConnectGrace
	}
	s := &Server{
		opt:   opt,
		st:    opt.Store,
		log:   opt.Log,
		now:   opt.Now,
		conns: map[string]*conn{},
		// base64 of the payload plus the header and JSON framing.
		readLimit:  int64(opt.MaxPayloadBytes)*4/3 + 16<<10,
		limiter:    newRateLimiter(opt.RatePerHour),
		revLimiter: newRateLimiter(opt.RevocationsPerHour),
		wakes: &wakeState{last: map[string]time.Time{}, running: map[string]bool{}, again: map[string]bool{},
			conns: map[string]uint64{}, unavailable: map[string]time.Time{}},
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(s.base, time.Minute)
	defer cancel()
	var err error
	if s.revoked, err = loadBlocklist(ctx, s.st); err != nil {
		s.cancel()
		return nil, err
	}
	if opt.Metrics != nil {
		if err := opt.Metrics.RelayConnections(s.openConns); err != nil {
			s.cancel()
			return nil, fmt.Errorf("relay: metrics: %w", err)
		}
	}
	s.wg.Add(1)
	go s.sweep()
	return s, nil
}

// Close disconnects every client (1001 going away), stops background work
// and waits for it. Queued envelopes stay in the database.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(websocket.StatusGoingAway, "relay shutting down")
	}
	// Let the close handshakes finish (each is bounded by the WebSocket
	// library's own timeout), then cut whatever is left.
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeGrace):
	}
	s.cancel()
	s.connWG.Wait()
	s.wg.Wait()
	return nil
}

// Routes mounts the relay's routes on g (conventionally "/relay/v1"):
// GET /healthz and the GET /connect WebSocket (see the package
// documentation for the protocol).
func (s *Server) Routes(g *echo.Group) {
	g.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	g.GET("/connect", s.handleConnect)
}

// sweep drops expired envelopes and snapshots and idle rate-limit and wake
// state every sweepInterval until Close.
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.base.Done():
			return
		case <-t.C:
		}
		now := s.now()
		ctx, cancel := context.WithTimeout(s.base, 30*time.Second)
		n, err := s.st.DeleteExpiredEnvelopes(ctx)
		cancel()
		if err != nil {
			s.log.Error("relay sweep failed", "err", err)
		} else if n > 0 {
			s.opt.Metrics.Envelopes(metrics.EnvelopeDropped, int(n))
			s.log.Info("relay dropped expired envelopes", "count", n)
		}
		s.limiter.prune(now)
		s.revLimiter.prune(now)
		s.wakes.prune(now)
	}
}

// register makes c the user's connection and returns the one it replaces,
// or nil. It fails once the server is closed.
func (s *Server) register(c *conn) (old *conn, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	old = s.conns[c.user]
	s.conns[c.user] = c
	return old, true
}

// unregister removes c if it is still its user's connection.
func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	if s.conns[c.user] == c {
		delete(s.conns, c.user)
	}
	s.mu.Unlock()
}

// openConns counts the authenticated connections (ocmt_relay_connections).
func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// connFor returns the user's connection or nil.
func (s *Server) connFor(user string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[user]
}
