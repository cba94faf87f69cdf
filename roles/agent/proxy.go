package agent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/roles/web"
)

// Proxy limits.
const (
	// MaxFrameBytes bounds one WebSocket message in either direction (1 MiB).
	MaxFrameBytes = 1 << 20
	// MaxQueuedFrames bounds client messages held while the container wakes.
	MaxQueuedFrames = 256
)

// strippedHeaders never reach a container: browser credentials of the
// management role, and any forged container secret.
var strippedHeaders = []string{"Cookie", "Authorization", "X-Csrf-Token", runtime.SecretHeader, api.LifecycleHeader, "X-Forwarded-For", "X-Real-Ip"}

// Proxy implements api.Agent: it forwards r (whose URL.Path is the path
// inside the container) to the user's container, waking it first and
// injecting the per-container secret. WebSocket upgrades (web.IsWebSocket)
// are bridged message by message; messages the client sends before the
// upstream connection is open are queued (up to MaxQueuedFrames), not
// dropped. Other upgrades are not passed on: the container answers them as
// plain HTTP.
func (s *Server) Proxy(userID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !validUserID(userID) {
			writeErr(w, api.BadRequest("invalid_user", "invalid user id"))
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
	u := s.user(userID)
	u.inflight.Add(1)
	defer u.inflight.Add(-1)
	s.Touch(userID)
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
		failed, tooLarge := s.forward(w, r, userID, rec.Endpoint)
		if tooLarge {
			writeErr(w, api.E(http.StatusRequestEntityTooLarge, "too_large", "request body too large (1 MiB at most)"))
			return
		}
		if !failed {
			break
		}
		s.refresh(r.Context(), userID)
		if attempt > 0 || !retriable || r.Context().Err() != nil {
			writeErr(w, api.E(http.StatusBadGateway, "agent_unreachable", "your agent did not answer; try again in a moment"))
			return
		}
	}
	s.Touch(userID)
}

// forward proxies r to endpoint; the answer's headers are merged into w's
// (api.MergeProxiedHeader), so ours win. It reports failed, having written
// nothing, when the upstream could not be reached, and tooLarge when the
// request body broke the body limit on the way.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, userID, endpoint string) (failed, tooLarge bool) {
	target, err := url.Parse(endpoint)
	if err != nil || endpoint == "" {
		return true, false
	}
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
			resp.Header.Del("Set-Cookie")
			api.MergeProxiedHeader(w.Header(), resp.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var mbe *http.MaxBytesError
			if errors.Is(err, echo.ErrStatusRequestEntityTooLarge) || errors.As(err, &mbe) {
				tooLarge = true
				return
			}
			if !errors.Is(err, context.Canceled) {
				s.log.Warn("proxy upstream failed", "user", userID, "err", err)
			}
			failed = true
		},
	}
	rp.ServeHTTP(w, r)
	return failed, tooLarge
}

func (s *Server) proxyWebSocket(w http.ResponseWriter, r *http.Request, userID string) {
	// Origin was checked by the management role (the browser-facing side);
	// requests reach this handler in-process or with the service secret.
	client, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the client
	}
	client.SetReadLimit(MaxFrameBytes)
	// Session end hook: the management role's logout or expiry closes the client with 4401.
	defer context.AfterFunc(r.Context(), func() { closeIfSessionEnded(r.Context(), client) })()
	ctx, cancel := context.WithCancel(s.base)
	defer cancel()

	type frame struct {
		typ  websocket.MessageType
		data []byte
	}
	queue := make(chan frame, MaxQueuedFrames)
	clientDone := make(chan error, 1)
	var upstreamOpen atomic.Bool
	go func() { // client → queue
		for {
			typ, data, err := client.Read(ctx)
			if err != nil {
				clientDone <- err
				close(queue)
				return
			}
			s.Touch(userID)
			select {
			case queue <- frame{typ, data}:
				continue
			default:
			}
			if upstreamOpen.Load() { // a burst: wait for the container to take it
				select {
				case queue <- frame{typ, data}:
					continue
				case <-ctx.Done():
					clientDone <- ctx.Err()
					close(queue)
					return
				}
			}
			client.Close(websocket.StatusPolicyViolation, "too many messages while your agent wakes")
			clientDone <- errors.New("queue full")
			close(queue)
			return
		}
	}()

	wctx, wcancel := context.WithTimeout(ctx, s.opt.WakeTimeout)
	rec, err := s.Wake(wctx, userID)
	wcancel()
	if err != nil {
		client.Close(websocket.StatusTryAgainLater, closeReason(err, "your agent could not be woken"))
		return
	}
	hdr := http.Header{}
	hdr.Set(runtime.SecretHeader, s.ContainerSecret(userID))
	dial := func(endpoint string) (*websocket.Conn, error) {
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		c, _, err := websocket.Dial(dctx, strings.Replace(endpoint, "http", "ws", 1)+r.URL.RequestURI(), &websocket.DialOptions{HTTPHeader: hdr})
		return c, err
	}
	upstream, err := dial(rec.Endpoint)
	if err != nil { // the container may have vanished: refresh, wake, retry once
		s.refresh(ctx, userID)
		wctx, wcancel := context.WithTimeout(ctx, s.opt.WakeTimeout)
		rec, err = s.Wake(wctx, userID)
		wcancel()
		if err == nil {
			upstream, err = dial(rec.Endpoint)
		}
	}
	if err != nil {
		s.log.Warn("proxy websocket dial failed", "user", userID, "err", err)
		client.Close(websocket.StatusInternalError, "your agent did not accept the connection")
		return
	}
	upstream.SetReadLimit(MaxFrameBytes)
	defer upstream.CloseNow()
	upstreamOpen.Store(true)

	upDone := make(chan error, 1)
	go func() { // upstream → client
		for {
			typ, data, err := upstream.Read(ctx)
			if err != nil {
				upDone <- err
				return
			}
			if err := client.Write(ctx, typ, data); err != nil {
				upDone <- nil
				return
			}
		}
	}()
	for {
		select {
		case f, ok := <-queue:
			if !ok {
				err := <-clientDone
				status := websocket.CloseStatus(err)
				if status == -1 {
					status = websocket.StatusGoingAway
				}
				upstream.Close(status, "")
				return
			}
			// The container may have been hibernated while the socket sat idle.
			if _, err := s.Wake(ctx, userID); err != nil {
				client.Close(websocket.StatusTryAgainLater, closeReason(err, "your agent could not be woken"))
				return
			}
			if err := upstream.Write(ctx, f.typ, f.data); err != nil {
				client.Close(websocket.StatusInternalError, "your agent closed the connection")
				return
			}
		case err := <-upDone:
			if err == nil {
				return // client went away
			}
			if st := websocket.CloseStatus(err); st != -1 {
				client.Close(st, "your agent closed the connection")
			} else {
				client.Close(websocket.StatusInternalError, "lost the connection to your agent")
			}
			return
		}
	}
}

// closeIfSessionEnded closes client with api.StatusSessionEnded and the
// reason when ctx, the proxied request's context, was cancelled because
// the browser session it was opened with ended (api.SessionEndedCause: the
// management role's logout or expiry; in split mode the stream close route
// in routes.go). The bridge then winds down as for any client close.
func closeIfSessionEnded(ctx context.Context, client *websocket.Conn) {
	if e, ok := api.SessionEndedCause(ctx); ok {
		client.Close(api.StatusSessionEnded, e.Reason)
	}
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
