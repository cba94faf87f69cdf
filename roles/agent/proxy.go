package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
)

// Proxy limits and keep-alive.
const (
	// MaxFrameBytes bounds one WebSocket message in either direction (1 MiB).
	MaxFrameBytes = 1 << 20
	// MaxQueuedFrames bounds client messages held while the container wakes.
	MaxQueuedFrames = 256
	// DefaultPingInterval is how often the proxy pings both ends of a
	// proxied WebSocket (Options.PingInterval), and DefaultPongTimeout how
	// long a pong may take (Options.PongTimeout). A browser that misses a
	// pong (gone, asleep, or no longer reading) is disconnected at once, so
	// within PingInterval + PongTimeout = 15 s of its last sign of life; a
	// write to either end may take 2 × PongTimeout = 10 s. A container that
	// misses a pong is checked with the engine (upstreamSilent): one paused
	// behind ocmt's back is recorded as paused and woken if a message of
	// the browser waits for its answer; one that runs but does not answer
	// is disconnected (1011) so the browser reconnects.
	DefaultPingInterval = 10 * time.Second
	DefaultPongTimeout  = 5 * time.Second
	// stallCheckAfter: a proxied HTTP request whose answer has not started
	// after this long has its container checked with the engine, and again
	// after each further stallCheckAfter (watchStall).
	stallCheckAfter = 3 * time.Second
)

// strippedHeaders never reach a container: browser credentials of the
// management role, and any forged container secret.
var strippedHeaders = []string{"Cookie", "Authorization", "X-Csrf-Token", runtime.SecretHeader, api.LifecycleHeader, "X-Forwarded-For", "X-Real-Ip"}

// Proxy implements api.Agent: it forwards r (whose URL.Path is the path
// inside the container) to the user's container, waking it first and
// injecting the per-container secret.
//
// Polls (pollRequest: GET /vault/status, which pages repeat on a timer) are
// not activity and do not wake a sleeping container: for a paused or
// stopped one the agent role answers itself with 200
// {"sleeping":true,"state":"paused"|"stopped"}.
//
// WebSocket upgrades (web.IsWebSocket) are bridged message by message;
// messages the client sends before the upstream connection is open are
// queued (up to MaxQueuedFrames), not dropped. Both ends are pinged (see
// DefaultPingInterval); a close code and reason from either end reach the
// other, except when ocmt stopped the container for hibernation: then the
// browser gets api.CloseAgentAsleep. When r's context ends while the socket is open (the management
// role ends it when the session ends), the browser's socket is closed with
// the code and reason of context.Cause(r.Context()) if that is a
// websocket.CloseError, else with 1001. Other upgrades are not passed on:
// the container answers them as plain HTTP.
func (s *Server) Proxy(userID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !validUserID(userID) {
			writeErr(w, api.InvalidUserID())
			return
		}
		if internalPath(r.URL) {
			writeErr(w, api.NotFound("not found"))
			return
		}
		if web.IsWebSocket(r) {
			s.proxyWebSocket(w, r, userID)
			return
		}
		s.proxyHTTP(w, r, userID)
	})
}

// pollRequest reports whether r is a status poll that pages send on a
// timer (ui/static/vault.js: GET /vault/status every 60 s): not activity,
// and not a reason to wake a sleeping container.
func pollRequest(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && path.Clean("/"+r.URL.Path) == "/vault/status"
}

// SleepingStatus is the agent role's own answer to a poll (pollRequest)
// of a container that is not running.
type SleepingStatus struct {
	Sleeping bool   `json:"sleeping"` // always true
	State    string `json:"state"`    // api.StatePaused or api.StateStopped
}

func writeSleeping(w http.ResponseWriter, state string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = jsonEncode(w, SleepingStatus{Sleeping: true, State: state})
}

// internalPath reports whether u names the container's lifecycle endpoints
// (/internal/…), which only the agent role itself calls. Both the decoded
// and the raw path are checked after cleaning, so "//internal",
// "/a/../internal" and "/%69nternal" are caught too.
func internalPath(u *url.URL) bool {
	for _, p := range []string{u.Path, u.EscapedPath()} {
		if dec, err := url.PathUnescape(p); err == nil {
			p = dec
		}
		c := strings.ToLower(path.Clean("/" + p))
		if c == "/internal" || strings.HasPrefix(c, "/internal/") {
			return true
		}
	}
	return false
}

