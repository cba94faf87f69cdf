package web

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// ProxyReportKey is the store KV key under which a running server keeps
// its ProxyReport (JSON): roles.Run clears it at start and writes it,
// `ocmt doctor` reads it.
const ProxyReportKey = "web.proxy-report"

// ProxyReportEvery is the least time between two writes of the report: a
// first problem is written at once, later ones at most this often.
const ProxyReportEvery = time.Minute

// proxyWarnEvery is the least time between two log warnings of one problem.
const proxyWarnEvery = time.Hour

// ProxyProblem names one way a request shows that the reverse proxy in
// front of an https deployment is missing or misconfigured.
type ProxyProblem string

// The problems a ProxyWatch notices, in the order doctor reports them.
const (
	// ProxyUntrustedPeer: the request came from a peer outside
	// --trusted-proxies (or none are set). Its X-Forwarded-For is ignored:
	// the peer's own address stands for the client in rate limits and
	// audit, so behind a proxy every user shares the proxy's.
	ProxyUntrustedPeer ProxyProblem = "untrusted_peer"
	// ProxyNoForwardedProto: a trusted proxy sent no X-Forwarded-Proto, so
	// nothing shows that the browser used https.
	ProxyNoForwardedProto ProxyProblem = "no_forwarded_proto"
	// ProxyPlainHTTP: a trusted proxy says the browser used plain http
	// (X-Forwarded-Proto: http) although the public URL is https.
	ProxyPlainHTTP ProxyProblem = "plain_http"
)

// ProxyProblems lists every ProxyProblem in report order.
var ProxyProblems = []ProxyProblem{ProxyUntrustedPeer, ProxyNoForwardedProto, ProxyPlainHTTP}

// ProxySighting counts the requests that showed one problem. Peers are the
// classes of the peer addresses they came from (PeerClass), never the
// addresses; nothing about the user, cookie or token is kept.
type ProxySighting struct {
	Count   int64    `json:"count"`
	FirstMS int64    `json:"first_ms"` // unix milliseconds
	LastMS  int64    `json:"last_ms"`  // unix milliseconds
	Peers   []string `json:"peers"`    // sorted, distinct
}

// ProxyReport is what a server whose public URL is https has seen of the
// proxy in front of it since it started (SinceMS): its settings then, how
// many watched requests came right, and each problem seen.
type ProxyReport struct {
	SinceMS        int64                           `json:"since_ms"` // unix milliseconds
	PublicURL      string                          `json:"public_url"`
	TrustedProxies []string                        `json:"trusted_proxies"` // CIDRs
	OK             int64                           `json:"ok"`              // as of the last write
	Problems       map[ProxyProblem]*ProxySighting `json:"problems"`
}

// ParseProxyReport decodes a report as stored under ProxyReportKey.
func ParseProxyReport(b []byte) (ProxyReport, error) {
	var r ProxyReport
	err := json.Unmarshal(b, &r)
	return r, err
}

// PeerClass names the kind of address ip is: "loopback", "private" (RFC
// 1918, RFC 4193), "link-local", "public", or "unknown" for nil.
func PeerClass(ip net.IP) string {
	switch {
	case ip == nil:
		return "unknown"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	}
	return "public"
}

// ProxyWatch notices requests to an https deployment that did not come the
// way they should: through a trusted proxy that says the browser used https
// (X-Forwarded-Proto). It counts them in memory, logs one warning per
// problem (again at most hourly) and has Run write a ProxyReport.
//
// Requests to /healthz, /livez, /readyz, /metrics and under /relay/ and
// /internal/ are not watched: monitors, user containers and other roles of
// a split deployment reach those directly, not through the proxy.
type ProxyWatch struct {
	trusted []*net.IPNet
	log     *slog.Logger
	now     func() time.Time
	kick    chan struct{}

	mu     sync.Mutex
	rep    ProxyReport                // guarded by mu
	dirty  bool                       // guarded by mu: rep changed since the last write
	warned map[ProxyProblem]time.Time // guarded by mu: last log warning
}

// NewProxyWatch returns a watch for a server with publicURL (https) behind
// the trusted proxies given; now nil = time.Now.
func NewProxyWatch(log *slog.Logger, publicURL string, trusted []*net.IPNet, now func() time.Time) *ProxyWatch {
	if now == nil {
		now = time.Now
	}
	w := &ProxyWatch{trusted: trusted, log: log, now: now, kick: make(chan struct{}, 1),
		warned: map[ProxyProblem]time.Time{}}
	w.rep = ProxyReport{SinceMS: now().UnixMilli(), PublicURL: publicURL, TrustedProxies: []string{},
		Problems: map[ProxyProblem]*ProxySighting{}}
	for _, n := range trusted {
		w.rep.TrustedProxies = append(w.rep.TrustedProxies, n.String())
	}
	return w
}

