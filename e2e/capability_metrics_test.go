package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/xtest"
)

// capCalls scrapes the agent role's /metrics (the one Prometheus scrapes)
// and returns ocmt_capability_calls_total by result. Any label holding a
// user id or an email fails the test.
func capCalls(t *testing.T, env *xtest.Env) map[string]float64 {
	t.Helper()
	fams := xtest.ScrapeMetrics(t, env.MetricsURL)
	f := fams["ocmt_capability_calls_total"]
	if f == nil || f.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("ocmt_capability_calls_total missing or not a counter: %v", f)
	}
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "result" {
			t.Fatalf("ocmt_capability_calls_total labels: %v", m.GetLabel())
		}
		v := m.GetLabel()[0].GetValue()
		if strings.Contains(v, "usr_") || strings.Contains(v, "@") {
			t.Fatalf("ocmt_capability_calls_total has result=%q", v)
		}
		out[v] = m.GetCounter().GetValue()
	}
	return out
}

// capMetricsEnv starts ocmt with the metrics listener and the given sweep
// interval; Alice shares her calendar with Bob. call makes one call of
// Bob's on it and checks the answer.
func capMetricsEnv(t *testing.T, sweep time.Duration) (env *xtest.Env, alice *api.Client, aliceID string, call func()) {
	env = xtest.NewEnv(t, xtest.WithSweep(sweep), xtest.WithConfig(func(c *config.Config) {
		c.MetricsListen = "127.0.0.1:0"
		c.AllowPrivateTargets = config.PrivateTargets{All: true} // the fake API is on loopback
	}))
	if env.MetricsURL == "" {
		t.Fatal("no metrics listener")
	}
	ctx := context.Background()
	cal := newFakeAPI(t, nil)
	alice, au := env.Admin("alice@example.org")
	bob, _ := env.Invite(alice, "bob@example.org")
	av := readyVault(t, env, alice, "alice's long password")
	readyVault(t, env, bob, "bob's long password")
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": cal.URL, "authHeader": "Authorization", "authValue": "Bearer s"}, nil)
	var share struct {
		JTI string `json:"jti"`
	}
	av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"}, "expiresIn": 3600}, &share)
	waitReceived(t, bob, share.JTI, 10*time.Second)
	call = func() {
		t.Helper()
		r, err := bob.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities/"+share.JTI+"/call", map[string]string{"operation": "read", "path": "/events"})
		if err != nil || r.Status != http.StatusOK || !strings.Contains(string(r.Body), "Dentist") {
			t.Fatalf("call: %v %+v", err, r)
		}
	}
	return env, alice, string(au.ID), call
}

// TestCapabilityCallsCollectedBySweep: a capability call answered by
// Alice's vault shows in the agent role's ocmt_capability_calls_total
// after a sweep (the vault's own counts are not scraped).
func TestCapabilityCallsCollectedBySweep(t *testing.T) {
	env, _, _, call := capMetricsEnv(t, 50*time.Millisecond)
	if n := capCalls(t, env)["ok"]; n != 0 {
		t.Fatalf("ok = %v before any call", n)
	}
	call()
	xtest.Eventually(t, 10*time.Second, func() error {
		if n := capCalls(t, env)["ok"]; n != 1 {
			return fmt.Errorf("ocmt_capability_calls_total{result=\"ok\"} = %v, want 1", n)
		}
		return nil
	})
}

// TestCapabilityCallsCollectedAtHibernation: with no sweep running, the
// agent role reads a vault's counts right before it pauses or stops it, so
// no call is lost to hibernation; a vault started again counts from 0 and
// its calls are added once.
func TestCapabilityCallsCollectedAtHibernation(t *testing.T) {
	env, alice, aliceID, call := capMetricsEnv(t, time.Hour)
	ctx := context.Background()
	for i, action := range []string{api.ActionPause, api.ActionStop, api.ActionPause} {
		call() // wakes Alice's container: unpaused, then started again
		if err := alice.AdminAction(ctx, aliceID, action); err != nil {
			t.Fatal(err)
		}
		if n := capCalls(t, env)["ok"]; n != float64(i+1) {
			t.Fatalf("after %s: ocmt_capability_calls_total{result=\"ok\"} = %v, want %d", action, n, i+1)
		}
	}
}
