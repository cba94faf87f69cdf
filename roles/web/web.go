// Package web holds what every role's HTTP server shares: the echo instance
// with ocmt's error handler, security headers, body limits and request IDs,
// and small JSON helpers.
package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/ocmt/ocmt/api"
)

// CSP is the Content-Security-Policy of every page (no inline script or style).
const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'"

// ErrorCSP is the policy of error pages and API error bodies.
const ErrorCSP = "default-src 'none'; sandbox"

// MaxBodyBytes bounds request bodies on every route (1 MiB).
const MaxBodyBytes = 1 << 20

// Server timeouts. There is deliberately no http.Server ReadTimeout or
// WriteTimeout: both would cut WebSockets and long proxied answers.
const (
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout = 10 * time.Second
	// BodyReadTimeout bounds reading a request's body (at most MaxBodyBytes),
	// counted from when its handler starts; see BodyDeadline.
	BodyReadTimeout = 30 * time.Second
	// IdleTimeout closes keep-alive connections that sit idle.
	IdleTimeout = 2 * time.Minute
)

// NewServer returns the http.Server of a role serving h: headers within
// ReadHeaderTimeout, bodies within bodyDeadline (BodyDeadline; 0 =
// BodyReadTimeout), idle connections closed after IdleTimeout. Server
// errors (bad TLS handshakes, panics) go to log at level WARN.
func NewServer(h http.Handler, bodyDeadline time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           BodyDeadline(h, bodyDeadline),
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// BodyDeadline wraps h so that a client must send a request's whole body
// within d (0 = BodyReadTimeout) of the handler being called. Without it a
// client that stops half way holds the connection and its goroutine
// forever, even on requests refused without reading the body (net/http
// drains those before answering). Past the deadline, reads fail and the
// connection is closed after the answer.
//
// Only requests with a body get a deadline: net/http reads ahead in the
// background once a body has been read to its end (or at once when there is
// none), clearing the deadline as it starts; an expired deadline under that
// read would cancel the request's context while a long handler (a proxied
// chat turn) is still at work. WebSocket handshakes have no body, and
// net/http clears a hijacked connection's deadlines, so WebSockets are not
// cut either.
func BodyDeadline(h http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		d = BodyReadTimeout
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d)) // unsupported: no deadline
		}
		h.ServeHTTP(w, r)
	})
}

// New returns an echo server with ocmt's error handler and middleware:
// request IDs (a safe incoming X-Request-Id is kept, else a new one is
// made; either is sent back), panic recovery, body limit, security headers (HSTS when
// secure). log receives one line per failed request, never bodies or cookies.
//
// The client IP (rate limits, audit) is the connection's peer address;
// X-Forwarded-For is believed only from the trusted proxies given, and then
// only its last untrusted hop.
func New(log *slog.Logger, secure bool, trustedProxies ...*net.IPNet) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = echo.ExtractIPDirect()
	if len(trustedProxies) > 0 {
		opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range trustedProxies {
			opts = append(opts, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(opts...)
	}
	e.HTTPErrorHandler = ErrorHandler(log)
	e.Pre(requestID)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		log.Error("panic", "path", c.Path(), "err", err, "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		return err
	}}))
	e.Use(middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: "1M", Skipper: ownBodyLimit}))
	e.Use(SecurityHeaders(secure))
	return e
}

// ownBodyLimit skips the 1 MiB body limit for the requests whose handler
// bounds the body itself (api.BoundsOwnBody: a vault restore, up to
// api.MaxVaultBackupBytes of vault file).
func ownBodyLimit(c echo.Context) bool { return api.BoundsOwnBody(c.Request()) }

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SecurityHeaders sets CSP, nosniff, frame denial and no-referrer on every
// response, and HSTS when secure.
func SecurityHeaders(secure bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("Content-Security-Policy", CSP)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cross-Origin-Opener-Policy", "same-origin")
			if secure {
				h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
			}
			return next(c)
		}
	}
}

