// Package metrics defines every Prometheus metric ocmt exports, once, on a
// per-process registry (never the global default registry: tests run
// several servers in one process).
//
// Names follow the Prometheus naming conventions
// (https://prometheus.io/docs/practices/naming/): the "ocmt_" prefix, base
// units in the name ("_seconds"), "_total" on counters. Labels hold only
// small fixed sets (route templates, status codes, states, results); never a
// user id, an email address, an IP address, a token or a path with ids.
//
// The typed helpers (Wake, Hibernated, …) may be called on a nil *Registry:
// they do nothing, so roles built without metrics (tests) need no checks.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Label values of the counters below.
const (
	ResultOK    = "ok"
	ResultError = "error"

	HibernatePause = "pause"
	HibernateStop  = "stop"

	// CapabilityDropped is the result of a capability call a vault dropped
	// unanswered (unknown capability, unreadable, stale or replayed).
	CapabilityDropped = "dropped"

	EnvelopeQueued    = "queued"    // accepted by the relay and stored for its recipient
	EnvelopeDelivered = "delivered" // acknowledged by its recipient and deleted
	EnvelopeDropped   = "dropped"   // deleted undelivered: expired, or over the recipient's queue cap
)

// latencyBuckets are the HTTP latency buckets, in seconds (5 ms … 60 s; a
// proxied chat turn or a wake can take tens of seconds).
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// wakeBuckets are the wake latency buckets, in seconds (10 ms unpause …
// 60 s, the default wake timeout).
var wakeBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 20, 30, 60}

// Registry is one process's metrics: the registry and every metric on it.
type Registry struct {
	reg *prometheus.Registry

	httpRequests        *prometheus.CounterVec   // route, method, code
	httpDuration        *prometheus.HistogramVec // route
	wakes               *prometheus.CounterVec   // from, result
	wakeDuration        *prometheus.HistogramVec // from
	hibernations        *prometheus.CounterVec   // action
	relayEnvelopes      *prometheus.CounterVec   // event
	capabilityCalls     *prometheus.CounterVec   // result
	vaultUnlockFailures prometheus.Counter

	capMu      sync.Mutex
	capResults map[string]bool // result labels of capabilityCalls in use; guarded by capMu
}

// New returns a Registry with every ocmt metric, the Go runtime and process
// collectors, and extra (e.g. the mail outbox, which reports its own
// ocmt_mail_* metrics). It panics if extra collides with a metric already
// registered (a programming error, as with prometheus.MustRegister).
func New(extra ...prometheus.Collector) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocmt_http_requests_total",
		Help: "HTTP requests answered, by route template (\"unmatched\" for no route), method and status code.",
	}, []string{"route", "method", "code"})
	r.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ocmt_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route template. WebSockets count until they close.",
		Buckets: latencyBuckets,
	}, []string{"route"})
	r.wakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocmt_wakes_total",
		Help: "Containers woken, by the state woken from (paused, stopped, error, running) and result (ok, error).",
	}, []string{"from", "result"})
	r.wakeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ocmt_wake_duration_seconds",
		Help:    "Time to wake a container until its vault answers, by the state woken from; failed wakes included.",
		Buckets: wakeBuckets,
	}, []string{"from"})
	r.hibernations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocmt_hibernations_total",
		Help: "Idle containers hibernated, by action (pause, stop).",
	}, []string{"action"})
	r.relayEnvelopes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocmt_relay_envelopes_total",
		Help: "Relay envelopes by event: queued (accepted), delivered (acknowledged by the recipient), dropped (expired or over the queue cap).",
	}, []string{"event"})
	r.capabilityCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocmt_capability_calls_total",
		Help: "Capability calls answered by vaults for other users, by result (ok, dropped, or the error code sent back). The agent role reports all its vaults.",
	}, []string{"result"})
	r.vaultUnlockFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ocmt_vault_unlock_failures_total",
		Help: "Vault unlock attempts refused (wrong password or proof), as answered through the agent proxy.",
	})
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.httpRequests, r.httpDuration, r.wakes, r.wakeDuration, r.hibernations,
		r.relayEnvelopes, r.capabilityCalls, r.vaultUnlockFailures,
	)
	// Known label values start at 0, so rate() and absent() work before
	// the first event.
	for _, from := range []string{"paused", "stopped", "error", "running"} {
		r.wakeDuration.WithLabelValues(from)
		for _, res := range []string{ResultOK, ResultError} {
			r.wakes.WithLabelValues(from, res)
		}
	}
	for _, a := range []string{HibernatePause, HibernateStop} {
		r.hibernations.WithLabelValues(a)
	}
	for _, ev := range []string{EnvelopeQueued, EnvelopeDelivered, EnvelopeDropped} {
		r.relayEnvelopes.WithLabelValues(ev)
	}
	r.capResults = map[string]bool{}
	for _, res := range []string{ResultOK, ResultError, CapabilityDropped} {
		r.capabilityCalls.WithLabelValues(res)
		r.capResults[res] = true
	}
	for _, c := range extra {
		r.reg.MustRegister(c)
	}
	return r
}

