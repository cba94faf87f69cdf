package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent/runtime"
)

func TestPing(t *testing.T) {
	requireEngine(t)
	v, err := Ping(context.Background())
	if err != nil || v == "" {
		t.Fatalf("Ping = %q, %v", v, err)
	}
}

func TestNewNoEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	start := time.Now()
	_, err := New(context.Background(), Options{Binary: "/bin/true"})
	if err == nil {
		t.Fatal("New succeeded without an engine")
	}
	if !strings.Contains(err.Error(), "no docker engine") {
		t.Errorf("error %q does not say no engine answers", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("New took %v without an engine", time.Since(start))
	}
	if _, err := Ping(context.Background()); err == nil {
		t.Error("Ping succeeded without an engine")
	}
}

func TestPrepareBuildsAndReuses(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()
	want, err := ImageTag(f.binary, "test")
	if err != nil {
		t.Fatal(err)
	}
	if f.image != want || !strings.HasPrefix(f.image, "ocmt-agent:") || len(f.image) != len("ocmt-agent:")+12 {
		t.Fatalf("image = %q, want %q", f.image, want)
	}
	checkProgress(t, f.progress)
	if !f.imageExisted {
		built := slices.ContainsFunc(f.progress, func(p api.Progress) bool {
			return strings.HasPrefix(p.Message, "Preparing the agent software for this server (first time only; ") && strings.HasSuffix(p.Message, " MiB)…")
		})
		if !built {
			t.Errorf("first Prepare reported no build: %+v", f.progress)
		}
	}

	img, err := f.drv.Client().ImageInspect(ctx, f.image)
	if err != nil {
		t.Fatalf("ImageInspect: %v", err)
	}
	if img.Config == nil || img.Config.Labels[runtime.LabelVersion] != "test" || img.Config.User != userSpec {
		t.Errorf("image config = %+v, want label ocmt.version=test and user %s", img.Config, userSpec)
	}

	// A second driver finds the image and builds nothing.
	d2, err := New(ctx, Options{Binary: f.binary, Network: f.network, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	var again []api.Progress
	ref, err := d2.Prepare(ctx, func(p api.Progress) { again = append(again, p) })
	if err != nil || ref != f.image {
		t.Fatalf("second Prepare = %q, %v; want %q", ref, err, f.image)
	}
	checkProgress(t, again)
	for _, p := range again {
		if strings.Contains(p.Message, "building") {
			t.Errorf("second Prepare rebuilt: %+v", again)
		}
	}
	img2, err := d2.Client().ImageInspect(ctx, f.image)
	if err != nil || img2.ID != img.ID {
		t.Errorf("image changed on reuse: %v %s != %s", err, img2.ID, img.ID)
	}

	// The network exists, isolates containers and is ours.
	nw, err := f.drv.Client().NetworkInspect(ctx, f.network, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatalf("NetworkInspect: %v", err)
	}
	if nw.Network.Driver != "bridge" || nw.Network.Options[optEnableICC] != "false" || nw.Network.Labels[LabelManaged] != "true" {
		t.Errorf("network = driver %q options %v labels %v", nw.Network.Driver, nw.Network.Options, nw.Network.Labels)
	}
}

// checkProgress asserts image-phase events with percentages rising within
// 0–40 and a final "image ready" at 40.
func checkProgress(t *testing.T, ps []api.Progress) {
	t.Helper()
	if len(ps) < 2 || ps[0].Message != "Checking the agent software…" || ps[len(ps)-1].Percent != 40 {
		t.Fatalf("progress = %+v, want Checking the agent software… 40%%", ps)
	}
	last := 0
	for _, p := range ps {
		if p.Phase != api.PhaseImage || p.Percent < last || p.Percent > 40 {
			t.Errorf("bad progress event %+v after %d%%", p, last)
		}
		last = p.Percent
		checkWords(t, p.Message)
	}
}

// checkWords fails for a progress message that is not in plain words for
// the owner (issue 11): it starts with a capital and shows no Docker build
// output or jargon.
func checkWords(t *testing.T, msg string) {
	t.Helper()
	if msg == "" || strings.ToUpper(msg[:1]) != msg[:1] {
		t.Errorf("progress message %q does not start with a capital", msg)
	}
	for _, jargon := range []string{"image", "step", "COPY", "FROM", "RUN", "sha256", "layer", "context", "pull"} {
		if strings.Contains(msg, jargon) {
			t.Errorf("progress message %q shows %q", msg, jargon)
		}
	}
}

func TestOperatorImage(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()

	d, err := New(ctx, Options{Image: f.image, Network: f.network})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var ps []api.Progress
	ref, err := d.Prepare(ctx, func(p api.Progress) { ps = append(ps, p) })
	if err != nil || ref != f.image {
		t.Fatalf("Prepare = %q, %v; want %q as is", ref, err, f.image)
	}
	checkProgress(t, ps)

	// A missing image cannot be pulled here (no registry): a clear error.
	missing, err := New(ctx, Options{Image: "127.0.0.1:1/ocmt-missing:" + randHex(3), Network: f.network})
	if err != nil {
		t.Fatal(err)
	}
	defer missing.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := missing.Prepare(pctx, nil); err == nil || !strings.Contains(err.Error(), "pulling it failed") {
		t.Errorf("Prepare of a missing image: %v", err)
	}
}

// TestBuildErrorIsGoError feeds the engine a failing Dockerfile and checks
// the errorDetail in the stream comes back as an error.
func TestBuildErrorIsGoError(t *testing.T) {
	f := engineFixture(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	df := "FROM scratch\nCOPY not-there /x\n"
	_ = tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df))})
	_, _ = tw.Write([]byte(df))
	_ = tw.Close()
	res, err := f.drv.Client().ImageBuild(context.Background(), &buf, client.ImageBuildOptions{Version: "1", Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("ImageBuild: %v", err)
	}
	defer res.Body.Close()
	err = readJSONStream(res.Body, func(jsonstream.Message) {})
	if err == nil || !strings.Contains(err.Error(), "not-there") {
		t.Fatalf("build error = %v, want one naming not-there", err)
	}
}

