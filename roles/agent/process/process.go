// Package process is the agent role's fallback runtime: each user's "container"
// is a child process `ocmt serve --role=vault` with its own data directory and
// loopback port. It isolates far less than the docker driver (same user, same
// filesystem view, no resource limits beyond what the OS gives) and is meant
// for machines without a container engine and for fast tests.
//
// Children die with the agent role (PR_SET_PDEATHSIG), so after a restart
// every instance is gone and is recreated, keeping its data, on the next wake.
package process

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent/runtime"
)

// Driver runs vault roles as child processes. It satisfies runtime.Driver.
type Driver struct {
	log *slog.Logger
	mu  sync.Mutex
	ins map[string]*instance // by id
}

type instance struct {
	spec   runtime.Spec
	config string // Fingerprint of the spec given to Create
	id     string
	cmd    *exec.Cmd // nil when stopped
	done   chan struct{}
	paused bool
	port   int
	out    *ring // the last lines the process wrote (all its starts); guarded by Driver.mu
}

// LogLines is how many output lines the driver keeps per instance, for Logs.
const LogLines = 100

// ring holds the last LogLines lines.
type ring struct {
	lines [LogLines]string
	next  int // index of the slot the next line goes to
	n     int // lines held, ≤ LogLines
}

func (r *ring) add(line string) {
	r.lines[r.next] = line
	r.next = (r.next + 1) % LogLines
	if r.n < LogLines {
		r.n++
	}
}

// last returns the last tail lines, oldest first.
func (r *ring) last(tail int) []string {
	if tail > r.n {
		tail = r.n
	}
	out := make([]string, 0, max(tail, 0))
	for i := r.next - tail; i < r.next; i++ {
		out = append(out, r.lines[(i+LogLines)%LogLines])
	}
	return out
}

// New returns a process driver. log receives the children's stderr lines.
func New(log *slog.Logger) *Driver {
	return &Driver{log: log, ins: map[string]*instance{}}
}

// Name implements runtime.Driver.
func (d *Driver) Name() string { return "process" }

// Prepare implements runtime.Driver; there is no image.
func (d *Driver) Prepare(ctx context.Context, progress func(api.Progress)) (string, error) {
	if progress != nil {
		progress(api.Progress{Phase: api.PhaseImage, Message: "The agent software is ready.", Percent: 40})
	}
	return "", nil
}

// Fingerprint implements runtime.Driver: spec.Fingerprint with the
// executable and the data directory.
func (d *Driver) Fingerprint(spec runtime.Spec) string {
	return spec.Fingerprint("binary="+spec.Binary, "data="+spec.DataDir)
}

// Create implements runtime.Driver: it makes the data directory (0700).
// The instance keeps spec for every Start, and its fingerprint.
func (d *Driver) Create(ctx context.Context, spec runtime.Spec) (runtime.Instance, error) {
	if spec.Binary == "" || spec.DataDir == "" {
		return runtime.Instance{}, errors.New("process: spec needs Binary and DataDir")
	}
	fp := d.Fingerprint(spec)
	dir := filepath.Join(spec.DataDir, spec.UserID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return runtime.Instance{}, fmt.Errorf("process: create data dir: %w", err)
	}
	spec.DataDir = dir
	id := "proc-" + spec.UserID
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.ins[id]; old != nil && old.cmd != nil {
		return runtime.Instance{}, fmt.Errorf("process: %s already exists", id)
	}
	d.ins[id] = &instance{spec: spec, config: fp, id: id, out: &ring{}}
	return d.view(d.ins[id]), nil
}

func (d *Driver) view(in *instance) runtime.Instance {
	v := runtime.Instance{ID: in.id, UserID: in.spec.UserID, State: runtime.EngineStopped, Config: in.config}
	if in.cmd != nil {
		v.State = runtime.EngineRunning
		if in.paused || stoppedBySignal(in.cmd.Process.Pid) {
			v.State = runtime.EnginePaused
		}
		v.Endpoint = "http://127.0.0.1:" + strconv.Itoa(in.port)
	}
	return v
}

// stoppedBySignal reports whether process pid is stopped (state "T" in
// /proc/<pid>/stat), so a SIGSTOP sent behind the driver's back reads as
// paused, like `docker pause` does in the docker driver. Without /proc it
// reports false.
func stoppedBySignal(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses; the state
	// follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't')
}