func watched(path string) bool {
	switch path {
	case "/healthz", "/livez", "/readyz", "/metrics":
		return false
	}
	return !strings.HasPrefix(path, "/relay/") && !strings.HasPrefix(path, "/internal/")
}

// Check classifies r: "" when it came right, else its problem.
func (w *ProxyWatch) Check(r *http.Request) ProxyProblem {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer := net.ParseIP(host)
	if peer == nil || !slices.ContainsFunc(w.trusted, func(n *net.IPNet) bool { return n.Contains(peer) }) {
		return ProxyUntrustedPeer
	}
	proto := r.Header.Get("X-Forwarded-Proto")
	if first, _, _ := strings.Cut(proto, ","); strings.TrimSpace(first) == "" {
		return ProxyNoForwardedProto
	} else if !strings.EqualFold(strings.TrimSpace(first), "https") {
		return ProxyPlainHTTP
	}
	return ""
}

// Middleware is echo middleware that checks every watched request.
func (w *ProxyWatch) Middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if r := c.Request(); watched(r.URL.Path) {
			w.observe(r)
		}
		return next(c)
	}
}

func (w *ProxyWatch) observe(r *http.Request) {
	p := w.Check(r)
	w.mu.Lock()
	defer w.mu.Unlock()
	if p == "" {
		w.rep.OK++
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	class := PeerClass(net.ParseIP(host))
	now := w.now()
	s := w.rep.Problems[p]
	if s == nil {
		s = &ProxySighting{FirstMS: now.UnixMilli()}
		w.rep.Problems[p] = s
	}
	s.Count++
	s.LastMS = now.UnixMilli()
	if i, found := slices.BinarySearch(s.Peers, class); !found {
		s.Peers = slices.Insert(s.Peers, i, class)
	}
	w.dirty = true
	select {
	case w.kick <- struct{}{}:
	default:
	}
	if last, ok := w.warned[p]; !ok || now.Sub(last) >= proxyWarnEvery {
		w.warned[p] = now
		w.log.Warn("request did not come through a correctly set up reverse proxy (see `ocmt doctor`)",
			"problem", string(p), "peer", class, "count", s.Count, "fix", ProxyFix(p))
	}
}

// ProxyFix says how to fix p, in one sentence for operators.
func ProxyFix(p ProxyProblem) string {
	switch p {
	case ProxyUntrustedPeer:
		return "set --trusted-proxies to the proxy's address as ocmt sees it (127.0.0.1/32 for a proxy on this host) and let users reach ocmt only through the proxy"
	case ProxyNoForwardedProto:
		return "make the proxy send X-Forwarded-Proto (nginx: proxy_set_header X-Forwarded-Proto $scheme; Caddy sends it by itself)"
	case ProxyPlainHTTP:
		return "make the proxy redirect plain http to https instead of passing it on"
	}
	return ""
}

// Report returns a copy of what the watch has seen so far.
func (w *ProxyWatch) Report() ProxyReport {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.rep
	r.TrustedProxies = slices.Clone(r.TrustedProxies)
	r.Problems = make(map[ProxyProblem]*ProxySighting, len(w.rep.Problems))
	for p, s := range w.rep.Problems {
		c := *s
		c.Peers = slices.Clone(s.Peers)
		r.Problems[p] = &c
	}
	return r
}

// Run writes the report with save whenever a problem was seen: the first
// at once, then at most every interval (0 = ProxyReportEvery), and a last
// time when ctx ends. A failed write is logged and tried again later.
func (w *ProxyWatch) Run(ctx context.Context, interval time.Duration, save func(context.Context, []byte) error) {
	if interval <= 0 {
		interval = ProxyReportEvery
	}
	flush := func(ctx context.Context) {
		w.mu.Lock()
		dirty := w.dirty
		w.dirty = false
		w.mu.Unlock()
		if !dirty {
			return
		}
		b, _ := json.Marshal(w.Report()) // plain data: cannot fail
		if err := save(ctx, b); err != nil {
			w.log.Warn("save reverse proxy report", "err", err)
			w.mu.Lock()
			w.dirty = true
			w.mu.Unlock()
		}
	}
	final := func() { flush(context.WithoutCancel(ctx)) }
	for {
		select {
		case <-ctx.Done():
			final()
			return
		case <-w.kick:
		}
		flush(ctx)
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			final()
			return
		case <-t.C:
		}
	}
}
