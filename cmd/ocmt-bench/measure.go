package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent/runtime"
)

var (
	vaultPort = network.MustParsePort(strconv.Itoa(runtime.VaultPort) + "/tcp")
	loopback  = netip.AddrFrom4([4]byte{127, 0, 0, 1})
)

// Polling of the bench itself: fine enough not to matter next to what it
// measures, coarse enough not to steal the engine's CPU.
const (
	statusPoll     = 2 * time.Millisecond  // agent Status while one user provisions
	scalePoll      = 20 * time.Millisecond // agent Status of many users
	rawHealthPoll  = 5 * time.Millisecond  // raw /healthz polling (fixed interval)
	opTimeout      = 90 * time.Second      // one provision or health wait
	settleBefore   = 200 * time.Millisecond
	scaleSettle    = 2 * time.Second
	statsFanout    = 8
	provisionLimit = 3 * time.Minute // all users of a scale run
)

// provTiming is one provisioning through the agent, with the times at
// which each progress phase was first seen (from Provision's call).
type provTiming struct {
	total  time.Duration
	phases map[string]time.Duration
}

// provisionUser provisions uid through the agent and waits for "running",
// polling Status.
func (b *bench) provisionUser(ctx context.Context, uid string) (provTiming, error) {
	t := provTiming{phases: map[string]time.Duration{}}
	t0 := time.Now()
	if err := b.ag.Provision(ctx, uid); err != nil {
		return t, fmt.Errorf("provision %s: %w", uid, err)
	}
	for {
		st, err := b.ag.Status(ctx, uid)
		if err != nil {
			return t, err
		}
		now := time.Since(t0)
		switch st.State {
		case api.StateRunning:
			t.total = now
			return t, nil
		case api.StateError:
			return t, fmt.Errorf("provision %s: %s", uid, st.Error)
		case api.StateProvisioning:
			if p := st.Progress; p != nil {
				if _, ok := t.phases[p.Phase]; !ok {
					t.phases[p.Phase] = now
				}
			}
		}
		if now > opTimeout {
			return t, fmt.Errorf("provision %s: not running after %s (state %s)", uid, opTimeout, st.State)
		}
		if err := sleep(ctx, statusPoll); err != nil {
			return t, err
		}
	}
}

func (b *bench) removeUser(ctx context.Context, uid string) error {
	if err := b.ag.Do(ctx, uid, api.ActionRemove); err != nil {
		return fmt.Errorf("remove %s: %w", uid, err)
	}
	return nil
}

// rawTiming is one raw create+start, optionally followed by an inspect and
// /healthz polling until 200.
type rawTiming struct {
	createStart time.Duration // ContainerCreate + ContainerStart
	healthy     time.Duration // + inspect + /healthz 200 (0 unless asked)
}

// rawContainer runs the image with a minimal config: the published port on
// loopback and the vault secret in the environment (the vault needs it to
// answer /healthz) — no network, volume, limits or hardening.
func (b *bench) rawContainer(ctx context.Context, waitHealth bool) (t rawTiming, err error) {
	name := b.newRawName()
	t0 := time.Now()
	res, err := b.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image: b.image, Env: []string{"OCMT_VAULT_SECRET=" + b.secret},
			ExposedPorts: network.PortSet{vaultPort: {}},
		},
		HostConfig: &container.HostConfig{
			PortBindings: network.PortMap{vaultPort: {{HostIP: loopback}}},
		},
	})
	if err != nil {
		return t, fmt.Errorf("raw ContainerCreate: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, rerr := b.cli.ContainerRemove(rctx, res.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil && err == nil {
			err = fmt.Errorf("remove raw container %s: %w", name, rerr)
		}
	}()
	if _, err = b.cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return t, fmt.Errorf("raw ContainerStart: %w", err)
	}
	t.createStart = time.Since(t0)
	if !waitHealth {
		return t, nil
	}
	ins, err := b.cli.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		return t, fmt.Errorf("raw inspect: %w", err)
	}
	endpoint := ""
	if ns := ins.Container.NetworkSettings; ns != nil {
		for _, pb := range ns.Ports[vaultPort] {
			if pb.HostPort != "" {
				endpoint = "http://127.0.0.1:" + pb.HostPort
				break
			}
		}
	}
	if endpoint == "" {
		return t, errors.New("raw container has no published port")
	}
	if err = waitHealthz(ctx, endpoint, b.secret); err != nil {
		return t, err
	}
	t.healthy = time.Since(t0)
	return t, nil
}

