package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/metrics"
)

// Execution of capability.call envelopes in the issuer's vault (SPEC §7.1
// "Executing a capability checks", §7.3 ocmt_call_resource rules).

const (
	execTimeout = 15 * time.Second
	// providerExecTimeout replaces execTimeout for a shared model provider
	// key (resource "provider:…"): a whole, non-streamed reply of a slow
	// model takes far longer than an ordinary API call.
	providerExecTimeout = 2 * time.Minute
	execMaxBody         = 1 << 20
	execMaxRedirects    = 5
	// staleCallSlack is added to the caller's wait before a delivered call counts
	// as abandoned by its caller (clock differences, delivery time): the
	// freshness window of a call's sealed time (envelope_binding.go).
	staleCallSlack = 10 * time.Second
)

// methodOps maps an HTTP method to the permission it needs.
var methodOps = map[string]capability.Op{
	"GET": capability.OpRead, "POST": capability.OpWrite, "PUT": capability.OpWrite,
	"PATCH": capability.OpWrite, "DELETE": capability.OpDelete,
}

// checkCallPath accepts an absolute path with an optional query, without
// dot segments, fragments or anything that could change the host.
func checkCallPath(p string) error {
	bad := api.BadRequest("invalid_path", `path must be an absolute path such as "/events?from=2026-01-01"`)
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || len(p) > 2048 || strings.ContainsAny(p, "\\#\r\n\t ") {
		return bad
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return bad
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == ".." || seg == "." {
			return bad
		}
	}
	if strings.Contains(strings.ToLower(p), "%2e") || strings.Contains(strings.ToLower(p), "%2f") {
		return bad
	}
	return nil
}

// persistCounter is the capability.Counter of one issued record: calls are
// counted in the sealed record; rates (not issued by this vault yet) in
// memory.
type persistCounter struct {
	ic   *issuedCap
	rate *capability.Limiter
}

func (c persistCounter) Use(jti capability.JTI, maxCalls int, rate capability.Rate, now time.Time) error {
	if maxCalls > 0 && c.ic.Calls >= maxCalls {
		return capability.ErrBudgetExhausted
	}
	if !rate.IsZero() {
		if err := c.rate.Use(jti, 0, rate, now); err != nil {
			return err
		}
	}
	c.ic.Calls++
	return nil
}