func writeErr(w http.ResponseWriter, err error) {
	ae, ok := api.AsError(err)
	if !ok {
		ae = api.E(http.StatusBadGateway, "agent_unreachable", "your agent could not be reached")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(ae.Status)
	_ = jsonEncode(w, ae.Body())
}

func (s *Server) proxyHTTP(w http.ResponseWriter, r *http.Request, userID string) {
	poll := pollRequest(r)
	if poll {
		rec, err := s.st.ContainerByUser(r.Context(), store.UserID(userID))
		if err == nil && (rec.State == store.StatePaused || rec.State == store.StateStopped) {
			writeSleeping(w, rec.State)
			return
		}
	} else {
		u := s.user(userID)
		u.inflight.Add(1)
		defer u.inflight.Add(-1)
		s.Touch(userID)
	}
	// A container can vanish or die behind our back (engine restart, OOM,
	// someone's docker rm): when the upstream refuses the connection, the
	// record is refreshed from the engine and a bodiless request is retried
	// once after waking the container again.
	retriable := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && (r.Method == http.MethodGet || r.Method == http.MethodHead)
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(r.Context(), s.opt.WakeTimeout)
		rec, err := s.Wake(ctx, userID)
		cancel()
		if err != nil {
			writeErr(w, err)
			return
		}
		res := s.forward(w, r, userID, rec.Endpoint, poll)
		switch {
		case res.tooLarge:
			writeErr(w, api.E(http.StatusRequestEntityTooLarge, "too_large", "request body too large (1 MiB at most)"))
			return
		case res.slept:
			writeSleeping(w, store.StatePaused)
			return
		}
		if !res.failed {
			break
		}
		s.refresh(r.Context(), userID)
		if attempt > 0 || !retriable || r.Context().Err() != nil {
			writeErr(w, api.E(http.StatusBadGateway, "agent_unreachable", "your agent did not answer; try again in a moment"))
			return
		}
	}
	if !poll {
		s.Touch(userID)
	}
}

// forwardResult says how forward went.
type forwardResult struct {
	failed   bool // the upstream could not be reached; nothing was written
	tooLarge bool // the request body broke the body limit; nothing was written
	slept    bool // a poll found its container paused behind our back; nothing was written
}

// forward proxies r to endpoint; the answer's headers are merged into w's
// (api.MergeProxiedHeader), so ours win. While the answer has not started,
// watchStall checks the container with the engine: paused behind our back,
// it is woken for a request, or the poll is given up (slept).
func (s *Server) forward(w http.ResponseWriter, r *http.Request, userID, endpoint string, poll bool) (res forwardResult) {
	target, err := url.Parse(endpoint)
	if err != nil || endpoint == "" {
		return forwardResult{failed: true}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	answered := make(chan struct{})
	var answerOnce sync.Once
	markAnswered := func() { answerOnce.Do(func() { close(answered) }) }
	defer markAnswered()
	var slept atomic.Bool
	go s.watchStall(ctx, userID, answered, func() bool {
		if poll { // a poll does not wake it: give up and answer "sleeping"
			slept.Store(true)
			cancel()
			return false
		}
		return true
	})
	secret := s.ContainerSecret(userID)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
			pr.Out.Host = target.Host
			for _, h := range strippedHeaders {
				pr.Out.Header.Del(h)
			}
			web.DropUpgrade(pr.Out.Header) // WebSockets do not come here; no other protocol goes through
			pr.Out.Header.Set(runtime.SecretHeader, secret)
		},
		ModifyResponse: func(resp *http.Response) error { // upgrades (split mode) too
			markAnswered()
			resp.Header.Del("Set-Cookie")
			api.MergeProxiedHeader(w.Header(), resp.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var mbe *http.MaxBytesError
			switch {
			case slept.Load():
				res.slept = true
			case errors.Is(err, echo.ErrStatusRequestEntityTooLarge) || errors.As(err, &mbe):
				res.tooLarge = true
			default:
				if !errors.Is(err, context.Canceled) {
					s.log.Warn("proxy upstream failed", "user", userID, "err", err)
				}
				res.failed = true
			}
		},
	}
	rp.ServeHTTP(w, r.WithContext(ctx))
	return res
}