var healthClient = &http.Client{Timeout: 5 * time.Second}

// waitHealthz polls endpoint/healthz at a fixed short interval until 200.
func waitHealthz(ctx context.Context, endpoint, secret string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/healthz", nil)
		req.Header.Set(runtime.SecretHeader, secret)
		resp, err := healthClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleep(ctx, rawHealthPoll); err != nil {
			return fmt.Errorf("raw container not healthy: %w", err)
		}
	}
}

// benchProvision: target 1. Agent provision vs raw create+start (and raw
// create+start+healthz), interleaved with a rotating order, after one
// untimed warm-up of each.
func (b *bench) benchProvision(ctx context.Context, res *Results) error {
	n := b.cfg.provN
	progressf("provision: warm-up (1 of each, not timed)")
	uid := b.newUser()
	if _, err := b.provisionUser(ctx, uid); err != nil {
		return err
	}
	if err := b.removeUser(ctx, uid); err != nil {
		return err
	}
	if _, err := b.rawContainer(ctx, true); err != nil {
		return err
	}

	var agentS, rawS, rawHS, rawHCS []time.Duration
	phaseS := map[string][]time.Duration{}
	kinds := []string{"agent", "raw", "rawhealth"}
	for i := range n {
		for k := range kinds {
			switch kinds[(i+k)%len(kinds)] {
			case "agent":
				uid := b.newUser()
				t, err := b.provisionUser(ctx, uid)
				if err != nil {
					return err
				}
				agentS = append(agentS, t.total)
				// Phase durations, when all phase changes were seen.
				c, s, r := t.phases[api.PhaseCreate], t.phases[api.PhaseStart], t.phases[api.PhaseReady]
				if c > 0 && s > c && r > s {
					phaseS["prepare"] = append(phaseS["prepare"], c)
					phaseS["create"] = append(phaseS["create"], s-c)
					phaseS["start"] = append(phaseS["start"], r-s)
					phaseS["health"] = append(phaseS["health"], t.total-r)
				}
				if err := b.removeUser(ctx, uid); err != nil {
					return err
				}
			case "raw":
				t, err := b.rawContainer(ctx, false)
				if err != nil {
					return err
				}
				rawS = append(rawS, t.createStart)
			case "rawhealth":
				t, err := b.rawContainer(ctx, true)
				if err != nil {
					return err
				}
				rawHS = append(rawHS, t.healthy)
				rawHCS = append(rawHCS, t.createStart)
			}
		}
		progressf("provision %d/%d: agent %s, raw %s, raw+healthz %s", i+1, n,
			ms(agentS[len(agentS)-1]), ms(rawS[len(rawS)-1]), ms(rawHS[len(rawHS)-1]))
	}
	a, r, h := summarize(agentS), summarize(rawS), summarize(rawHS)
	ratio := a.Mean / r.Mean
	res.add(Row{Metric: fmt.Sprintf("Provision via agent.Server (Provision → running, incl. /healthz), N=%d", n),
		Value: fmt.Sprintf("mean %s, p50 %s", fmtMS(a.Mean), fmtMS(a.P50)), Stats: &a})
	res.add(Row{Metric: fmt.Sprintf("Raw ContainerCreate+ContainerStart, minimal config, no health wait, N=%d", n),
		Value: fmt.Sprintf("mean %s, p50 %s", fmtMS(r.Mean), fmtMS(r.P50)), Stats: &r})
	hc := summarize(rawHCS)
	res.add(Row{Metric: fmt.Sprintf("Raw create+start+inspect+wait /healthz (5 ms polls), N=%d", n),
		Value: fmt.Sprintf("mean %s, p50 %s (create+start part: mean %s)", fmtMS(h.Mean), fmtMS(h.P50), fmtMS(hc.Mean)), Stats: &h})
	if len(phaseS["create"]) > 0 {
		p := map[string]Summary{}
		for k, v := range phaseS {
			p[k] = summarize(v)
		}
		res.add(Row{Metric: "Agent provision phases (mean; from Status progress)",
			Value: fmt.Sprintf("prepare %s · volume+network+create %s · start+inspect %s · /healthz wait+record %s",
				fmtMS(p["prepare"].Mean), fmtMS(p["create"].Mean), fmtMS(p["start"].Mean), fmtMS(p["health"].Mean)),
			Phases: p})
	}
	res.add(Row{Metric: "Provision ratio agent / raw create+start (means)", Value: fmt.Sprintf("%.2f×", ratio),
		Target: "≤ 1.5×", Pass: ptr(ratio <= 1.5), Number: ratio})
	return nil
}