func (d *Driver) get(id string) (*instance, error) {
	in := d.ins[id]
	if in == nil {
		return nil, runtime.ErrNotFound
	}
	return in, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start implements runtime.Driver.
func (d *Driver) Start(ctx context.Context, id string) (runtime.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, err := d.get(id)
	if err != nil {
		return runtime.Instance{}, err
	}
	if in.cmd != nil {
		return d.view(in), nil
	}
	port, err := freePort()
	if err != nil {
		return runtime.Instance{}, fmt.Errorf("process: pick port: %w", err)
	}
	cmd := exec.Command(in.spec.Binary, "serve", "--role=vault",
		"--listen=127.0.0.1:"+strconv.Itoa(port), "--data-dir="+in.spec.DataDir)
	cmd.Env = append(in.spec.EnvList(), "HOME="+in.spec.DataDir, "PATH=/usr/bin:/bin")
	cmd.Dir = in.spec.DataDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// stdout and stderr both go to one pipe, read line by line (logLines).
	pr, pw, err := os.Pipe()
	if err != nil {
		return runtime.Instance{}, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close() // the child holds its own copy
	if err != nil {
		pr.Close()
		return runtime.Instance{}, fmt.Errorf("process: start vault: %w", err)
	}
	in.cmd, in.port, in.paused, in.done = cmd, port, false, make(chan struct{})
	go d.logLines(in, pr)
	go func(in *instance, cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		d.mu.Lock()
		if in.cmd == cmd {
			in.cmd, in.paused = nil, false
		}
		d.mu.Unlock()
		close(done)
	}(in, cmd, in.done)
	return d.view(in), nil
}

// logLines logs each line the child writes and keeps it for Logs, until
// the child (and every process holding its output) exits.
func (d *Driver) logLines(in *instance, r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		d.mu.Lock()
		in.out.add(line)
		d.mu.Unlock()
		d.log.Info("vault: "+line, "user", in.spec.UserID)
	}
}

// Logs implements runtime.Driver from the last LogLines lines kept.
func (d *Driver) Logs(ctx context.Context, id string, tail int) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, err := d.get(id)
	if err != nil {
		return nil, err
	}
	return in.out.last(tail), nil
}

// Ping implements runtime.Driver: processes need no engine.
func (d *Driver) Ping(ctx context.Context) error { return nil }

func (d *Driver) signal(id string, sig syscall.Signal, paused bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, err := d.get(id)
	if err != nil {
		return err
	}
	if in.cmd == nil {
		return fmt.Errorf("process: %s is not running", id)
	}
	if err := syscall.Kill(-in.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("process: signal: %w", err)
	}
	in.paused = paused
	return nil
}

// Pause implements runtime.Driver (SIGSTOP to the process group).
func (d *Driver) Pause(ctx context.Context, id string) error {
	return d.signal(id, syscall.SIGSTOP, true)
}

// Unpause implements runtime.Driver (SIGCONT).
func (d *Driver) Unpause(ctx context.Context, id string) error {
	return d.signal(id, syscall.SIGCONT, false)
}

// Stop implements runtime.Driver: SIGTERM, then SIGKILL after timeout.
func (d *Driver) Stop(ctx context.Context, id string, timeout time.Duration) error {
	d.mu.Lock()
	in, err := d.get(id)
	if err != nil {
		d.mu.Unlock()
		return err
	}
	cmd, done := in.cmd, in.done
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pg := -cmd.Process.Pid
	_ = syscall.Kill(pg, syscall.SIGCONT)
	_ = syscall.Kill(pg, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(timeout):
		_ = syscall.Kill(pg, syscall.SIGKILL)
		<-done
	case <-ctx.Done():
		_ = syscall.Kill(pg, syscall.SIGKILL)
		<-done
	}
	return nil
}

// Remove implements runtime.Driver.
func (d *Driver) Remove(ctx context.Context, id string, keepData bool) error {
	if err := d.Stop(ctx, id, 5*time.Second); err != nil {
		return err
	}
	d.mu.Lock()
	in := d.ins[id]
	delete(d.ins, id)
	d.mu.Unlock()
	if !keepData && in != nil {
		if err := os.RemoveAll(in.spec.DataDir); err != nil {
			return fmt.Errorf("process: remove data: %w", err)
		}
	}
	return nil
}

// Inspect implements runtime.Driver.
func (d *Driver) Inspect(ctx context.Context, id string) (runtime.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, err := d.get(id)
	if err != nil {
		return runtime.Instance{}, err
	}
	return d.view(in), nil
}

// List implements runtime.Driver.
func (d *Driver) List(ctx context.Context) ([]runtime.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]runtime.Instance, 0, len(d.ins))
	for _, in := range d.ins {
		out = append(out, d.view(in))
	}
	return out, nil
}

// Stats implements runtime.Driver from /proc/<pid>/status (VmRSS).
func (d *Driver) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	d.mu.Lock()
	in, err := d.get(id)
	var pid int
	if err == nil && in.cmd != nil {
		pid = in.cmd.Process.Pid
	}
	d.mu.Unlock()
	if err != nil {
		return runtime.Stats{}, err
	}
	if pid == 0 {
		return runtime.Stats{}, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return runtime.Stats{}, fmt.Errorf("process: stats: %w", err)
	}
	var st runtime.Stats
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			st.MemoryBytes = kb * 1024
		}
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			st.Pids, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return st, nil
}

// Close implements runtime.Driver: unlike containers, child processes cannot
// be found again after a restart, so Close stops them all (SIGTERM, then
// SIGKILL after 5 s). Their data stays.
func (d *Driver) Close() error {
	d.mu.Lock()
	ids := make([]string, 0, len(d.ins))
	for id := range d.ins {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	for _, id := range ids {
		_ = d.Stop(context.Background(), id, 5*time.Second)
	}
	return nil
}
