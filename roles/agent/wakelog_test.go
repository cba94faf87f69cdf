package agent_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/roles/agent/process"
	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/xtest"
)

// badPublicURL makes the vault role refuse its configuration and exit at
// start; wantLine is (part of) the error line it prints.
const (
	badPublicURL = "ftp://not-http.example"
	wantLine     = `--public-url: "ftp://not-http.example" is not an http(s) URL`
)

// failedStart provisions a user on drv with a configuration the vault
// refuses, waits for the error state and returns the agent role's log.
func failedStart(t *testing.T, drv runtime.Driver, bin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &xtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := agent.New(ctx, agent.Options{Driver: keepOpen{drv}, Store: st, Log: log, Version: "test", Binary: bin,
		DataDir: filepath.Join(dir, "users"), PublicURL: badPublicURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	uid := store.NewID("usr")
	t.Cleanup(func() { // the container and its volume outlive the server by design
		if in, err := drv.List(context.Background()); err == nil {
			for _, i := range in {
				if i.UserID == uid {
					drv.Remove(context.Background(), i.ID, false)
				}
			}
		}
	})
	if err := s.Provision(ctx, uid); err != nil {
		t.Fatal(err)
	}
	for {
		as, err := s.Status(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		if as.State == api.StateError {
			break
		}
		if as.State == api.StateRunning {
			t.Fatalf("the vault started with public URL %q", badPublicURL)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("provisioning did not fail: %+v\nlog:\n%s", as, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return logs.String()
}

// checkTail checks that the log says why: the container's own error line
// follows the failure.
func checkTail(t *testing.T, log string) {
	t.Helper()
	i := strings.Index(log, "container did not become healthy; its last output follows")
	if i < 0 {
		t.Fatalf("no failure line in the log:\n%s", log)
	}
	if !strings.Contains(log[i:], "container output") || !strings.Contains(log[i:], strings.ReplaceAll(wantLine, `"`, `\"`)) {
		t.Errorf("the container's error line %q is not logged after the failure:\n%s", wantLine, log[i:])
	}
}

// TestFailedStartLogsOutputProcess: with the process runtime, a vault that
// exits at start has its last output lines logged by the agent role.
func TestFailedStartLogsOutputProcess(t *testing.T) {
	drv := process.New(slog.New(slog.DiscardHandler))
	t.Cleanup(func() { drv.Close() })
	checkTail(t, failedStart(t, drv, xtest.Binary(t)))
}

// TestFailedStartLogsOutputDocker: the same with a real container, whose
// output is read back from the engine (docker logs, demultiplexed).
func TestFailedStartLogsOutputDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	bin := xtest.Binary(t)
	network := "ocmt-test-wakelog-" + strings.ToLower(store.NewID("n")[2:10])
	drv, err := docker.New(context.Background(), docker.Options{Binary: bin, Network: network, Version: "test",
		Deployment: store.NewID("dep")})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := docker.ImageTag(bin, "test")
	if err != nil {
		t.Fatal(err)
	}
	_, ierr := drv.Client().ImageInspect(context.Background(), tag)
	t.Cleanup(func() {
		ctx := context.Background()
		drv.Client().NetworkRemove(ctx, network, client.NetworkRemoveOptions{})
		if ierr != nil { // made by this test
			drv.Client().ImageRemove(ctx, tag, client.ImageRemoveOptions{})
		}
		drv.Close()
	})
	checkTail(t, failedStart(t, drv, bin))
}
