package main

import (
	"bufio"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocmt/ocmt/xtest"
)

// TestServeSmoke runs the real binary as a process: it starts on an empty
// data directory, prints its URL and the first-start link, answers
// /healthz, and exits 0 on SIGTERM after a graceful shutdown.
func TestServeSmoke(t *testing.T) {
	bin := xtest.Binary(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "serve", "--runtime=process", "--listen=127.0.0.1:0", "--data-dir="+dir)
	// Port 0 is resolved at listen time; read the real address from the log.
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	outLines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			outLines <- sc.Text()
		}
	}()
	var addr string
	deadline := time.After(time.Minute)
	for addr == "" {
		select {
		case l := <-logs:
			if i := strings.Index(l, "listen="); i >= 0 && strings.Contains(l, "ocmt serving") {
				addr = strings.Fields(l[i+len("listen="):])[0]
			}
		case <-deadline:
			t.Fatal("no listen address logged")
		}
	}
	var sawLink bool
	timeout := time.After(10 * time.Second)
	for !sawLink {
		select {
		case l := <-outLines:
			sawLink = strings.Contains(l, "/auth/verify?token=")
		case <-timeout:
			t.Fatal("no first-start link printed")
		}
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not exit within 30 s of SIGTERM")
	}
	var all strings.Builder
	for l := range logs {
		all.WriteString(l + "\n")
	}
	if !strings.Contains(all.String(), "shutting down") {
		t.Fatalf("no graceful shutdown in log:\n%s", all.String())
	}
}