// watchStall waits for the answer to a proxied request (answered closed)
// and, every stallCheckAfter without one, asks the engine about the
// container (refresh): a record that said running for a container paused
// behind our back is corrected, and a paused container is woken if
// onPaused says so, so the request sitting in its socket gets answered.
func (s *Server) watchStall(ctx context.Context, userID string, answered <-chan struct{}, onPaused func() (wake bool)) {
	t := time.NewTimer(stallCheckAfter)
	defer t.Stop()
	for {
		select {
		case <-answered:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The request went to a running container; a paused one now was
		// paused behind our back (noticed here or by another check), or
		// hibernated under a poll, which does not hold it awake.
		s.refresh(ctx, userID)
		rec, err := s.st.ContainerByUser(ctx, store.UserID(userID))
		if err == nil && rec.State == store.StatePaused && onPaused() {
			wctx, cancel := context.WithTimeout(ctx, s.opt.WakeTimeout)
			if _, err := s.Wake(wctx, userID); err != nil {
				s.log.Warn("wake of a container paused outside ocmt failed", "user", userID, "err", err)
			}
			cancel()
		}
		t.Reset(stallCheckAfter)
	}
}

// wsFrame is one message on its way from the browser to the container.
type wsFrame struct {
	typ  websocket.MessageType
	data []byte
}

// wsBridge is one proxied WebSocket: the browser's socket (client) and the
// container's (upstream).
type wsBridge struct {
	s        *Server
	userID   string
	client   *websocket.Conn
	upstream *websocket.Conn // nil until dialed
	// rw carries every read, write and ping; it ends with the handler.
	rw context.Context
	// sentAt and heardAt are the unix ns of the last message written to
	// and read from the container: sentAt > heardAt means a message waits
	// for its answer.
	sentAt, heardAt atomic.Int64
	// wokeFor is the sentAt of the message for which upstreamSilent last
	// woke the container.
	wokeFor atomic.Int64
}

func (s *Server) writeTimeout() time.Duration { return 2 * s.opt.PongTimeout }

func (s *Server) proxyWebSocket(w http.ResponseWriter, r *http.Request, userID string) {
	// Origin was checked by the management role (the browser-facing side);
	// requests reach this handler in-process or with the service secret.
	client, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the client
	}
	client.SetReadLimit(MaxFrameBytes)
	defer client.CloseNow()
	rw, endRW := context.WithCancel(context.Background())
	defer endRW()
	// life ends early when the server stops or r's context ends; its cause
	// may say how to close the browser's socket (see Proxy).
	life, endLife := context.WithCancelCause(s.base)
	defer endLife(nil)
	defer context.AfterFunc(r.Context(), func() { endLife(context.Cause(r.Context())) })()
	b := &wsBridge{s: s, userID: userID, client: client, rw: rw}

	// client → queue. A read error (the browser closed, went away, or was
	// closed by us) closes queue after setting clientErr.
	queue := make(chan wsFrame, MaxQueuedFrames)
	var clientErr error
	var upstreamOpen atomic.Bool
	go func() {
		defer close(queue)
		for {
			typ, data, err := client.Read(rw)
			if err != nil {
				clientErr = err
				return
			}
			s.Touch(userID)
			select {
			case queue <- wsFrame{typ, data}:
				continue
			default:
			}
			if upstreamOpen.Load() { // a burst: wait for the container to take it
				select {
				case queue <- wsFrame{typ, data}:
					continue
				case <-rw.Done():
					clientErr = rw.Err()
					return
				}
			}
			client.Close(websocket.StatusPolicyViolation, "too many messages while your agent wakes")
			clientErr = errors.New("queue full")
			return
		}
	}()
	// A browser that stops answering pings is cut off at once: no close
	// handshake with a peer that does not read.
	go pingLoop(rw, client, s.opt.PingInterval, s.opt.PongTimeout, func() bool {
		s.log.Info("proxy websocket: the browser stopped answering; closing", "user", userID)
		client.CloseNow()
		return true
	})

	// The record may be stale (a container paused, unpaused or removed
	// behind our back): ask the engine before trusting it.
	wctx, wcancel := context.WithTimeout(life, s.opt.WakeTimeout)
	rec, err := s.WakeChecked(wctx, userID)
	wcancel()
	if err != nil {
		b.closeClient(life, websocket.StatusTryAgainLater, closeReason(err, "your agent could not be woken"))
		return
	}
	hdr := http.Header{}
	hdr.Set(runtime.SecretHeader, s.ContainerSecret(userID))
	dial := func(endpoint string) (*websocket.Conn, error) {
		dctx, dcancel := context.WithTimeout(life, 10*time.Second)
		defer dcancel()
		c, _, err := websocket.Dial(dctx, strings.Replace(endpoint, "http", "ws", 1)+r.URL.RequestURI(), &websocket.DialOptions{HTTPHeader: hdr})
		return c, err
	}
	upstream, err := dial(rec.Endpoint)
	if err != nil { // the container may have vanished: refresh, wake, retry once
		s.refresh(life, userID)
		wctx, wcancel := context.WithTimeout(life, s.opt.WakeTimeout)
		rec, err = s.Wake(wctx, userID)
		wcancel()
		if err == nil {
			upstream, err = dial(rec.Endpoint)
		}
	}
	if err != nil {
		s.log.Warn("proxy websocket dial failed", "user", userID, "err", err)
		b.closeClient(life, websocket.StatusInternalError, "your agent did not accept the connection")
		return
	}
	upstream.SetReadLimit(MaxFrameBytes)
	defer upstream.CloseNow()
	b.upstream = upstream
	upstreamOpen.Store(true)

	// upstream → client.
	upDone := make(chan error, 1)
	go func() {
		for {
			typ, data, err := upstream.Read(rw)
			if err != nil {
				upDone <- err
				return
			}
			b.heardAt.Store(time.Now().UnixNano())
			wctx, cancel := context.WithTimeout(rw, s.writeTimeout())
			err = client.Write(wctx, typ, data)
			cancel()
			if err != nil { // the client's reader sees the closed socket
				client.CloseNow()
				return
			}
		}
	}()
	upDead := make(chan struct{}, 1)
	chat := path.Clean("/"+r.URL.Path) == "/chat"
	go pingLoop(rw, upstream, s.opt.PingInterval, s.opt.PongTimeout, func() bool {
		// A message that waits for its answer wakes a paused container
		// once (an upstream that never answers it must not keep waking it).
		sent := b.sentAt.Load()
		awaiting := sent > b.heardAt.Load() && sent != b.wokeFor.Load()
		switch s.upstreamSilent(life, userID, awaiting) {
		case upstreamDead:
			upDead <- struct{}{}
			return true
		case upstreamWoken:
			b.wokeFor.Store(sent)
		case upstreamAsleep:
			if chat {
				b.sleepingTick()
			}
		}
		return false
	})

	for {
		select {
		case f, ok := <-queue:
			if !ok { // the browser's side ended: tell the container how
				code, reason := websocket.StatusGoingAway, ""
				var ce websocket.CloseError
				if errors.As(clientErr, &ce) {
					code, reason = ce.Code, ce.Reason
				}
				b.closeUpstream(code, reason)
				return
			}
			// The container may have been hibernated while the socket sat idle.
			if _, err := s.Wake(life, userID); err != nil {
				b.closeClient(life, websocket.StatusTryAgainLater, closeReason(err, "your agent could not be woken"))
				return
			}
			b.sentAt.Store(time.Now().UnixNano())
			wctx, cancel := context.WithTimeout(rw, s.writeTimeout())
			err := upstream.Write(wctx, f.typ, f.data)
			cancel()
			if err != nil {
				s.log.Warn("proxy websocket: write to the container failed", "user", userID, "err", err)
				b.closeClient(life, websocket.StatusInternalError, "your agent stopped answering")
				return
			}
		case err := <-upDone: // the container's side ended: tell the browser how
			var ce websocket.CloseError
			if s.stoppedForHibernation(userID) {
				b.closeClient(life, api.CloseAgentAsleep, "your agent is asleep; it wakes when you send a message")
			} else if errors.As(err, &ce) {
				b.closeClient(life, ce.Code, ce.Reason)
			} else {
				b.closeClient(life, websocket.StatusInternalError, "lost the connection to your agent")
			}
			return
		case <-upDead:
			s.log.Warn("proxy websocket: the container stopped answering; closing", "user", userID)
			upstream.CloseNow()
			b.closeClient(life, websocket.StatusInternalError, "your agent stopped answering")
			return
		case <-life.Done():
			// The browser first: a paused container cannot answer a close
			// handshake, and closeUpstream waits for one (up to 5 s).
			b.closeClient(life, websocket.StatusGoingAway, "the server is going away")
			b.closeUpstream(websocket.StatusGoingAway, "")
			return
		}
	}
}