// benchWake: targets 2 and 3, on one provisioned user.
func (b *bench) benchWake(ctx context.Context, res *Results) error {
	uid := b.newUser()
	progressf("wake: provisioning %s", uid)
	if _, err := b.provisionUser(ctx, uid); err != nil {
		return err
	}
	proxy := b.ag.Proxy(uid)
	get := func() error {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/healthz", nil)
		rr := httptest.NewRecorder()
		proxy.ServeHTTP(rr, req)
		if rr.Code != http.StatusOK {
			return fmt.Errorf("proxied /healthz: %d %s", rr.Code, rr.Body.String())
		}
		return nil
	}
	if err := get(); err != nil { // warm the proxy's connection pool
		return err
	}

	measure := func(action string, n int) (wake, first []time.Duration, err error) {
		for i := range n {
			if err := b.ag.Do(ctx, uid, action); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", action, err)
			}
			if err := sleep(ctx, settleBefore); err != nil {
				return nil, nil, err
			}
			t0 := time.Now()
			if _, err := b.ag.Wake(ctx, uid); err != nil {
				return nil, nil, fmt.Errorf("wake after %s: %w", action, err)
			}
			w := time.Since(t0)
			if err := get(); err != nil {
				return nil, nil, fmt.Errorf("after wake from %s: %w", action, err)
			}
			f := time.Since(t0)
			wake, first = append(wake, w), append(first, f)
			if (i+1)%5 == 0 || i+1 == n {
				progressf("wake from %s %d/%d: last wake %s, +first request %s", action, i+1, n, ms(w), ms(f))
			}
		}
		return wake, first, nil
	}

	wp, fp, err := measure(api.ActionPause, b.cfg.pausedN)
	if err != nil {
		return err
	}
	sw, sf := summarize(wp), summarize(fp)
	res.add(Row{Metric: fmt.Sprintf("Wake from paused: agent.Wake (unpause), N=%d", len(wp)),
		Value: fmt.Sprintf("p50 %s, p95 %s", fmtMS(sw.P50), fmtMS(sw.P95)), Target: "p95 < 300 ms",
		Pass: ptr(sw.P95 < 300), Stats: &sw})
	res.add(Row{Metric: fmt.Sprintf("Wake from paused + first proxied GET /healthz, N=%d", len(fp)),
		Value: fmt.Sprintf("p50 %s, p95 %s", fmtMS(sf.P50), fmtMS(sf.P95)), Target: "p95 < 300 ms",
		Pass: ptr(sf.P95 < 300), Stats: &sf})

	ws, fs, err := measure(api.ActionStop, b.cfg.stoppedN)
	if err != nil {
		return err
	}
	sw, sf = summarize(ws), summarize(fs)
	res.add(Row{Metric: fmt.Sprintf("Wake from stopped: agent.Wake (start + /healthz), N=%d", len(ws)),
		Value: fmt.Sprintf("p50 %s, p95 %s", fmtMS(sw.P50), fmtMS(sw.P95)), Target: "p95 < 2 s",
		Pass: ptr(sw.P95 < 2000), Stats: &sw})
	res.add(Row{Metric: fmt.Sprintf("Wake from stopped + first proxied GET /healthz, N=%d", len(fs)),
		Value: fmt.Sprintf("p50 %s, p95 %s", fmtMS(sf.P50), fmtMS(sf.P95)), Target: "p95 < 2 s",
		Pass: ptr(sf.P95 < 2000), Stats: &sf})
	return b.removeUser(ctx, uid)
}

// benchIdle: target 4, a freshly provisioned user left idle.
func (b *bench) benchIdle(ctx context.Context, res *Results) error {
	uid := b.newUser()
	progressf("idle RSS: provisioning %s, then idle %s", uid, idleFor)
	if _, err := b.provisionUser(ctx, uid); err != nil {
		return err
	}
	rec, err := b.ag.Wake(ctx, uid) // running: returns the record at once
	if err != nil {
		return err
	}
	if err := sleep(ctx, idleFor); err != nil {
		return err
	}
	s, err := b.drv.Stats(ctx, rec.EngineID)
	if err != nil {
		return err
	}
	mib := float64(s.MemoryBytes) / (1 << 20)
	progressf("idle RSS: %.1f MiB, %d pids", mib, s.Pids)
	res.add(Row{Metric: fmt.Sprintf("Idle memory of one user container after %s (driver Stats: usage − inactive file)", idleFor),
		Value: fmt.Sprintf("%.1f MiB", mib), Target: "< 20 MiB", Pass: ptr(mib < 20), Number: mib})
	res.add(Row{Metric: "Idle PIDs of that container", Value: strconv.FormatUint(s.Pids, 10), Number: float64(s.Pids)})
	return b.removeUser(ctx, uid)
}