// executeCall authorizes and runs one capability.call, then answers with a
// capability.result. A call whose sealed header is not its envelope's,
// that is stale, or whose request id has run already is dropped without
// an answer (envelope_binding.go): an answer would let whoever replays
// calls make this vault send on its own relay rate limit. Logs carry
// metadata only.
func (s *Server) executeCall(ctx context.Context, env *api.RelayEnvelope) {
	defer s.inflight.begin()() // a peer waits for it: hold the container awake (work.go)
	from, jti := env.Header.From, env.Header.JTI
	k := s.keys
	k.mu.Lock()
	if k.dek == nil {
		k.mu.Unlock()
		return
	}
	cs, err := s.loadCapsLocked()
	if err != nil {
		k.mu.Unlock()
		s.capabilityCall(metrics.CapabilityDropped)
		s.log.Error("capability call dropped: vault state unreadable", "jti", jti)
		return
	}
	ic := cs.Issued[jti]
	if ic == nil || ic.SubjectUserID != from {
		// Without the record we know no key of the sender to answer with.
		k.mu.Unlock()
		s.capabilityCall(metrics.CapabilityDropped)
		s.log.Warn("capability call dropped: unknown capability or sender is not its subject", "jti", jti, "from", from)
		return
	}
	var call callPayload
	if err := s.openBoxLocked(ic.SubjectX25519, env.Payload, &call); err != nil {
		k.mu.Unlock()
		s.capabilityCall(metrics.CapabilityDropped)
		s.log.Warn("capability call dropped: cannot open", "jti", jti, "from", from)
		return
	}
	now := time.Now()
	code := checkSealedHeader(env, &call.Header, envCall, s.userID)
	switch {
	case code != "":
	case !validRequestID(call.RequestID):
		code = codeBadRequestID
	case !fresh(call.Header.TS, now, callWindow(ic.Resource)):
		// E.g. queued while this vault was locked: the caller stopped
		// waiting long ago, so running it now would spend a call for nobody.
		code = codeStale
	default:
		pruneSeen(cs, now)
		if _, dup := ic.Seen[call.RequestID]; dup {
			code = codeReplayed
		}
	}
	if code != "" {
		k.mu.Unlock()
		s.capabilityCall(metrics.CapabilityDropped)
		s.log.Warn("capability call dropped", "code", code, "jti", jti, "from", from,
			"age", now.Sub(time.UnixMilli(call.Header.TS)).Round(time.Second))
		return
	}
	refuse := func(status int, code, msg string) {
		s.log.Info("capability call refused", "jti", jti, "from", from, "operation", call.Operation, "code", code)
		s.replyLocked(ic, resultPayload{RequestID: call.RequestID, Error: &resultError{Code: code, Message: msg}, HTTPStatus: status})
		k.mu.Unlock()
	}
	if len(ic.Seen) >= maxSeenPerCap {
		refuse(http.StatusTooManyRequests, capability.ErrRateLimited.Code(), "too many calls on this share in a short time; try again in a minute")
		return
	}
	p, err := capability.Parse(call.Token)
	if err != nil {
		refuse(http.StatusForbidden, capability.Code(err), capability.Message(err))
		return
	}
	if p.JTI().String() != jti {
		refuse(http.StatusForbidden, capability.ErrMalformed.Code(), "The request does not carry this share")
		return
	}
	op, ok := methodOps[call.Method]
	if !ok || checkCallPath(call.Path) != nil {
		refuse(http.StatusBadRequest, "invalid_request", "unsupported method or path")
		return
	}
	if call.Operation == string(capability.OpList) && call.Method == "GET" {
		op = capability.OpList
	}
	revoked := func(j capability.JTI) bool { r := cs.Issued[j.String()]; return r == nil || r.Revoked }
	err = p.Authorize(capability.Check{Self: k.id.Public().Ed25519, Audience: s.userID, Requester: parseEd(ic.SubjectEd25519),
		Operation: op, Now: s.capNow(), Revoked: revoked, Calls: persistCounter{ic: ic, rate: &s.rates}})
	if err != nil {
		refuse(http.StatusForbidden, capability.Code(err), capability.Message(err))
		return
	}
	resource := p.Claims().Resource
	in, ok := k.resourceLocked(resource)
	if !ok { // not saved: the counted call is dropped with cs
		refuse(http.StatusConflict, "resource_unavailable", "the shared resource is no longer connected")
		return
	}
	if p, ok := strings.CutPrefix(resource, providerResourcePrefix); ok { // not saved either: a refused call is not counted
		if code, msg := checkModelCall(p, k.sec.APIKeys[p].Model, &call); code != "" {
			refuse(http.StatusForbidden, code, msg)
			return
		}
	}
	ic.remember(call.RequestID, call.Header.TS)
	if err := s.saveCapsLocked(cs); err != nil { // the call is counted and remembered before it runs
		refuse(http.StatusServiceUnavailable, "internal", "the call could not be recorded")
		return
	}
	k.mu.Unlock()

	start := time.Now()
	res := s.runHTTP(ctx, resource, in, call)
	res.RequestID = call.RequestID
	if res.Error != nil {
		s.log.Info("capability call failed", "jti", jti, "from", from, "operation", op, "code", res.Error.Code, "ms", time.Since(start).Milliseconds())
	} else {
		s.log.Info("capability call", "jti", jti, "from", from, "operation", op, "status", res.Status, "size", len(res.Body), "ms", time.Since(start).Milliseconds())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dek == nil {
		return
	}
	s.replyLocked(ic, res)
}

// replyLocked seals and sends a capability.result (asynchronously). Its
// header carries no jti, so that refusals still pass a relay that revoked
// it; the sealed payload names the capability. k.mu held, unlocked.
func (s *Server) replyLocked(ic *issuedCap, res resultPayload) {
	res.JTI = ic.JTI
	env, err := s.sealEnvelopeLocked(ic.SubjectUserID, ic.SubjectX25519, envResult, "", &res)
	if err == nil && len(env.Payload) > relayMaxPayloadRaw {
		res = resultPayload{RequestID: res.RequestID, JTI: ic.JTI, Error: &resultError{Code: "result_too_large", Message: "the answer is too large to share through the relay"}, HTTPStatus: http.StatusBadGateway}
		env, err = s.sealEnvelopeLocked(ic.SubjectUserID, ic.SubjectX25519, envResult, "", &res)
	}
	if err != nil {
		s.capabilityCall(metrics.ResultError)
		s.log.Error("capability result not sealed", "jti", ic.JTI, "err", err)
		return
	}
	if res.Error != nil {
		s.capabilityCall(res.Error.Code)
	} else {
		s.capabilityCall(metrics.ResultOK)
	}
	go func() {
		if err := s.relay.send(s.base, env); err != nil {
			s.log.Warn("capability result not sent", "jti", ic.JTI, "err", err)
		}
	}()
}

// runHTTP performs the call against resource (resolved to in) with its
// credential, within execTimeoutFor(resource).
func (s *Server) runHTTP(ctx context.Context, resource string, in integration, call callPayload) resultPayload {
	fail := func(status int, code, msg string) resultPayload {
		return resultPayload{Error: &resultError{Code: code, Message: msg}, HTTPStatus: status}
	}
	base, err := url.Parse(in.BaseURL)
	if err != nil {
		return fail(http.StatusBadGateway, "resource_unavailable", "the shared resource is misconfigured")
	}
	target, err := url.Parse(strings.TrimRight(in.BaseURL, "/") + call.Path)
	if err != nil || target.Host != base.Host || target.Scheme != base.Scheme {
		return fail(http.StatusBadRequest, "invalid_request", "bad path")
	}
	var body io.Reader
	ctype := ""
	if len(call.Body) > 0 && string(call.Body) != "null" {
		var str string
		if json.Unmarshal(call.Body, &str) == nil {
			body, ctype = strings.NewReader(str), "text/plain; charset=utf-8"
		} else {
			body, ctype = bytes.NewReader(call.Body), "application/json"
		}
	}
	timeout := execTimeoutFor(resource)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, call.Method, target.String(), body)
	if err != nil {
		return fail(http.StatusBadRequest, "invalid_request", "bad request")
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("User-Agent", "ocmt-vault")
	for h, v := range in.Extra {
		req.Header.Set(h, v)
	}
	if in.AuthHeader != "" {
		req.Header.Set(in.AuthHeader, in.AuthValue)
	}
	resp, err := s.resourceClient(timeout).Do(req)
	if err != nil {
		if errors.Is(err, errTargetRefused) {
			return fail(http.StatusForbidden, "target_refused", "the shared resource's address is not allowed")
		}
		if ctx.Err() != nil {
			return fail(http.StatusGatewayTimeout, "upstream_timeout", "the shared resource did not answer in time")
		}
		return fail(http.StatusBadGateway, "upstream_error", "the shared resource could not be reached")
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, execMaxBody+1))
	if err != nil {
		return fail(http.StatusBadGateway, "upstream_error", "the shared resource's answer was cut off")
	}
	if len(b) > execMaxBody {
		return fail(http.StatusBadGateway, "result_too_large", "the shared resource's answer is over 1 MiB")
	}
	if !utf8.Valid(b) {
		return fail(http.StatusBadGateway, "binary_result", "the shared resource answered with binary data")
	}
	h := map[string]string{}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		h["Content-Type"] = ct
	}
	return resultPayload{Status: resp.StatusCode, Headers: h, Body: b}
}