// ErrorHandler maps errors to SPEC §11 JSON bodies: *api.Error as is,
// echo's own errors by status, anything else a 500 with a generic message
// and the request ID (the cause is logged, not sent). Browser page routes
// may render their own error pages before returning.
func ErrorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		rid := c.Response().Header().Get(echo.HeaderXRequestID)
		var ae *api.Error
		var he *echo.HTTPError
		switch {
		case errors.As(err, &ae):
			if ae.Status >= 500 {
				log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "code", ae.Code, "err", ae.Err, "request_id", rid)
			}
		case errors.As(err, &he):
			ae = fromEcho(he)
		case errors.Is(err, context.Canceled):
			log.Info("request cancelled by client", "status", 499, "path", c.Path(), "request_id", rid)
			return
		default:
			log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err, "request_id", rid)
			ae = &api.Error{Status: http.StatusInternalServerError, Code: "internal", Msg: "something went wrong (request " + rid + ")"}
		}
		c.Response().Header().Set("Content-Security-Policy", ErrorCSP)
		c.Response().Header().Set("Cache-Control", "no-store")
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(ae.Status)
			return
		}
		_ = c.JSON(ae.Status, ae.Body())
	}
}

func fromEcho(he *echo.HTTPError) *api.Error {
	switch he.Code {
	case http.StatusNotFound:
		return api.NotFound("no such route")
	case http.StatusMethodNotAllowed:
		return api.E(he.Code, "method_not_allowed", "method not allowed on this route")
	case http.StatusRequestEntityTooLarge:
		return api.E(he.Code, "too_large", "request body too large")
	case http.StatusUnsupportedMediaType:
		return api.E(he.Code, "unsupported_media_type", "send JSON (Content-Type: application/json)")
	case http.StatusBadRequest:
		return api.BadRequest("bad_request", "malformed request")
	}
	return api.E(he.Code, strings.ReplaceAll(strings.ToLower(http.StatusText(he.Code)), " ", "_"), http.StatusText(he.Code))
}

// Bind decodes a request body into v, mapping decode errors to a 400 that
// does not quote the input. A JSON body must be one object of v's shape: a
// field v does not have is refused (400 unknown_field: a misspelt optional
// field would otherwise be ignored silently), so is trailing data. An empty
// body leaves v as it is. Other content types go through echo's binder.
func Bind(c echo.Context, v any) error {
	r := c.Request()
	if !strings.HasPrefix(r.Header.Get(echo.HeaderContentType), echo.MIMEApplicationJSON) || r.ContentLength == 0 {
		if err := (&echo.DefaultBinder{}).BindBody(c, v); err != nil {
			return bindError(err)
		}
		return nil
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			return nil
		}
		if err == nil {
			err = errors.New("trailing data")
		}
	}
	if errors.Is(err, io.EOF) {
		return nil // empty body
	}
	return bindError(err)
}

func bindError(err error) error {
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, echo.ErrStatusRequestEntityTooLarge) || errors.As(err, &mbe) ||
		errors.As(err, &he) && (he.Code == http.StatusRequestEntityTooLarge || errors.Is(he.Internal, echo.ErrStatusRequestEntityTooLarge)):
		return api.E(http.StatusRequestEntityTooLarge, "too_large", "request body too large (1 MiB at most)")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return api.BadRequest("unknown_field", "request body has a field this endpoint does not take; check the spelling")
	}
	return api.BadRequest("invalid_json", "request body is not valid JSON of the expected shape")
}

// Shutdown stops srv gracefully within timeout.
func Shutdown(srv *http.Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return srv.Shutdown(ctx)
}

// ValidEmail reports whether e is one bare email address (no display name,
// no spaces or angle brackets), at most 254 bytes, with a local part and a
// domain. It does not normalise: callers lower-case and trim first.
func ValidEmail(e string) bool {
	if len(e) > 254 || strings.ContainsAny(e, " \t\r\n<>\"") {
		return false
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e {
		return false
	}
	at := strings.LastIndex(e, "@")
	return at > 0 && at < len(e)-1
}
