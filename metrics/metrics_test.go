package metrics_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocmt/ocmt/metrics"
)

// TestNilRegistry: the helpers do nothing on a nil Registry (metrics off).
func TestNilRegistry(t *testing.T) {
	var r *metrics.Registry
	r.HTTP("/x", "GET", 200, time.Millisecond)
	r.Wake("paused", time.Second, nil)
	r.Hibernated(metrics.HibernatePause)
	r.Envelopes(metrics.EnvelopeQueued, 1)
	r.CapabilityCall(metrics.ResultOK)
	r.AddCapabilityCalls(metrics.ResultOK, 3)
	r.VaultUnlockFailed()
}

// values gathers the label values of family name.
func values(t *testing.T, r *metrics.Registry, name, label string) map[string]float64 {
	t.Helper()
	fams, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestLabelsBounded: free text never becomes a label value.
func TestLabelsBounded(t *testing.T) {
	r := metrics.New()
	r.CapabilityCall("revoked")
	r.CapabilityCall("user bob@example.org failed")
	r.HTTP("", "BREW", 418, time.Millisecond)
	caps := values(t, r, "ocmt_capability_calls_total", "result")
	if caps["revoked"] != 1 || caps[metrics.ResultError] != 1 || len(caps) != 4 { // ok, error, dropped, revoked
		t.Errorf("capability results = %v", caps)
	}
	if m := values(t, r, "ocmt_http_requests_total", "method"); m["other"] != 1 {
		t.Errorf("methods = %v, want other", m)
	}
	if m := values(t, r, "ocmt_http_requests_total", "route"); m[metrics.Unmatched] != 1 {
		t.Errorf("routes = %v, want unmatched", m)
	}
}

// TestAddCapabilityCalls: counts reported by vaults are added under their
// result; at most MaxCapabilityResults result labels exist, later ones are
// counted as error.
func TestAddCapabilityCalls(t *testing.T) {
	r := metrics.New()
	r.AddCapabilityCalls(metrics.ResultOK, 5)
	r.AddCapabilityCalls("revoked", 2)
	r.AddCapabilityCalls("Not A Code", 1)
	r.AddCapabilityCalls("expired", 0)
	for i := range metrics.MaxCapabilityResults {
		r.AddCapabilityCalls("code_"+strings.Repeat("x", i+1), 1)
	}
	caps := values(t, r, "ocmt_capability_calls_total", "result")
	if len(caps) != metrics.MaxCapabilityResults {
		t.Errorf("%d result labels, want %d: %v", len(caps), metrics.MaxCapabilityResults, caps)
	}
	// ok, error, dropped and revoked leave room for 28 codes; 4 more are errors.
	if caps[metrics.ResultOK] != 5 || caps["revoked"] != 2 || caps[metrics.ResultError] != 1+4 || caps["code_x"] != 1 {
		t.Errorf("capability results = %v", caps)
	}
	if _, ok := caps["expired"]; ok {
		t.Error("a result added 0 times has a label")
	}
}

// TestExtraAndStates: extra collectors (the mail outbox) are registered;
// the container states gauge reads at scrape time and reports its errors.
func TestExtraAndStates(t *testing.T) {
	extra := prometheus.NewCounter(prometheus.CounterOpts{Name: "ocmt_mail_sent_total", Help: "test"})
	r := metrics.New(extra)
	extra.Inc()
	fail := false
	if err := r.ContainerStates([]string{"running", "paused"}, func() (map[string]int, error) {
		if fail {
			return nil, errors.New("database closed")
		}
		return map[string]int{"running": 2, "gone": 7}, nil
	}); err != nil {
		t.Fatal(err)
	}
	fams, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range fams {
		seen[f.GetName()] = true
		if f.GetName() == "ocmt_containers" {
			if len(f.GetMetric()) != 2 {
				t.Errorf("ocmt_containers has %d series, want 2 (unknown states left out)", len(f.GetMetric()))
			}
		}
	}
	if !seen["ocmt_mail_sent_total"] || !seen["ocmt_containers"] {
		t.Errorf("families: %v", seen)
	}
	fail = true
	if _, err := r.Gatherer().Gather(); err == nil {
		t.Error("a failing state count did not fail the scrape")
	}
	if err := r.Register(extra); err == nil {
		t.Error("registering a collector twice succeeded")
	}
}