// sleepingTick sends the browser a chat "tick" event (SPEC §5.5) on behalf
// of a sleeping container, {"type":"event","event":"tick","payload":{"ts":
// unix ms,"sleeping":true}}: a chat client's keep-alive watchdog expects a
// tick every tickIntervalMs and would otherwise drop and redial the socket,
// and every redial would wake the container it is watching sleep.
func (b *wsBridge) sleepingTick() {
	msg, _ := json.Marshal(map[string]any{"type": "event", "event": "tick", "payload": map[string]any{"ts": time.Now().UnixMilli(), "sleeping": true}})
	ctx, cancel := context.WithTimeout(b.rw, b.s.writeTimeout())
	defer cancel()
	if err := b.client.Write(ctx, websocket.MessageText, msg); err != nil {
		b.client.CloseNow()
	}
}

// closeClient closes the browser's socket with code and reason, unless
// life has ended with a cause that says how to close it, whose code and
// reason win: an *api.SessionEnded (the management role's logout or
// expiry, or in split mode the stream close route in routes.go) closes
// with api.StatusSessionEnded, a websocket.CloseError with its own.
func (b *wsBridge) closeClient(life context.Context, code websocket.StatusCode, reason string) {
	var ce websocket.CloseError
	if e, ok := api.SessionEndedCause(life); ok {
		code, reason = api.StatusSessionEnded, e.Reason
	} else if life.Err() != nil && errors.As(context.Cause(life), &ce) {
		code, reason = ce.Code, ce.Reason
	}
	b.client.Close(code, reason)
}

