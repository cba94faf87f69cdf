// Command ocmt-bench measures the foundation's performance targets on this
// machine's Docker engine, side by side in one run, and prints them as a
// Markdown table (or JSON with --json):
//
//  1. provisioning a new user through agent.Server vs. a raw
//     ContainerCreate+ContainerStart of the same image (ratio ≤ 1.5);
//  2. wake from paused (p95 < 300 ms), with and without a first proxied request;
//  3. wake from stopped (p95 < 2 s);
//  4. idle RSS of one user container (< 20 MiB);
//  5. provisioning 10 and 50 users at once: wall time and memory.
//
// Run it from the repository root:
//
//	go run ./cmd/ocmt-bench [--binary PATH] [--users 50] [--quick] [--json]
//
// It builds an ocmt binary (unless --binary is given), builds or reuses the
// agent image from it, and works on a dedicated network ("ocmt-bench"), a
// throwaway data directory and user ids unique to the run. Everything it
// creates in the engine except the ocmt-agent image is removed at the end,
// also on Ctrl-C. Progress goes to stderr, results to stdout.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/roles/agent"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/store"
)

// Bounds of the run.
const (
	maxUsers        = 55 // at most this many user containers at once
	memoryMiB       = 256
	nanoCPUs        = 1_000_000_000
	pidsLimit       = 256
	benchVersion    = "bench"
	cleanupTimeout  = 3 * time.Minute
	defaultNetwork  = "ocmt-bench"
	defaultUsers    = 50
	provisionRounds = 10
	pausedRounds    = 20
	stoppedRounds   = 10
	idleFor         = 5 * time.Second
)

type config struct {
	binary   string
	network  string
	users    int
	quick    bool
	json     bool
	provN    int
	pausedN  int
	stoppedN int
}

func main() {
	var c config
	flag.StringVar(&c.binary, "binary", "", "ocmt executable to put in the agent image (default: go build github.com/ocmt/ocmt)")
	flag.StringVar(&c.network, "network", defaultNetwork, "dedicated docker network for the bench's containers (removed at the end)")
	flag.IntVar(&c.users, "users", defaultUsers, fmt.Sprintf("size of the large concurrent-provisioning run (1..%d; the 10-user run always happens)", maxUsers))
	flag.BoolVar(&c.quick, "quick", false, "run only the 10-user concurrent provisioning, not --users")
	flag.BoolVar(&c.json, "json", false, "print results as JSON on stdout instead of the Markdown table")
	flag.IntVar(&c.provN, "provision-n", provisionRounds, "provision samples of each kind")
	flag.IntVar(&c.pausedN, "paused-n", pausedRounds, "wake-from-paused samples")
	flag.IntVar(&c.stoppedN, "stopped-n", stoppedRounds, "wake-from-stopped samples")
	flag.Parse()
	if c.users < 1 || c.users > maxUsers {
		fatalf("--users must be between 1 and %d (the bench keeps at most ~%d containers at once)", maxUsers, maxUsers)
	}
	if c.provN < 1 || c.pausedN < 1 || c.stoppedN < 1 {
		fatalf("sample counts must be at least 1")
	}

	ctx, stop := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		progressf("interrupted: stopping and cleaning up (interrupt again to exit at once, leaving containers behind)")
		stop()
		<-sigs
		fmt.Fprintln(os.Stderr, "ocmt-bench: exiting without cleanup; remove containers named ocmt-usr_bench-*, ocmt-bench-raw-* and volumes ocmt-data-usr_bench-* by hand")
		os.Exit(130)
	}()

	start := time.Now()
	res, err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocmt-bench:", err)
		os.Exit(1)
	}
	res.TotalSeconds = time.Since(start).Seconds()
	if c.json {
		if err := writeJSON(os.Stdout, res); err != nil {
			fatalf("%v", err)
		}
	} else {
		writeTable(os.Stdout, res)
	}
	progressf("done in %s", time.Since(start).Round(time.Second))
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "ocmt-bench: "+format+"\n", a...)
	os.Exit(2)
}