var errTargetRefused = errors.New("target address refused")

// modelEndpoints is the one request a shared model provider key serves:
// the chat endpoint, as a path below the provider's API root (Anthropic's
// root is the host; OpenAI's ends in /v1).
var modelEndpoints = map[string]string{"anthropic": "/v1/messages", "openai": "/chat/completions"}

// checkModelCall limits a call on a shared model provider key to what the
// share is for: one non-streamed chat request (POST to the chat endpoint,
// no query; a JSON object; no "stream", at most one choice) on the owner's
// model when the owner set one. Batches, files, admin endpoints and the
// like would spend far more than one call of the budget. A body given as
// a JSON string holding the object is unwrapped (it is sent as JSON). It
// returns an error code and message, or "" when the call is allowed.
func checkModelCall(provider, model string, call *callPayload) (code, msg string) {
	if call.Method != http.MethodPost || call.Path != modelEndpoints[provider] {
		return "endpoint_not_allowed", "a shared model key only answers chat requests (POST " + modelEndpoints[provider] + ")"
	}
	var inner string
	if json.Unmarshal(call.Body, &inner) == nil {
		call.Body = json.RawMessage(inner)
	}
	var body struct {
		Model  *string         `json:"model"`
		Stream json.RawMessage `json:"stream"`
		N      *int            `json:"n"`
	}
	if err := json.Unmarshal(call.Body, &body); err != nil || len(call.Body) == 0 || call.Body[0] != '{' {
		return "invalid_request", "a model request must be a JSON object"
	}
	if s := string(body.Stream); s != "" && s != "false" && s != "null" {
		return "invalid_request", "a shared model key answers whole replies, not streams"
	}
	if body.N != nil && *body.N > 1 {
		return "invalid_request", "a shared model key answers one choice per request"
	}
	if model != "" && (body.Model == nil || *body.Model != model) {
		return "model_not_allowed", "this shared key is for the model " + model
	}
	return "", ""
}

