package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocmt/ocmt/xtest"
)

// serveProc is one `ocmt serve` child process.
type serveProc struct {
	cmd    *exec.Cmd
	stdout *bytes.Buffer
	lines  chan string // stderr, line by line; closed at EOF
	addr   string      // listen address, once "ocmt serving" was logged
}

// startServe starts `ocmt serve --runtime=process` on dataDir, listening
// on a free loopback port. It is killed at cleanup.
func startServe(t *testing.T, bin, dataDir string) *serveProc {
	t.Helper()
	p := &serveProc{stdout: new(bytes.Buffer), lines: make(chan string, 1000)}
	p.cmd = exec.Command(bin, "serve", "--runtime=process", "--listen=127.0.0.1:0", "--data-dir="+dataDir)
	p.cmd.Stdout = p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

// waitServing reads p's log until it says it is serving and records the
// address; it fails the test if p exits first.
func (p *serveProc) waitServing(t *testing.T) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("serve exited before serving (stdout %q)", p.stdout)
			}
			if i := strings.Index(l, "listen="); i >= 0 && strings.Contains(l, "ocmt serving") {
				p.addr = strings.Fields(l[i+len("listen="):])[0]
				return
			}
		case <-deadline:
			t.Fatal("serve logged no listen address within a minute")
		}
	}
}

// healthy fails t unless p answers /healthz with 200.
func (p *serveProc) healthy(t *testing.T) {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/healthz")
	if err != nil {
		t.Fatalf("healthz of pid %d: %v", p.cmd.Process.Pid, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz of pid %d: %s", p.cmd.Process.Pid, resp.Status)
	}
}

// expectRefused reads p's whole stderr and waits for it to exit: it must
// exit non-zero having printed exactly want on stderr and nothing on
// stdout. A p that starts serving instead fails the test at once.
func (p *serveProc) expectRefused(t *testing.T, want string) {
	t.Helper()
	var got []string
	deadline := time.After(time.Minute)
	for done := false; !done; {
		select {
		case l, ok := <-p.lines:
			if !ok {
				done = true
				break
			}
			got = append(got, l)
			if strings.Contains(l, "ocmt serving") {
				t.Fatalf("second serve started on a data directory in use: %q", l)
			}
		case <-deadline:
			t.Fatalf("second serve neither exited nor served within a minute; stderr so far %q", got)
		}
	}
	err := p.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("second serve exit = %v, want status 1", err)
	}
	if len(got) != 1 || got[0] != want {
		t.Errorf("second serve stderr = %q\nwant one line %q", got, want)
	}
	if p.stdout.Len() != 0 {
		t.Errorf("second serve wrote to stdout (it got as far as the store): %q", p.stdout)
	}
}

// TestServeRefusesDataDirInUse: a second serve on a data directory in use
// exits at once with one line naming the first (pid and the address it
// really listens on), before opening the store (it prints no URL and no
// first-start link); the first keeps serving.
func TestServeRefusesDataDirInUse(t *testing.T) {
	bin := xtest.Binary(t)
	dir := t.TempDir()
	first := startServe(t, bin, dir)
	first.waitServing(t)

	second := startServe(t, bin, dir)
	want := fmt.Sprintf("ocmt: data directory %s is in use by another ocmt (pid %d, listening on %s); stop it first",
		dir, first.cmd.Process.Pid, first.addr)
	second.expectRefused(t, want)

	first.healthy(t)
	if n := strings.Count(first.stdout.String(), "/auth/verify?token="); n != 1 {
		t.Errorf("first serve printed %d first-start links, want 1:\n%s", n, first.stdout)
	}
}

// TestServeAfterCrash: a serve killed with SIGKILL leaves its lock file
// behind, and the next serve starts anyway, then holds the directory
// itself.
func TestServeAfterCrash(t *testing.T) {
	bin := xtest.Binary(t)
	dir := t.TempDir()
	crashed := startServe(t, bin, dir)
	crashed.waitServing(t)
	if err := crashed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = crashed.cmd.Wait()

	next := startServe(t, bin, dir)
	next.waitServing(t)
	next.healthy(t)

	third := startServe(t, bin, dir)
	third.expectRefused(t, fmt.Sprintf("ocmt: data directory %s is in use by another ocmt (pid %d, listening on %s); stop it first",
		dir, next.cmd.Process.Pid, next.addr))
}
