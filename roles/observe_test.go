package roles_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles"
	"github.com/ocmt/ocmt/xtest"
)

// labels returns a metric's labels as a map.
func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// counterValue sums the family's counters whose labels include want.
func counterValue(f *dto.MetricFamily, want map[string]string) (float64, bool) {
	var sum float64
	found := false
	for _, m := range f.GetMetric() {
		l := labels(m)
		ok := true
		for k, v := range want {
			ok = ok && l[k] == v
		}
		if ok {
			sum += m.GetCounter().GetValue()
			found = true
		}
	}
	return sum, found
}

// TestMetricsScrape: the metrics listener serves every ocmt family with
// its type and labels, in a format expfmt parses; a request to a route with
// an id in its path is counted under the route template, and a wake from
// paused is counted and timed. Metrics are not on the public listener.
func TestMetricsScrape(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" }))
	if env.MetricsURL == "" {
		t.Fatal("no metrics listener")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, u := env.Admin("admin@example.org")
	if err := admin.ProvisionAgent(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.WaitAgent(ctx, api.StateRunning); err != nil {
		t.Fatal(err)
	}
	// An id in the path: it must not become a label.
	const fakeID = "usr_0123456789abcdefghjkmnpqrs"
	resp, err := http.Post(env.URL+"/api/v1/admin/containers/"+fakeID+"/pause", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// A wake from paused.
	if r, err := admin.Do(ctx, http.MethodPost, "/api/v1/admin/containers/"+u.ID+"/pause", nil); err != nil || r.Status != http.StatusOK && r.Status != http.StatusNoContent {
		t.Fatalf("pause: %v %+v", err, r)
	}
	if r, err := admin.Do(ctx, http.MethodGet, "/api/v1/me/agent/vault/params", nil); err != nil || r.Status >= 500 {
		t.Fatalf("wake by request: %v %+v", err, r)
	}

	fams := xtest.ScrapeMetrics(t, env.MetricsURL)
	for name, want := range map[string]struct {
		typ    dto.MetricType
		labels []string
	}{
		"ocmt_http_requests_total":           {dto.MetricType_COUNTER, []string{"route", "method", "code"}},
		"ocmt_http_request_duration_seconds": {dto.MetricType_HISTOGRAM, []string{"route"}},
		"ocmt_containers":                    {dto.MetricType_GAUGE, []string{"state"}},
		"ocmt_wakes_total":                   {dto.MetricType_COUNTER, []string{"from", "result"}},
		"ocmt_wake_duration_seconds":         {dto.MetricType_HISTOGRAM, []string{"from"}},
		"ocmt_hibernations_total":            {dto.MetricType_COUNTER, []string{"action"}},
		"ocmt_relay_envelopes_total":         {dto.MetricType_COUNTER, []string{"event"}},
		"ocmt_relay_connections":             {dto.MetricType_GAUGE, nil},
		"ocmt_capability_calls_total":        {dto.MetricType_COUNTER, []string{"result"}},
		"ocmt_vault_unlock_failures_total":   {dto.MetricType_COUNTER, nil},
		"ocmt_mail_sent_total":               {dto.MetricType_COUNTER, nil},
		"ocmt_mail_failed_total":             {dto.MetricType_COUNTER, []string{"reason"}},
		"ocmt_mail_queued":                   {dto.MetricType_GAUGE, nil},
		"go_goroutines":                      {dto.MetricType_GAUGE, nil},
		"process_cpu_seconds_total":          {dto.MetricType_COUNTER, nil},
	} {
		f := fams[name]
		if f == nil {
			t.Errorf("family %s missing", name)
			continue
		}
		if f.GetType() != want.typ {
			t.Errorf("%s: type %s, want %s", name, f.GetType(), want.typ)
		}
		for _, m := range f.GetMetric() {
			l := labels(m)
			if len(l) != len(want.labels) {
				t.Errorf("%s: labels %v, want %v", name, l, want.labels)
			}
			for _, k := range want.labels {
				if _, ok := l[k]; !ok {
					t.Errorf("%s: labels %v lack %q", name, l, k)
				}
			}
		}
	}
	reqs := fams["ocmt_http_requests_total"]
	if n, ok := counterValue(reqs, map[string]string{"route": "/api/v1/admin/containers/:user/:action", "method": "POST"}); !ok || n < 2 {
		t.Errorf("requests under the route template = %v (found %v), want ≥ 2", n, ok)
	}
	if n, ok := counterValue(fams["ocmt_wakes_total"], map[string]string{"from": "paused", "result": "ok"}); !ok || n != 1 {
		t.Errorf("wakes from paused = %v, want 1", n)
	}
	var running float64
	for _, m := range fams["ocmt_containers"].GetMetric() {
		if labels(m)["state"] == "running" {
			running = m.GetGauge().GetValue()
		}
	}
	if running != 1 {
		t.Errorf("ocmt_containers{state=running} = %v, want 1", running)
	}
	// No label anywhere carries an id, an email or an address.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				if strings.Contains(v, "usr_") || strings.Contains(v, "@") || strings.Contains(v, "127.0.0.1") {
					t.Errorf("%s has label %s=%q", name, l.GetName(), v)
				}
			}
		}
	}
	// Not on the public listener.
	resp, err = http.Get(env.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("GET /metrics on the public listener: %s, want no such route", resp.Status)
	}
}