// benchScale: target 5, N users provisioned at once.
func (b *bench) benchScale(ctx context.Context, res *Results) error {
	sizes := []int{10}
	if !b.cfg.quick && b.cfg.users != 10 {
		sizes = append(sizes, b.cfg.users)
	}
	for _, n := range sizes {
		if err := b.scaleOnce(ctx, res, n); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) scaleOnce(ctx context.Context, res *Results, n int) error {
	if err := sleep(ctx, scaleSettle); err != nil {
		return err
	}
	before, err := memAvailable()
	if err != nil {
		return err
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = b.newUser()
	}
	progressf("scale %d: firing %d Provision calls", n, n)
	// Remove whatever was created, however this ends.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		forEach(ids, statsFanout, func(id string) {
			if err := b.ag.Do(rctx, id, api.ActionRemove); err != nil && ctx.Err() == nil {
				progressf("scale %d: remove %s: %v", n, id, err)
			}
		})
	}()
	t0 := time.Now()
	for _, id := range ids {
		if err := b.ag.Provision(ctx, id); err != nil {
			return fmt.Errorf("provision %s: %w", id, err)
		}
	}
	ready := make([]time.Duration, 0, n)
	done := map[string]bool{}
	lastReport := time.Now()
	for len(done) < n {
		for _, id := range ids {
			if done[id] {
				continue
			}
			st, err := b.ag.Status(ctx, id)
			if err != nil {
				return err
			}
			switch st.State {
			case api.StateRunning:
				done[id] = true
				ready = append(ready, time.Since(t0))
			case api.StateError:
				return fmt.Errorf("provision %s: %s", id, st.Error)
			}
		}
		if time.Since(t0) > provisionLimit {
			return fmt.Errorf("only %d of %d users running after %s", len(done), n, provisionLimit)
		}
		if time.Since(lastReport) > 2*time.Second {
			progressf("scale %d: %d running after %s", n, len(done), time.Since(t0).Round(100*time.Millisecond))
			lastReport = time.Now()
		}
		if len(done) < n {
			if err := sleep(ctx, scalePoll); err != nil {
				return err
			}
		}
	}
	wall := time.Since(t0)
	progressf("scale %d: all running in %s; letting them settle %s", n, wall.Round(time.Millisecond), scaleSettle)
	if err := sleep(ctx, scaleSettle); err != nil {
		return err
	}
	after, err := memAvailable()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var sum uint64
	var statErr error
	forEach(ids, statsFanout, func(id string) {
		s, err := b.drv.Stats(ctx, "ocmt-"+id)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			statErr = err
			return
		}
		sum += s.MemoryBytes
	})
	if statErr != nil {
		return statErr
	}
	rs := summarize(ready)
	hostMiB := float64(before-after) / (1 << 20)
	sumMiB := float64(sum) / (1 << 20)
	progressf("scale %d: host −%.0f MiB, containers Σ %.0f MiB", n, hostMiB, sumMiB)
	res.add(Row{Metric: fmt.Sprintf("%d users provisioned at once: wall time to all running", n),
		Value: fmt.Sprintf("%s (per user p50 %s, p95 %s)", fmtMS(float64(wall.Microseconds())/1000), fmtMS(rs.P50), fmtMS(rs.P95)),
		Stats: &rs, Number: float64(wall.Microseconds()) / 1000})
	res.add(Row{Metric: fmt.Sprintf("%d users: host memory used (MemAvailable before − after)", n),
		Value: fmt.Sprintf("%.0f MiB (%.1f MiB/user)", hostMiB, hostMiB/float64(n)), Number: hostMiB})
	res.add(Row{Metric: fmt.Sprintf("%d users: Σ container memory (driver Stats)", n),
		Value: fmt.Sprintf("%.0f MiB (%.1f MiB/user)", sumMiB, sumMiB/float64(n)), Number: sumMiB})
	return nil
}

// forEach calls fn for every item with at most par calls at once.
func forEach(items []string, par int, fn func(string)) {
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for _, it := range items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(it)
		}()
	}
	wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func ptr[T any](v T) *T { return &v }
