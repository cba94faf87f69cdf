package roles

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/roles/agent/process"
	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
)

// readyz serves the probes of checks and GETs /readyz.
func readyz(t *testing.T, checks []web.Check) (int, api.Probe) {
	t.Helper()
	srv := httptest.NewServer(web.Probes{Checks: checks}.Handler(slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p api.Probe
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, p
}

// TestReadyzDatabase: a closed database makes /readyz answer 503 naming
// "database"; /livez does not ask it.
func TestReadyzDatabase(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	var addr atomic.Pointer[string]
	checks := readyChecks(st, process.New(slog.New(slog.DiscardHandler)), nil, &addr)
	if code, p := readyz(t, checks); code != http.StatusOK || p.Checks["database"] != api.ProbeOK || p.Checks["engine"] != api.ProbeOK {
		t.Fatalf("open store: %d %+v", code, p)
	}
	st.Close()
	code, p := readyz(t, checks)
	if code != http.StatusServiceUnavailable || p.Status != api.ProbeFailing || p.Checks["database"] != api.ProbeFailing || p.Checks["engine"] != api.ProbeOK {
		t.Errorf("closed store: %d %+v, want 503 naming database", code, p)
	}
	srv := httptest.NewServer(web.Probes{Checks: checks}.Handler(slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/livez with a closed store: %s, want 200", resp.Status)
	}
}

// TestReadyzRelay: the relay check fails when nothing listens where
// vaults reach the relay.
func TestReadyzRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	var addr atomic.Pointer[string]
	addr.Store(&a)
	checks := []web.Check{{Name: "relay", Func: dialCheck(&addr)}}
	if code, p := readyz(t, checks); code != http.StatusOK {
		t.Fatalf("listening: %d %+v", code, p)
	}
	ln.Close()
	if code, p := readyz(t, checks); code != http.StatusServiceUnavailable || p.Checks["relay"] != api.ProbeFailing {
		t.Errorf("listener closed: %d %+v, want 503 naming relay", code, p)
	}
}

// TestReadyzEngine: a docker driver whose engine goes away (its socket, a
// forwarder to the real engine here, stops answering) makes /readyz answer
// 503 naming "engine".
func TestReadyzEngine(t *testing.T) {
	const real = "/var/run/docker.sock"
	if _, err := docker.Ping(context.Background()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker engine required (CI=true): %v", err)
		}
		t.Skipf("skipping: no docker engine answers (%v); set CI=true to make this a failure", err)
	}
	sock := filepath.Join(t.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	go func() { // forward each connection to the real engine
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				e, err := net.Dial("unix", real)
				if err != nil {
					return
				}
				defer e.Close()
				go func() { io.Copy(e, c); e.(*net.UnixConn).CloseWrite() }()
				io.Copy(c, e)
			})
		}
	}()
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	d, err := docker.New(context.Background(), docker.Options{Image: "unused:latest", Network: "ocmt-readyz-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var drv runtime.Driver = d
	checks := []web.Check{{Name: "engine", Func: drv.Ping}}
	if code, p := readyz(t, checks); code != http.StatusOK || p.Checks["engine"] != api.ProbeOK {
		t.Fatalf("engine up: %d %+v", code, p)
	}
	ln.Close() // the engine's socket is gone
	os.Remove(sock)
	d.Client().Close() // drop kept-alive connections through the forwarder
	code, p := readyz(t, checks)
	if code != http.StatusServiceUnavailable || p.Checks["engine"] != api.ProbeFailing {
		t.Errorf("engine gone: %d %+v, want 503 naming engine", code, p)
	}
	err = drv.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "docker engine ping") {
		t.Errorf("Ping with the engine gone = %v", err)
	}
	wg.Wait()
}