// TestProbes: /livez and /readyz answer on the public listener and the
// metrics listener, naming every readiness check of an all-roles run.
func TestProbes(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" }))
	for _, base := range []string{env.URL, env.MetricsURL} {
		for path, checks := range map[string][]string{"/livez": nil, "/readyz": {"database", "engine", "relay"}} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			var p api.Probe
			err = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || p.Status != api.ProbeOK {
				t.Errorf("GET %s%s: %s %+v %v", base, path, resp.Status, p, err)
			}
			for _, c := range checks {
				if p.Checks[c] != api.ProbeOK {
					t.Errorf("GET %s%s: check %q = %q, want ok", base, path, c, p.Checks[c])
				}
			}
		}
	}
}

// TestAccessLogJSON: with --log-format=json every request gets one JSON
// access log line with the named fields and the route template; the query
// string (the magic link's token), cookies and Authorization never reach
// the log; a safe X-Request-Id is kept and echoed, an unsafe one replaced.
func TestAccessLogJSON(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir, cfg.Runtime, cfg.LogFormat, cfg.LogLevel = t.TempDir(), config.RuntimeProcess, config.LogJSON, config.LogInfo
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = ""
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logBuf xtest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		errc <- roles.Run(ctx, cfg, roles.Options{Log: cfg.Logger(&logBuf), Out: io.Discard, Listener: ln,
			Ready: func(string) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("ocmt did not start: %v", err)
	}
	var stopped bool
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-errc
		}
	}
	defer stop()
	const token, cookie, bearer = "tok-SECRET-4242", "cookie-SECRET-4343", "bearer-SECRET-4444"
	do := func(path, rid string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, cfg.PublicURL+path, nil)
		req.Header.Set("Cookie", "ocmt_session="+cookie)
		req.Header.Set("Authorization", "Bearer "+bearer)
		if rid != "" {
			req.Header.Set("X-Request-Id", rid)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if got := do("/auth/verify?token="+token, "rid-abc.123_X").Header.Get("X-Request-Id"); got != "rid-abc.123_X" {
		t.Errorf("X-Request-Id echoed = %q, want the one sent", got)
	}
	bad := "bad id\" with=stuff" + strings.Repeat("x", 80)
	if got := do("/api/v1/admin/containers/usr_0123456789abcdefghjkmnpqrs/pause?token="+token, bad).Header.Get("X-Request-Id"); got == "" || got == bad || strings.ContainsAny(got, " \"=") {
		t.Errorf("unsafe X-Request-Id replaced by %q", got)
	}
	stop() // Run returns after the last request is logged

	out := logBuf.String()
	for _, secret := range []string{token, cookie, bearer, "bad id"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}
	var access []map[string]any
	sc := bufio.NewScanner(bytes.NewReader([]byte(out)))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, sc.Text())
		}
		if line["msg"] == "http request" {
			access = append(access, line)
		}
	}
	routes := map[string]map[string]any{}
	for _, l := range access {
		for _, k := range []string{"method", "route", "status", "duration_ms", "bytes", "request_id", "client_ip"} {
			if _, ok := l[k]; !ok {
				t.Errorf("access line lacks %q: %v", k, l)
			}
		}
		routes[l["route"].(string)] = l
	}
	v := routes["/auth/verify"]
	if v == nil || v["request_id"] != "rid-abc.123_X" || v["method"] != "GET" || v["client_ip"] != "127.0.0.1" {
		t.Errorf("access line of /auth/verify = %v (all: %v)", v, access)
	}
	if len(access) != 2 {
		t.Errorf("%d access lines, want 2: %v", len(access), access)
	}
	for r := range routes {
		if strings.Contains(r, "usr_") || strings.Contains(r, "?") {
			t.Errorf("access line route %q is not a template", r)
		}
	}
}