func TestCreateHardening(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()
	spec := testSpec(f.image)
	inst := createInstance(t, f.drv, spec)
	if inst.ID == "" || inst.UserID != spec.UserID || inst.State != runtime.EngineStopped || inst.Endpoint != "" {
		t.Errorf("Create = %+v", inst)
	}
	started, err := f.drv.Start(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	res, err := f.drv.Client().ContainerInspect(ctx, inst.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Container
	hc, cfg := c.HostConfig, c.Config

	check := func(what string, ok bool, got any) {
		t.Helper()
		if !ok {
			t.Errorf("%s: got %v", what, got)
		}
	}
	check("name", c.Name == "/"+spec.Name, c.Name)
	check("user", cfg.User == "65532:65532", cfg.User)
	check("labels", cfg.Labels[runtime.LabelUser] == spec.UserID && cfg.Labels[runtime.LabelRole] == "vault" && cfg.Labels[runtime.LabelVersion] == "test", cfg.Labels)
	check("secret env", slices.Contains(cfg.Env, "OCMT_VAULT_SECRET="+spec.Secret), len(cfg.Env))
	check("read-only rootfs", hc.ReadonlyRootfs, hc.ReadonlyRootfs)
	check("cap drop", slices.Equal(hc.CapDrop, []string{"ALL"}), hc.CapDrop)
	check("cap add", len(hc.CapAdd) == 0, hc.CapAdd)
	check("no-new-privileges", slices.Contains(hc.SecurityOpt, "no-new-privileges:true"), hc.SecurityOpt)
	check("not privileged", !hc.Privileged, hc.Privileged)
	check("memory", hc.Memory == 64<<20, hc.Memory)
	check("no swap", hc.MemorySwap == hc.Memory, hc.MemorySwap)
	check("nano cpus", hc.NanoCPUs == 500_000_000, hc.NanoCPUs)
	check("pids limit", hc.PidsLimit != nil && *hc.PidsLimit == 64, hc.PidsLimit)
	check("tmpfs", hc.Tmpfs["/tmp"] == "rw,noexec,nosuid,size=16m", hc.Tmpfs)
	check("network mode", string(hc.NetworkMode) == f.network && !hc.NetworkMode.IsHost(), hc.NetworkMode)
	check("restart policy", hc.RestartPolicy.Name == container.RestartPolicyDisabled, hc.RestartPolicy)
	check("init", hc.Init != nil && *hc.Init, hc.Init) // docker-init reaps orphans (TestContainerReapsOrphans)
	check("no binds", len(hc.Binds) == 0, hc.Binds)
	check("pid/ipc not host", !hc.PidMode.IsHost() && !hc.IpcMode.IsHost(), []any{hc.PidMode, hc.IpcMode})
	check("exposed port", len(cfg.ExposedPorts) == 1, cfg.ExposedPorts)
	for port, bs := range hc.PortBindings {
		check("port binding "+port.String(), port == vaultPort && len(bs) == 1 && bs[0].HostIP == loopback, bs)
	}
	for port, bs := range c.NetworkSettings.Ports {
		for _, b := range bs {
			check("published "+port.String(), b.HostIP == loopback && b.HostPort != "", b)
		}
	}
	check("endpoint", strings.HasPrefix(started.Endpoint, "http://127.0.0.1:") && started.State == runtime.EngineRunning, started)
	check("networks", len(c.NetworkSettings.Networks) == 1 && c.NetworkSettings.Networks[f.network] != nil, c.NetworkSettings.Networks)
	check("one mount", len(c.Mounts) == 1, c.Mounts)
	for _, m := range c.Mounts {
		check("mount", m.Type == mount.TypeVolume && m.Name == volumeName(spec.UserID) && m.Destination == "/data" && m.RW, m)
		check("no docker socket", !strings.Contains(m.Source, "docker.sock"), m.Source)
	}
	vol, err := f.drv.Client().VolumeInspect(ctx, volumeName(spec.UserID), client.VolumeInspectOptions{})
	if err != nil || vol.Volume.Labels[runtime.LabelUser] != spec.UserID {
		t.Errorf("volume: %v, labels %v", err, vol.Volume.Labels)
	}

	mustHealthy(t, started, spec.Secret)
	if code, err := healthz(started.Endpoint, "wrong"); err == nil && code == http.StatusOK && !f.realBinary {
		t.Errorf("healthz with a wrong secret answered 200")
	}

	ip, err := f.drv.ContainerIP(ctx, inst.ID)
	if err != nil || ip == "" || strings.HasPrefix(ip, "127.") {
		t.Errorf("ContainerIP = %q, %v", ip, err)
	}

	// Creating the same name again is a conflict, not a second container.
	if _, err := f.drv.Create(ctx, spec); err == nil || !cerrdefs.IsConflict(err) {
		t.Errorf("second Create of %s: %v, want a conflict", spec.Name, err)
	}
}

func TestLifecycle(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()
	d := f.drv
	spec := testSpec(f.image)
	inst := createInstance(t, d, spec)

	expect := func(step, state string, withEndpoint bool) runtime.Instance {
		t.Helper()
		got, err := d.Inspect(ctx, inst.ID)
		if err != nil {
			t.Fatalf("%s: Inspect: %v", step, err)
		}
		if got.State != state || (got.Endpoint != "") != withEndpoint || got.UserID != spec.UserID || got.Image != f.image {
			t.Fatalf("%s: Inspect = %+v, want state %s (endpoint: %v)", step, got, state, withEndpoint)
		}
		return got
	}
	expect("created", runtime.EngineStopped, false)

	run, err := d.Start(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	mustHealthy(t, run, spec.Secret)

	st, err := d.Stats(ctx, inst.ID)
	if err != nil || st.MemoryBytes == 0 || st.Pids == 0 {
		t.Errorf("Stats = %+v, %v; want memory and pids", st, err)
	}

	if err := d.Pause(ctx, inst.ID); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	paused := expect("paused", runtime.EnginePaused, true)
	if paused.Endpoint != run.Endpoint {
		t.Errorf("endpoint changed on pause: %s -> %s", run.Endpoint, paused.Endpoint)
	}
	list, err := d.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	i := slices.IndexFunc(list, func(x runtime.Instance) bool { return x.ID == inst.ID })
	if i < 0 || list[i].State != runtime.EnginePaused || list[i].UserID != spec.UserID || list[i].Endpoint != run.Endpoint {
		t.Errorf("List entry = %+v (found %v), want paused %s at %s", list, i >= 0, spec.UserID, run.Endpoint)
	}

	if err := d.Unpause(ctx, inst.ID); err != nil {
		t.Fatalf("Unpause: %v", err)
	}
	mustHealthy(t, expect("unpaused", runtime.EngineRunning, true), spec.Secret)

	if err := d.Stop(ctx, inst.ID, 5*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	expect("stopped", runtime.EngineStopped, false)
	if st, err := d.Stats(ctx, inst.ID); err != nil || st.Pids != 0 {
		t.Errorf("Stats of stopped = %+v, %v", st, err)
	}
	run, err = d.Start(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Start after stop: %v", err)
	}
	mustHealthy(t, run, spec.Secret)

	// Stopping a paused container works too (the hibernation path).
	if err := d.Pause(ctx, inst.ID); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := d.Stop(ctx, inst.ID, 5*time.Second); err != nil {
		t.Fatalf("Stop while paused: %v", err)
	}
	expect("stopped from paused", runtime.EngineStopped, false)
	run, err = d.Start(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Start after paused stop: %v", err)
	}
	mustHealthy(t, run, spec.Secret)
}

func TestRemoveKeepsData(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()
	d := f.drv
	spec := testSpec(f.image)
	inst := createInstance(t, d, spec)
	run, err := d.Start(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	mustHealthy(t, run, spec.Secret)

	// A fresh volume took /data's owner and mode from the image.
	hdr, _ := copyOut(t, d, inst.ID, "/data")
	if hdr.Uid != containerUID || hdr.Gid != containerUID || hdr.Mode&0o777 != 0o700 {
		t.Errorf("/data in a fresh volume: uid %d gid %d mode %o; want 65532:65532 0700", hdr.Uid, hdr.Gid, hdr.Mode&0o777)
	}

	payload := []byte("kept across recreate " + randHex(4))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "marker.txt", Mode: 0o600, Size: int64(len(payload)), Uid: containerUID, Gid: containerUID})
	_, _ = tw.Write(payload)
	_ = tw.Close()
	if _, err := d.Client().CopyToContainer(ctx, inst.ID, client.CopyToContainerOptions{DestinationPath: "/data", Content: &buf}); err != nil {
		t.Fatalf("CopyToContainer: %v", err)
	}

	if err := d.Remove(ctx, inst.ID, true); err != nil {
		t.Fatalf("Remove(keepData): %v", err)
	}
	if _, err := d.Inspect(ctx, inst.ID); !isNotFound(err) {
		t.Errorf("Inspect after Remove: %v, want ErrNotFound", err)
	}
	if _, err := d.Client().VolumeInspect(ctx, volumeName(spec.UserID), client.VolumeInspectOptions{}); err != nil {
		t.Fatalf("volume gone after Remove(keepData=true): %v", err)
	}

	again, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create again: %v", err)
	}
	if again.ID == inst.ID {
		t.Fatal("Create returned the removed container")
	}
	run, err = d.Start(ctx, again.ID)
	if err != nil {
		t.Fatalf("Start again: %v", err)
	}
	mustHealthy(t, run, spec.Secret)
	if _, got := copyOut(t, d, again.ID, "/data/marker.txt"); !bytes.Equal(got, payload) {
		t.Errorf("marker after recreate = %q, want %q", got, payload)
	}

	if err := d.Remove(ctx, again.ID, false); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := d.Client().VolumeInspect(ctx, volumeName(spec.UserID), client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("volume after Remove(keepData=false): %v, want not found", err)
	}
}

// copyOut reads path from the container through the engine's archive API
// and returns the first tar header and its content.
func copyOut(t *testing.T, d *Driver, id, path string) (*tar.Header, []byte) {
	t.Helper()
	res, err := d.Client().CopyFromContainer(context.Background(), id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		t.Fatalf("CopyFromContainer %s: %v", path, err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatalf("read archive of %s: %v", path, err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return hdr, b
}

func TestListFindsByLabel(t *testing.T) {
	f := engineFixture(t)
	a := createInstance(t, f.drv, testSpec(f.image))
	b := createInstance(t, f.drv, testSpec(f.image))
	list, err := f.drv.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, want := range []runtime.Instance{a, b} {
		i := slices.IndexFunc(list, func(x runtime.Instance) bool { return x.ID == want.ID })
		if i < 0 {
			t.Errorf("List lacks %s", want.ID)
			continue
		}
		if got := list[i]; got.UserID != want.UserID || got.State != runtime.EngineStopped || got.Endpoint != "" || got.Image != f.image {
			t.Errorf("List entry = %+v, want user %s stopped", got, want.UserID)
		}
	}
}

func TestNotFound(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()
	id := "ocmt-no-such-" + randHex(4)
	if _, err := f.drv.Inspect(ctx, id); !isNotFound(err) {
		t.Errorf("Inspect: %v", err)
	}
	if _, err := f.drv.Start(ctx, id); !isNotFound(err) {
		t.Errorf("Start: %v", err)
	}
	if err := f.drv.Pause(ctx, id); !isNotFound(err) {
		t.Errorf("Pause: %v", err)
	}
	if err := f.drv.Stop(ctx, id, time.Second); !isNotFound(err) {
		t.Errorf("Stop: %v", err)
	}
	if err := f.drv.Remove(ctx, id, false); !isNotFound(err) {
		t.Errorf("Remove: %v", err)
	}
	if _, err := f.drv.Stats(ctx, id); !isNotFound(err) {
		t.Errorf("Stats: %v", err)
	}
}

// TestEnsureNetworkRace creates the network from several drivers at once
// (each with its own lock, like separate processes) and expects exactly
// one network of that name in the end.
func TestEnsureNetworkRace(t *testing.T) {
	requireEngine(t)
	ctx := context.Background()
	name := "ocmt-test-race-" + randHex(4)
	cleanupNetwork(name)
	var drivers []*Driver
	for range 4 {
		d, err := New(ctx, Options{Binary: "/bin/true", Network: name})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		drivers = append(drivers, d)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(drivers))
	for i, d := range drivers {
		wg.Go(func() { errs[i] = d.ensureNetwork(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("ensureNetwork: %v", err)
	}
	nets, err := drivers[0].networksNamed(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 1 {
		t.Fatalf("%d networks named %s, want 1", len(nets), name)
	}
	if nets[0].Options[optEnableICC] != "false" || nets[0].Labels[LabelManaged] != "true" {
		t.Errorf("network options %v labels %v", nets[0].Options, nets[0].Labels)
	}
	// A later ensure on a fresh driver is a no-op.
	d, err := New(ctx, Options{Binary: "/bin/true", Network: name})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.ensureNetwork(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureNetworkRejectsICC(t *testing.T) {
	requireEngine(t)
	ctx := context.Background()
	name := "ocmt-test-icc-" + randHex(4)
	cleanupNetwork(name)
	d, err := New(ctx, Options{Binary: "/bin/true", Network: name})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Client().NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge"}); err != nil {
		t.Fatal(err)
	}
	if err := d.ensureNetwork(ctx); err == nil || !strings.Contains(err.Error(), optEnableICC) {
		t.Errorf("ensureNetwork on a network allowing inter-container traffic: %v", err)
	}
}

// TestDynamicBinary runs a dynamically linked binary (cgo, like ocmt with
// SQLite) in the image: the interpreter and libraries must be in place.
func TestDynamicBinary(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()
	bin := buildFakeVault(t, t.TempDir(), true)
	plan, err := planRootfs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Static {
		t.Skip("cgo build came out static; nothing to test")
	}
	tag, err := ImageTag(bin, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.drv.Client().ImageInspect(ctx, tag); err != nil {
		t.Cleanup(func() {
			_, _ = f.drv.Client().ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		})
	}
	d, err := New(ctx, Options{Binary: bin, Network: f.network, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ref, err := d.Prepare(ctx, nil)
	if err != nil || ref != tag {
		t.Fatalf("Prepare = %q, %v; want %q", ref, err, tag)
	}
	spec := testSpec(ref)
	inst := createInstance(t, d, spec)
	run, err := d.Start(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	mustHealthy(t, run, spec.Secret)
}