// Register adds a collector (e.g. one a role builds after New: the mail
// outbox). It returns prometheus's error if c collides with a registered
// metric. On a nil Registry (metrics off) it does nothing.
func (r *Registry) Register(c prometheus.Collector) error {
	if r == nil {
		return nil
	}
	return r.reg.Register(c)
}

// Gatherer is the underlying registry, for tests and custom handlers.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the metrics in the Prometheus text exposition format
// (or OpenMetrics when the scraper asks for it). Errors while gathering
// are answered with a 500.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Unmatched is the route label of a request no route matched.
const Unmatched = "unmatched"

// HTTP records one answered request. route must be the route template
// (echo's c.Path(), e.g. "/api/users/:id"), never the request path: "" is
// recorded as Unmatched. method is one of the standard methods (others are
// recorded as "other"); code is the status code.
func (r *Registry) HTTP(route, method string, code int, d time.Duration) {
	if r == nil {
		return
	}
	if route == "" {
		route = Unmatched
	}
	r.httpRequests.WithLabelValues(route, methodLabel(method), strconv.Itoa(code)).Inc()
	r.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// Wake records one wake of a container from state from (a store state:
// "paused", "stopped", "error", "running" without an endpoint) that took d;
// err nil = ok.
func (r *Registry) Wake(from string, d time.Duration, err error) {
	if r == nil {
		return
	}
	res := ResultOK
	if err != nil {
		res = ResultError
	}
	r.wakes.WithLabelValues(from, res).Inc()
	r.wakeDuration.WithLabelValues(from).Observe(d.Seconds())
}

// Hibernated records one idle container paused (HibernatePause) or stopped
// (HibernateStop).
func (r *Registry) Hibernated(action string) {
	if r == nil {
		return
	}
	r.hibernations.WithLabelValues(action).Inc()
}

// Envelopes records n relay envelopes reaching event (EnvelopeQueued,
// EnvelopeDelivered, EnvelopeDropped).
func (r *Registry) Envelopes(event string, n int) {
	if r == nil || n <= 0 {
		return
	}
	r.relayEnvelopes.WithLabelValues(event).Add(float64(n))
}

// RelayConnections registers ocmt_relay_connections, the vault
// connections open on the relay, read with open at scrape time.
func (r *Registry) RelayConnections(open func() int) error {
	return r.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ocmt_relay_connections",
		Help: "Vault connections open on the relay (authenticated, one per user).",
	}, func() float64 { return float64(open()) }))
}

// MaxCapabilityResults bounds the distinct result labels of
// ocmt_capability_calls_total (ok, error and dropped included): once that
// many are in use, other results are recorded as ResultError. The agent
// role adds the results its vaults report, so a vault cannot grow the
// label set without bound.
const MaxCapabilityResults = 32

// CapabilityCall records one capability call answered with result: ResultOK,
// CapabilityDropped, or the error code sent to the caller (a fixed code
// such as "revoked"). A result that is not 1..40 characters of a-z and _
// is recorded as ResultError, so no free text becomes a label (see also
// MaxCapabilityResults).
func (r *Registry) CapabilityCall(result string) { r.AddCapabilityCalls(result, 1) }

// AddCapabilityCalls records n capability calls answered with result, as
// CapabilityCall does for one: the agent role adds what its vaults
// counted since it last asked them.
func (r *Registry) AddCapabilityCalls(result string, n uint64) {
	if r == nil || n == 0 {
		return
	}
	result = CapabilityResult(result)
	r.capMu.Lock()
	if !r.capResults[result] {
		if len(r.capResults) < MaxCapabilityResults {
			r.capResults[result] = true
		} else {
			result = ResultError
		}
	}
	r.capMu.Unlock()
	r.capabilityCalls.WithLabelValues(result).Add(float64(n))
}

// CapabilityResult is the label value under which a capability call
// answered with result is counted: result itself when it is 1..40
// characters of a-z and _, else ResultError.
func CapabilityResult(result string) string {
	if !codeLabel(result) {
		return ResultError
	}
	return result
}

func codeLabel(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < 'a' || s[i] > 'z') && s[i] != '_' {
			return false
		}
	}
	return true
}

// VaultUnlockFailed records one refused vault unlock.
func (r *Registry) VaultUnlockFailed() {
	if r == nil {
		return
	}
	r.vaultUnlockFailures.Inc()
}

// ContainerStates registers ocmt_containers, a gauge by state read at
// scrape time: states lists every state (each is exported, 0 when none),
// count returns the number per state; an error from count is reported to
// the scraper (the scrape fails with a 500 naming the metric, not a stale
// number).
func (r *Registry) ContainerStates(states []string, count func() (map[string]int, error)) error {
	return r.reg.Register(&stateCollector{states: states, count: count, desc: prometheus.NewDesc(
		"ocmt_containers", "User containers by state, as recorded by the agent role.", []string{"state"}, nil)})
}

type stateCollector struct {
	states []string
	count  func() (map[string]int, error)
	desc   *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := c.count()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, s := range c.states {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n[s]), s)
	}
}