func progressf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

// bench is the state of one run.
type bench struct {
	cfg     config
	runID   string // random, keeps names apart from other runs
	drv     *docker.Driver
	cli     *client.Client // drv.Client(): raw operations, same connection pool
	ag      *agent.Server
	st      *store.Store // closed after the agent, which flushes into it
	image   string
	secret  string // OCMT_VAULT_SECRET of the raw containers
	rawSeq  int
	userSeq int

	mu    sync.Mutex
	users map[string]bool // user ids handed to the agent (for cleanup)
	raws  map[string]bool // raw container names (for cleanup)
}

func run(ctx context.Context, c config) (res *Results, err error) {
	res = &Results{Host: hostInfo()}

	// A clear message when no engine answers, before building anything.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ver, err := docker.Ping(pctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("no Docker engine answers (is dockerd running and DOCKER_HOST right?): %w", err)
	}
	res.Host.Engine = ver
	progressf("docker engine %s", ver)

	tmp, err := os.MkdirTemp("", "ocmt-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	bin := c.binary
	if bin == "" {
		bin = filepath.Join(tmp, "ocmt")
		progressf("building ocmt binary (go build -o %s github.com/ocmt/ocmt)", bin)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/ocmt/ocmt")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build github.com/ocmt/ocmt (run from the repository root, or pass --binary): %w", err)
		}
	} else if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("--binary: %w", err)
	}

	rid := make([]byte, 3)
	rand.Read(rid)
	sec := make([]byte, 16)
	rand.Read(sec)
	b := &bench{cfg: c, runID: hex.EncodeToString(rid), secret: hex.EncodeToString(sec),
		users: map[string]bool{}, raws: map[string]bool{}}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.drv, err = docker.New(ctx, docker.Options{Binary: bin, Network: c.network, Version: benchVersion, Logger: logger, Deployment: "bench-" + b.runID})
	if err != nil {
		return nil, fmt.Errorf("no Docker engine answers: %w", err)
	}
	b.cli = b.drv.Client()
	// Whatever happens from here on, leave the engine as we found it.
	defer func() {
		if cerr := b.cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	t0 := time.Now()
	tag, _ := docker.ImageTag(bin, benchVersion)
	progressf("preparing agent image %s (built once if missing; not timed)", tag)
	b.image, err = b.drv.Prepare(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("prepare agent image: %w", err)
	}
	progressf("image ready in %s", time.Since(t0).Round(time.Millisecond))
	res.Host.Image = b.image

	b.st, err = store.Open(ctx, filepath.Join(tmp, "data", store.FileName), nil)
	if err != nil {
		return nil, err
	}
	b.ag, err = agent.New(ctx, agent.Options{
		Driver: b.drv, Store: b.st, Log: logger, Version: benchVersion, Binary: bin,
		DataDir: filepath.Join(tmp, "data", "users"), MemoryMiB: memoryMiB, NanoCPUs: nanoCPUs, PidsLimit: pidsLimit,
		IdlePauseAfter: 0, PausedStopAfter: 0, // never: hibernation must not interfere
	})
	if err != nil {
		return nil, err
	}
	// The agent's Run loop is not started: nothing should sweep.

	phases := []struct {
		name string
		fn   func(context.Context, *Results) error
	}{
		{"provision", b.benchProvision},
		{"wake", b.benchWake},
		{"idle RSS", b.benchIdle},
		{"scale", b.benchScale},
	}
	for _, p := range phases {
		if err := ctx.Err(); err != nil {
			return nil, errors.New("interrupted")
		}
		if err := p.fn(ctx, res); err != nil {
			if ctx.Err() != nil {
				return nil, errors.New("interrupted")
			}
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return res, nil
}

// newUser returns a fresh user id unique to this run, e.g.
// "usr_bench-1a2b3c-0007", and remembers it for cleanup.
func (b *bench) newUser() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.userSeq++
	id := fmt.Sprintf("usr_bench-%s-%04d", b.runID, b.userSeq)
	b.users[id] = true
	return id
}

func (b *bench) newRawName() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rawSeq++
	n := fmt.Sprintf("ocmt-bench-raw-%s-%04d", b.runID, b.rawSeq)
	b.raws[n] = true
	return n
}

