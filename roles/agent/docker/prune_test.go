package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/roles/agent/runtime"
)

// buildTinyImage builds tag FROM scratch with one small file whose content
// is the tag (so every image differs), labelled with labels, and removes
// it at cleanup if it is still there.
func buildTinyImage(t *testing.T, cli *client.Client, tag string, labels map[string]string) string {
	t.Helper()
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for name, body := range map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": tag} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: ctxModTime}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := cli.ImageBuild(ctx, &ctxTar, client.ImageBuildOptions{
		Tags: []string{tag}, Labels: labels, Remove: true, ForceRemove: true, Version: build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	err = readJSONStream(res.Body, func(jsonstream.Message) {})
	res.Body.Close()
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	ins, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	return ins.ID
}

// TestPruneOldImages: after Prepare, the deployment's agent images that no
// container uses are removed; one a stopped container uses stays until
// Remove frees it; another deployment's image, an image without a
// deployment label, the current --agent-image (even one of ours) and an
// image of ours that also has a name of the operator's stay.
func TestPruneOldImages(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()
	cli := f.drv.Client()
	run := randHex(4)
	dep := "dep_prunetest" + run
	tag := func(name string) string { return ImageRepo + ":prunetest-" + run + "-" + name }
	ours := map[string]string{LabelManaged: "true", runtime.LabelDeployment: dep, runtime.LabelVersion: "old"}
	foreign := "ocmt-prunetest-" + run + ":copy" // an operator's own name for an image of ours
	for ref, labels := range map[string]map[string]string{
		tag("old-used"):   ours,
		tag("old-unused"): ours,
		tag("operator"):   ours, // --agent-image naming one of ours
		tag("other-dep"):  {LabelManaged: "true", runtime.LabelDeployment: "dep_someoneelse" + run},
		tag("unlabelled"): {LabelManaged: "true"},
		foreign:           ours,
	} {
		buildTinyImage(t, cli, ref, labels)
	}
	present := func(ref string) bool {
		_, err := cli.ImageInspect(ctx, ref)
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Fatalf("inspect %s: %v", ref, err)
		}
		return err == nil
	}
	check := func(when string, want map[string]bool) {
		t.Helper()
		for ref, want := range want {
			if got := present(ref); got != want {
				t.Errorf("after %s: image %s present = %v, want %v", when, ref, got, want)
			}
		}
	}

	// A stopped (never started) container uses old-used.
	cname := "ocmt-prunetest-" + run
	cres, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   cname,
		Config: &container.Config{Image: tag("old-used"), Cmd: []string{"/f"}, Labels: map[string]string{runtime.LabelDeployment: dep}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), cname, client.ContainerRemoveOptions{Force: true})
	})

	// With --agent-image naming one of ours: it stays, the unused old one goes.
	d, err := New(ctx, Options{Image: tag("operator"), Network: f.network, Deployment: dep, Version: "new", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if ref, err := d.Prepare(ctx, nil); err != nil || ref != tag("operator") {
		t.Fatalf("Prepare = %q, %v", ref, err)
	}
	check("Prepare (operator image)", map[string]bool{
		tag("old-used"): true, tag("old-unused"): false, tag("operator"): true,
		tag("other-dep"): true, tag("unlabelled"): true, foreign: true,
	})

	// Removing the last container of old-used frees it.
	if err := d.Remove(ctx, cres.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Inspect(ctx, cres.ID); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("container still there after Remove: %v", err)
	}
	check("Remove", map[string]bool{
		tag("old-used"): false, tag("operator"): true, tag("other-dep"): true, tag("unlabelled"): true, foreign: true,
	})

	// Back to images built from the binary: the new one is labelled with
	// the deployment, and the former --agent-image, ours and unused, goes.
	newVersion := "prunetest-" + run // a tag of its own: the image is built, not found
	built, err := New(ctx, Options{Binary: f.binary, Network: f.network, Deployment: dep, Version: newVersion, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer built.Close()
	builtRef, err := built.Prepare(ctx, nil)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), builtRef, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	if want, _ := ImageTag(f.binary, newVersion); builtRef != want {
		t.Errorf("Prepare = %s, want %s", builtRef, want)
	}
	ins, err := cli.ImageInspect(ctx, builtRef)
	if err != nil {
		t.Fatal(err)
	}
	if l := ins.Config.Labels; l[LabelManaged] != "true" || l[runtime.LabelDeployment] != dep {
		t.Errorf("built image labels = %v, want %s=true and %s=%s", l, LabelManaged, runtime.LabelDeployment, dep)
	}
	check("Prepare (build)", map[string]bool{
		builtRef: true, tag("operator"): false, tag("other-dep"): true, tag("unlabelled"): true, foreign: true,
	})
}

// TestCreateRebuildsVanishedImage: an agent image removed from the engine
// after Prepare (by an operator, or pruned by another deployment that
// built the same tag first) is built again by Create.
func TestCreateRebuildsVanishedImage(t *testing.T) {
	f := engineFixture(t)
	ctx := context.Background()
	version := "rebuildtest-" + randHex(4)
	d, err := New(ctx, Options{Binary: f.binary, Network: f.network, Version: version, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ref, err := d.Prepare(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = d.Client().ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	if _, err := d.Client().ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		t.Fatal(err)
	}
	spec := testSpec(ref)
	spec.Version = version
	inst := createInstance(t, d, spec)
	run, err := d.Start(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	mustHealthy(t, run, spec.Secret)
}
