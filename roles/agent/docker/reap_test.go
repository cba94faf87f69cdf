package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// TestContainerReapsOrphans is ocmt issue 8 item 9: the vault role ran as
// PID 1 and never reaped orphaned processes, so their zombies held PID
// slots (236 of them, against a PIDs limit) until a restart. User
// containers now run under the engine's init (HostConfig.Init, docker-init
// = tini), which reaps them. The test copies a static helper into the
// container's /data volume (the root filesystem is read-only and /tmp is
// noexec), makes orphans with docker exec, and counts zombies through
// /proc inside the container and through the engine's PIDs count.
func TestContainerReapsOrphans(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()
	spec := testSpec(f.image)
	spec.PidsLimit = 256
	inst := createInstance(t, f.drv, spec)
	if _, err := f.drv.Start(ctx, inst.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	cli := f.drv.Client()
	res, err := cli.ContainerInspect(ctx, inst.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hc := res.Container.HostConfig; hc.Init == nil || !*hc.Init {
		t.Errorf("HostConfig.Init = %v, want true", hc.Init)
	}

	helper := filepath.Join(t.TempDir(), "orphans")
	build := exec.Command("go", "build", "-o", helper, "./testdata/orphans")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build helper: %v\n%s", err, b)
	}
	bin, err := os.ReadFile(helper)
	if err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "orphans", Mode: 0o755, Size: int64(len(bin)), Uid: 65532, Gid: 65532, ModTime: time.Now()})
	tw.Write(bin)
	tw.Close()
	if _, err := cli.CopyToContainer(ctx, inst.ID, client.CopyToContainerOptions{DestinationPath: imageDataDir, Content: &tb}); err != nil {
		t.Fatalf("copy helper into /data: %v", err)
	}

	const rounds, perRound = 4, 10
	for range rounds {
		if out := execIn(t, cli, inst.ID, imageDataDir+"/orphans", "make", fmt.Sprint(perRound)); !strings.Contains(out, "started") {
			t.Fatalf("make orphans: %q", out)
		}
		time.Sleep(600 * time.Millisecond) // the orphans exit after 300 ms
	}
	var out string
	deadline := time.Now().Add(10 * time.Second)
	for {
		out = execIn(t, cli, inst.ID, imageDataDir+"/orphans", "count")
		if strings.HasPrefix(out, "zombies=0 ") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	pids := int64(-1)
	if st, err := f.drv.Stats(ctx, inst.ID); err == nil {
		pids = int64(st.Pids)
	}
	t.Logf("after %d orphans: %s; engine PIDs count %d (limit %d)", rounds*perRound, out, pids, spec.PidsLimit)
	if !strings.HasPrefix(out, "zombies=0 ") {
		t.Errorf("zombies are not reaped: %s", out)
	}
	if !strings.Contains(out, "pid1=docker-init") && !strings.Contains(out, "pid1=tini") {
		t.Errorf("PID 1 is not the engine's init: %s", out)
	}
	if pids >= rounds*perRound {
		t.Errorf("engine counts %d PIDs after %d reaped orphans", pids, rounds*perRound)
	}
	// The vault still answers behind the init.
	if st, err := f.drv.Inspect(ctx, inst.ID); err != nil || st.Endpoint == "" {
		t.Fatalf("Inspect after orphans: %+v, %v", st, err)
	}
}

// execIn runs cmd in container id as the container's user and returns its
// standard output (and error output), failing t on engine errors.
func execIn(t *testing.T, cli *client.Client, id string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := cli.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatalf("exec create %v: %v", cmd, err)
	}
	att, err := cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec attach %v: %v", cmd, err)
	}
	defer att.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		t.Fatalf("exec %v: read output: %v", cmd, err)
	}
	return strings.TrimSpace(stdout.String() + stderr.String())
}

// TestFingerprintCoversInit: the init is part of the configuration
// fingerprint, so a container created before it was added (whose label
// holds the fingerprint without it) is recreated by the agent role's
// config change pass (roles/agent/configchange.go) and gets the init too.
func TestFingerprintCoversInit(t *testing.T) {
	d := &Driver{opts: Options{Network: DefaultNetwork}}
	spec := testSpec("ocmt-agent:test")
	before := spec.Fingerprint("network=" + DefaultNetwork) // what Create labelled containers with before
	if got := d.Fingerprint(spec); got == before || got != d.Fingerprint(spec) {
		t.Fatalf("Fingerprint = %s, before the init %s", got, before)
	}
}