// cleanup stops the agent's background work, then removes every container
// and volume of the run and the network, with its own engine client (the
// agent closes the driver's). The ocmt-agent image stays.
func (b *bench) cleanup() error {
	progressf("cleaning up")
	if b.ag != nil {
		b.ag.Close() // cancels provisioning under way and waits for it; closes the driver
	} else {
		b.drv.Close()
	}
	if b.st != nil {
		b.st.Close()
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("cleanup: engine: %w", err)
	}

	// Containers: the tracked names, and anything named after this run
	// (a create cancelled by Ctrl-C may still have completed in the engine).
	names := map[string]bool{}
	b.mu.Lock()
	for id := range b.users {
		names["ocmt-"+id] = true
	}
	for n := range b.raws {
		names[n] = true
	}
	b.mu.Unlock()
	for _, prefix := range []string{"ocmt-usr_bench-" + b.runID + "-", "ocmt-bench-raw-" + b.runID + "-"} {
		lst, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("name", prefix)})
		if err != nil {
			return fmt.Errorf("cleanup: list containers: %w", err)
		}
		for _, c := range lst.Items {
			for _, n := range c.Names {
				names[trimSlash(n)] = true
			}
		}
	}
	var failed []string
	removed := 0
	forEach(sortedKeys(names), 8, func(n string) {
		_, err := cli.ContainerRemove(ctx, n, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		switch {
		case err == nil:
			b.mu.Lock()
			removed++
			b.mu.Unlock()
		case cerrdefs.IsNotFound(err):
		default:
			b.mu.Lock()
			failed = append(failed, "container "+n+": "+err.Error())
			b.mu.Unlock()
		}
	})

	// Volumes of the run's users.
	vols := map[string]bool{}
	b.mu.Lock()
	for id := range b.users {
		vols["ocmt-data-"+id] = true
	}
	b.mu.Unlock()
	if lst, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("name", "ocmt-data-usr_bench-"+b.runID+"-")}); err == nil {
		for _, v := range lst.Items {
			vols[v.Name] = true
		}
	}
	vremoved := 0
	forEach(sortedKeys(vols), 8, func(v string) {
		// No Force: with it the engine reports success for a missing volume.
		_, err := cli.VolumeRemove(ctx, v, client.VolumeRemoveOptions{})
		switch {
		case err == nil:
			b.mu.Lock()
			vremoved++
			b.mu.Unlock()
		case cerrdefs.IsNotFound(err):
		default:
			b.mu.Lock()
			failed = append(failed, "volume "+v+": "+err.Error())
			b.mu.Unlock()
		}
	})

	// The dedicated network (exact name: the engine's filter matches substrings).
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", b.cfg.network)})
	nremoved := 0
	if err == nil {
		for _, n := range nets.Items {
			if n.Name != b.cfg.network {
				continue
			}
			if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				failed = append(failed, "network "+n.Name+": "+err.Error())
			} else {
				nremoved++
			}
		}
	}
	progressf("removed %d containers, %d volumes, %d network(s); kept image %s", removed, vremoved, nremoved, b.image)
	if len(failed) > 0 {
		for _, f := range failed {
			progressf("cleanup failed: %s", f)
		}
		return fmt.Errorf("cleanup left %d object(s) behind", len(failed))
	}
	return nil
}

func trimSlash(s string) string {
	if len(s) > 0 && s[0] == '/' {
		return s[1:]
	}
	return s
}