// execTimeoutFor is how long the issuer's vault gives a resource to answer.
func execTimeoutFor(resource string) time.Duration {
	if strings.HasPrefix(resource, providerResourcePrefix) {
		return providerExecTimeout
	}
	return execTimeout
}

// callWait is how long a caller waits for the result of a call on
// resource: the issuer's execution time plus room for wake and relay.
func callWait(resource string) time.Duration {
	return execTimeoutFor(resource) + callTimeout - execTimeout
}

// resourceClient is the HTTP client for shared resources: no proxy, every
// resolved address checked (no loopback, private, link-local… unless
// AllowPrivateTargets), the dial pinned to a checked address, redirects
// only within the same host, the given timeout.
func (s *Server) resourceClient(timeout time.Duration) *http.Client {
	allowPrivate := s.allowPrivate
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			if err != nil {
				return nil, err
			}
			if len(ips) == 0 {
				return nil, fmt.Errorf("no address for host")
			}
			for _, ip := range ips {
				if !publicAddr(ip) && !allowPrivate.Allows(ip) {
					return nil, errTargetRefused
				}
			}
			var lastErr error
			for _, ip := range ips {
				c, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
				if err == nil {
					return c, nil
				}
				lastErr = err
			}
			return nil, lastErr
		},
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= execMaxRedirects || req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
				return http.ErrUseLastResponse
			}
			return nil
		}}
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// publicAddr reports whether ip is a globally routable unicast address.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() &&
		!ip.IsUnspecified() && !ip.IsMulticast() && !cgnat.Contains(ip) && !(ip.Is4() && ip.As4()[0] == 0)
}

// readFileSmall reads a small file under dir.
func readFileSmall(dir, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(dir, name))
}
