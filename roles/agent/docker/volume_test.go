package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/roles/agent/runtime"
)

// TestVolumeImportExport: ImportVolume makes a labelled volume whose files
// keep the owner 65532 and the modes of the tar; ExportVolume gives them
// back; an existing volume is refused without replace and replaced with
// it; no helper container is left behind.
func TestVolumeImportExport(t *testing.T) {
	f := engineFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dep := "dep_voltest" + randHex(4)
	d, err := New(ctx, Options{Binary: f.binary, Network: f.network, Version: "test", Logger: testLogger(), Deployment: dep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	user := "usr_voltest" + randHex(4)
	t.Cleanup(func() {
		d.cli.VolumeRemove(context.Background(), volumeName(user), client.VolumeRemoveOptions{Force: true})
	})

	content := func(body string) io.Reader {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: VolumeUIDGID, Gid: VolumeUIDGID})
		tw.WriteHeader(&tar.Header{Name: "data/vault.ocv", Typeflag: tar.TypeReg, Mode: 0o640, Size: int64(len(body)), Uid: VolumeUIDGID, Gid: VolumeUIDGID})
		tw.Write([]byte(body))
		tw.Close()
		return &b
	}
	if err := d.ImportVolume(ctx, user, content("first"), false); err != nil {
		t.Fatal(err)
	}
	if err := d.ImportVolume(ctx, user, content("second"), false); !cerrdefs.IsConflict(err) {
		t.Fatalf("import over an existing volume: %v", err)
	}
	if err := d.ImportVolume(ctx, user, content("second"), true); err != nil {
		t.Fatal(err)
	}
	vi, err := d.cli.VolumeInspect(ctx, volumeName(user), client.VolumeInspectOptions{})
	if err != nil || vi.Volume.Labels[runtime.LabelDeployment] != dep || vi.Volume.Labels[runtime.LabelUser] != user {
		t.Fatalf("volume labels: %v %v", vi.Volume.Labels, err)
	}
	if users, err := d.VolumeUsers(ctx); err != nil || len(users) != 1 || users[0] != user {
		t.Fatalf("VolumeUsers = %v, %v", users, err)
	}

	rc, err := d.ExportVolume(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if h.Uid != VolumeUIDGID || h.Gid != VolumeUIDGID {
			t.Errorf("%s owned by %d:%d", h.Name, h.Uid, h.Gid)
		}
		got[h.Name] = string(b) + "|" + h.FileInfo().Mode().Perm().String()
	}
	rc.Close()
	if got["data/"] != "|-rwx------" || got["data/vault.ocv"] != "second|-rw-r-----" {
		t.Fatalf("exported %v", got)
	}
	if _, err := d.ExportVolume(ctx, "usr_missing"+randHex(4)); err == nil {
		t.Fatal("export of a missing volume succeeded")
	}
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", LabelHelper)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Items {
		if c.Labels[runtime.LabelUser] == user {
			t.Errorf("helper container %s left behind", c.Names)
		}
	}
}

// TestLiveContainers: a user's container is listed while running or
// paused, whatever its deployment, and not once stopped.
func TestLiveContainers(t *testing.T) {
	f := engineFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := New(ctx, Options{Binary: f.binary, Network: f.network, Version: "test", Logger: testLogger(), Deployment: "dep_live" + randHex(4)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	spec := testSpec(f.image)
	inst := createInstance(t, d, spec)
	if _, err := d.Start(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	other, err := New(ctx, Options{Binary: f.binary, Network: f.network, Logger: testLogger(), Deployment: "dep_other" + randHex(4)}) // another deployment sees it too
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	check := func(want string) {
		t.Helper()
		got, err := other.LiveContainers(ctx, []string{"usr_nobody", spec.UserID})
		if err != nil || strings.Join(got, ",") != want {
			t.Fatalf("LiveContainers = %v, %v; want %q", got, err, want)
		}
	}
	check(spec.Name + " (running)")
	if err := d.Pause(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	check(spec.Name + " (paused)")
	if err := d.Stop(ctx, inst.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	check("")
}