// closeUpstream closes the container's socket (code 1005 is sent as a
// close frame without a status, as the browser sent it).
func (b *wsBridge) closeUpstream(code websocket.StatusCode, reason string) {
	if b.upstream != nil {
		b.upstream.Close(code, reason)
	}
}

// pingLoop pings c every interval until ctx ends or c closes; a pong that
// does not come within timeout calls missed, which returns true to stop.
// A ping needs a concurrent reader of c.
func pingLoop(ctx context.Context, c *websocket.Conn, interval, timeout time.Duration, missed func() (stop bool)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.Ping(pctx)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil || errors.Is(err, net.ErrClosed):
			return
		default:
			if missed() {
				return
			}
		}
	}
}

// stoppedForHibernation reports whether the record says ocmt stopped
// the user's container (after waiting for a stop under way to be recorded).
func (s *Server) stoppedForHibernation(userID string) bool {
	u := s.user(userID)
	u.op.Lock()
	//lint:ignore SA2001 waiting for the lock is the point
	u.op.Unlock()
	rec, err := s.st.ContainerByUser(s.base, store.UserID(userID))
	return err == nil && rec.State == store.StateStopped
}

// What a container that missed a pong is (upstreamSilent).
const (
	upstreamAsleep = iota // paused (by ocmt, or behind its back); the next message wakes it
	upstreamWoken         // was paused behind ocmt's back with a message waiting; woken
	upstreamDead          // runs but does not answer, stopped, or could not be woken
)

// upstreamSilent decides what a container that missed a pong means. One
// paused behind ocmt's back is recorded as paused (if no sweep did so
// already). A paused container is woken if awaiting (a message of the
// browser waits for its answer), else it is asleep. One the engine says
// runs but that does not answer, or that stopped, is dead.
func (s *Server) upstreamSilent(ctx context.Context, userID string, awaiting bool) int {
	u := s.user(userID)
	// Let a lifecycle operation under way (a hibernation) finish first.
	u.op.Lock()
	//lint:ignore SA2001 waiting for the lock is the point
	u.op.Unlock()
	rec, err := s.st.ContainerByUser(ctx, store.UserID(userID))
	if err != nil {
		return upstreamAsleep // cannot tell; ask again at the next ping
	}
	if rec.State == store.StateRunning {
		if !s.refresh(ctx, userID) {
			return upstreamDead // the engine says it runs: it is stuck
		}
		if rec, err = s.st.ContainerByUser(ctx, store.UserID(userID)); err != nil {
			return upstreamAsleep
		}
	}
	if rec.State != store.StatePaused {
		return upstreamDead // stopped, gone, or moved
	}
	if !awaiting {
		return upstreamAsleep
	}
	wctx, cancel := context.WithTimeout(ctx, s.opt.WakeTimeout)
	defer cancel()
	if _, err := s.Wake(wctx, userID); err != nil {
		return upstreamDead
	}
	return upstreamWoken
}

// closeReason keeps WebSocket close reasons under the 123-byte limit.
func closeReason(err error, fallback string) string {
	msg := fallback
	if ae, ok := api.AsError(err); ok {
		msg = ae.Msg
	}
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}
