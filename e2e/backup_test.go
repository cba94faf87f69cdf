package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/backup"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/version"
	"github.com/ocmt/ocmt/xtest"
)

// runOcmt runs the built ocmt binary with args (no OCMT_* environment) and
// returns its combined output.
func runOcmt(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(xtest.Binary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCMT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBackupRestoreDocker: two users with vaults, provider keys, chat
// history and a share between them; `ocmt backup` while ocmt runs; then
// ocmt stops, the data directory, the containers and the volumes are
// wiped, and `ocmt restore` puts everything back: both vaults open with
// their old passwords, the history is there, the grantee still uses the
// share, and `ocmt audit verify` passes.
func TestBackupRestoreDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	env := xtest.NewEnv(t, xtest.WithRuntime(config.RuntimeDocker), xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} }))
	ctx = context.Background()
	fp := fakeProviderOnGateway(t, env)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	nw, err := cli.NetworkInspect(ctx, env.Cfg.Network, client.NetworkInspectOptions{})
	if err != nil || len(nw.Network.IPAM.Config) == 0 {
		t.Fatalf("inspect network: %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(nw.Network.IPAM.Config[0].Gateway.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	cal := newFakeAPI(t, ln)

	const (
		alicePW, bobPW = "alice's long backup password", "bob's long backup password"
		aliceQ, bobQ   = "Where did the narwhal hide the map?", "Which lighthouse sings at dawn?"
		aliceR, bobR   = "Under the third violet glacier.", "The one painted in tangerine stripes."
		calendarSecret = "Bearer alice-backup-calendar-8008"
		providerKey    = "sk-ant-backup-7e1f"
	)
	alice, au := env.Admin("alice@example.org")
	bob, bu := env.Invite(alice, "bob@example.org")
	// The env's own cleanup finds containers through the database, which
	// a failed restore would not bring back.
	t.Cleanup(func() {
		for _, u := range []api.User{au, bu} {
			cli.ContainerRemove(context.Background(), "ocmt-"+string(u.ID), client.ContainerRemoveOptions{Force: true})
			cli.VolumeRemove(context.Background(), docker.VolumeName(string(u.ID)), client.VolumeRemoveOptions{Force: true})
		}
	})
	av := readyVault(t, env, alice, alicePW)
	bv := readyVault(t, env, bob, bobPW)
	fp.SetKey(providerKey)
	for _, v := range []vaultAPI{av, bv} {
		v.json("PUT", "/apikeys/anthropic", map[string]string{"key": providerKey, "baseUrl": fp.URL()}, nil)
	}
	fp.Script(fakeprovider.Reply{Text: aliceR})
	if _, got := dialChat(t, env, alice).chatOnce("main", aliceQ); got != aliceR {
		t.Fatalf("alice's reply: %q", got)
	}
	fp.Script(fakeprovider.Reply{Text: bobR})
	if _, got := dialChat(t, env, bob).chatOnce("main", bobQ); got != bobR {
		t.Fatalf("bob's reply: %q", got)
	}

	// Alice shares her calendar with Bob, and Bob uses it.
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": cal.URL, "authHeader": "Authorization", "authValue": calendarSecret}, nil)
	var share struct {
		JTI string `json:"jti"`
	}
	av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"}, "expiresIn": 7 * 24 * 3600, "maxCalls": 50}, &share)
	waitReceived(t, bob, share.JTI, 10*time.Second)
	call := func() *api.Response {
		t.Helper()
		r, err := bob.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities/"+share.JTI+"/call", map[string]string{"operation": "read", "path": "/events"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := call(); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "Dentist at nine") {
		t.Fatalf("shared call before the backup: %d %s", r.Status, r.Body)
	}

	// Back up while ocmt runs, through the command line.
	archive := filepath.Join(t.TempDir(), "ocmt-backup.tar.gz")
	start := time.Now()
	out, err := runOcmt(t, "backup", "--to", archive, "--data-dir", env.Cfg.DataDir)
	if err != nil {
		t.Fatalf("ocmt backup: %v\n%s", err, out)
	}
	backupTime := time.Since(start)
	fi, err := os.Stat(archive)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v, mode %v", err, fi.Mode())
	}
	if !strings.Contains(out, "2 users, 2 volumes") {
		t.Fatalf("backup output: %s", out)
	}
	if out, err := runOcmt(t, "backup", "--to", archive, "--data-dir", env.Cfg.DataDir); err == nil || !strings.Contains(out, "--force") {
		t.Fatalf("a second backup over the same file: %v\n%s", err, out)
	}

	// Lose everything: ocmt stops, the data directory, the containers and
	// the volumes go.
	env.Stop()
	for _, u := range []api.User{au, bu} {
		if _, err := cli.ContainerRemove(ctx, "ocmt-"+string(u.ID), client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.VolumeRemove(ctx, docker.VolumeName(string(u.ID)), client.VolumeRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(env.Cfg.DataDir)
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(env.Cfg.DataDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}

	start = time.Now()
	out, err = runOcmt(t, "restore", "--from", archive, "--data-dir", env.Cfg.DataDir)
	if err != nil {
		t.Fatalf("ocmt restore: %v\n%s", err, out)
	}
	restoreTime := time.Since(start)
	t.Logf("two users: backup %v, restore %v, archive %d bytes\nrestore said:\n%s", backupTime.Round(time.Millisecond), restoreTime.Round(time.Millisecond), fi.Size(), out)
	for _, u := range []api.User{au, bu} {
		if !strings.Contains(out, "restored volume "+docker.VolumeName(string(u.ID))) {
			t.Fatalf("restore did not report the volume of %s:\n%s", u.Email, out)
		}
	}
	if out, err := runOcmt(t, "restore", "--from", archive, "--data-dir", env.Cfg.DataDir); err == nil || !strings.Contains(out, "not empty") {
		t.Fatalf("a restore over the restored data directory without --force: %v\n%s", err, out)
	}

	// ocmt starts on the restored data directory; the old sessions are in
	// the restored database, the vaults open with the old passwords.
	env.Restart()
	for _, v := range []struct {
		api vaultAPI
		pw  string
		r   string
		c   *api.Client
	}{{av, alicePW, aliceR, alice}, {bv, bobPW, bobR, bob}} {
		if !v.api.locked() {
			t.Fatal("a restored vault is unlocked")
		}
		v.api.unlock(v.api.deriveKey(v.pw))
		cw := dialChat(t, env, v.c)
		cw.send("h1", "chat.history", map[string]any{"sessionKey": "main"})
		if h := cw.until(func(f map[string]any) bool { return f["id"] == "h1" }); !strings.Contains(fmt.Sprint(h), v.r) {
			t.Fatalf("history after restore: %v", h)
		}
	}
	if r := call(); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "Dentist at nine") {
		t.Fatalf("shared call after the restore: %d %s", r.Status, r.Body)
	}
	if !cal.sawOnly(calendarSecret) {
		t.Fatalf("the calendar did not get Alice's credential: %v", cal.auths)
	}
	env.Stop()
	if out, err := runOcmt(t, "audit", "verify", "--data-dir", env.Cfg.DataDir); err != nil || !strings.Contains(out, "chain intact") {
		t.Fatalf("ocmt audit verify after restore: %v\n%s", err, out)
	}
}

// BenchmarkBackupRestore50Docker times `ocmt backup` and `ocmt restore`
// (the library under the commands) for 50 users with docker volumes of
// about 70 KiB of random (ciphertext-like) bytes each: a 4 KiB vault, a
// 64 KiB transcript, 2 KiB of other files. Each iteration backs up and
// then restores over the volumes (--force). Reported: ms per backup and
// restore, and the archive size.
func BenchmarkBackupRestore50Docker(b *testing.B) {
	ctx := context.Background()
	if _, err := docker.Ping(ctx); err != nil {
		xtest.SkipOrFail(b, "no Docker engine answers: "+err.Error())
	}
	const users = 50
	dataDir := b.TempDir()
	st, err := store.Open(ctx, filepath.Join(dataDir, store.FileName), nil)
	if err != nil {
		b.Fatal(err)
	}
	dep := store.NewID("dep")
	st.GetOrCreateKV(ctx, "deployment.id", func() []byte { return []byte(dep) })
	engine := func(ctx context.Context, deployment string) (backup.Volumes, error) {
		return docker.New(ctx, docker.Options{Binary: xtest.Binary(b), Version: version.String(), Deployment: deployment})
	}
	vols, err := engine(ctx, dep)
	if err != nil {
		b.Fatal(err)
	}
	defer vols.Close()
	var ids []string
	b.Cleanup(func() {
		cli, err := client.New(client.FromEnv)
		if err != nil {
			return
		}
		defer cli.Close()
		for _, id := range ids {
			cli.VolumeRemove(context.Background(), docker.VolumeName(id), client.VolumeRemoveOptions{Force: true})
		}
	})
	for i := 0; i < users; i++ {
		id := store.NewID("usr")
		ids = append(ids, id)
		if err := st.PutContainer(ctx, store.Container{UserID: store.UserID(id), Runtime: "docker", State: store.StateStopped}); err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, f := range []struct {
			name string
			size int
		}{{"data/", -1}, {"data/vault.ocv", 4 << 10}, {"data/transcripts/", -1}, {"data/transcripts/0123456789abcdef.tr", 64 << 10}, {"data/idempotency.sealed", 2 << 10}} {
			h := &tar.Header{Name: f.name, Mode: 0o600, Uid: docker.VolumeUIDGID, Gid: docker.VolumeUIDGID, Typeflag: tar.TypeReg, Size: int64(f.size)}
			if f.size < 0 {
				h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o700, 0
			}
			tw.WriteHeader(h)
			if f.size > 0 {
				body := make([]byte, f.size)
				rand.Read(body)
				tw.Write(body)
			}
		}
		tw.Close()
		if err := vols.ImportVolume(ctx, id, &buf, false); err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	archive := filepath.Join(b.TempDir(), "bench.tar.gz")
	var backupTime, restoreTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		m, err := backup.Create(ctx, backup.CreateOptions{DataDir: dataDir, To: archive, Force: true, Engine: engine, Version: version.String()})
		if err != nil {
			b.Fatal(err)
		}
		backupTime += time.Since(start)
		if len(m.Users) != users {
			b.Fatalf("backed up %d users", len(m.Users))
		}
		start = time.Now()
		if _, err := backup.Restore(ctx, backup.RestoreOptions{From: archive, DataDir: filepath.Join(b.TempDir(), "restored"), Force: true, Engine: engine}); err != nil {
			b.Fatal(err)
		}
		restoreTime += time.Since(start)
	}
	fi, _ := os.Stat(archive)
	b.ReportMetric(float64(backupTime.Milliseconds())/float64(b.N), "backup-ms")
	b.ReportMetric(float64(restoreTime.Milliseconds())/float64(b.N), "restore-ms")
	b.ReportMetric(float64(fi.Size()), "archive-bytes")
}

// TestRestoreRefusesLiveContainers: restoring a deployment's backup on the
// engine where its user's container still runs (or is paused) is refused,
// even with --force into another data directory, naming the container;
// the container and its volume are left as they were. Once stopped, the
// restore goes ahead.
func TestRestoreRefusesLiveContainers(t *testing.T) {
	ctx := context.Background()
	if _, err := docker.Ping(ctx); err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	dep := store.NewID("dep")
	user := store.NewID("usr")
	nw := "ocmt-test-live-" + strings.ToLower(string(user)[4:12])
	dataDir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dataDir, store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	st.GetOrCreateKV(ctx, "deployment.id", func() []byte { return []byte(dep) })
	if err := st.PutContainer(ctx, store.Container{UserID: store.UserID(user), Runtime: "docker", State: store.StateStopped}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	engine := func(ctx context.Context, deployment string) (backup.Volumes, error) {
		return docker.New(ctx, docker.Options{Binary: xtest.Binary(t), Network: nw, Version: version.String(), Deployment: deployment})
	}
	d, err := docker.New(ctx, docker.Options{Binary: xtest.Binary(t), Network: nw, Version: version.String(), Deployment: dep})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cli := d.Client()
	name := "ocmt-" + string(user)
	t.Cleanup(func() {
		cli.ContainerRemove(context.Background(), name, client.ContainerRemoveOptions{Force: true})
		cli.VolumeRemove(context.Background(), docker.VolumeName(string(user)), client.VolumeRemoveOptions{Force: true})
		cli.NetworkRemove(context.Background(), nw, client.NetworkRemoveOptions{})
	})
	image, err := d.Prepare(ctx, func(api.Progress) {})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := d.Create(ctx, runtime.Spec{UserID: string(user), Name: name, Secret: "live-test-secret-0123456789", Image: image, MemoryMiB: 64, NanoCPUs: 500_000_000, PidsLimit: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "b.tar.gz")
	if _, err := backup.Create(ctx, backup.CreateOptions{DataDir: dataDir, To: archive, Engine: engine, Version: version.String()}); err != nil {
		t.Fatal(err)
	}
	vol0, err := cli.VolumeInspect(ctx, docker.VolumeName(string(user)), client.VolumeInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, state := range []string{"running", "paused"} {
		if state == "paused" {
			if err := d.Pause(ctx, inst.ID); err != nil {
				t.Fatal(err)
			}
		}
		other := filepath.Join(t.TempDir(), "other")
		_, err := backup.Restore(ctx, backup.RestoreOptions{From: archive, DataDir: other, Force: true, Engine: engine})
		if err == nil || !strings.Contains(err.Error(), name+" ("+state+")") || !strings.Contains(err.Error(), "docker stop "+name) {
			t.Fatalf("%s: restore beside the live deployment: %v", state, err)
		}
		if _, err := os.Stat(other); err == nil {
			t.Fatalf("%s: the refused restore created its data directory", state)
		}
		c, err := cli.ContainerInspect(ctx, inst.ID, client.ContainerInspectOptions{})
		if err != nil || string(c.Container.State.Status) != state {
			t.Fatalf("%s: container after the refused restore: %v", state, err)
		}
		vol, err := cli.VolumeInspect(ctx, docker.VolumeName(string(user)), client.VolumeInspectOptions{})
		if err != nil || vol.Volume.CreatedAt != vol0.Volume.CreatedAt {
			t.Fatalf("%s: the volume was replaced: %v", state, err)
		}
	}
	if err := d.Stop(ctx, inst.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "other")
	if _, err := backup.Restore(ctx, backup.RestoreOptions{From: archive, DataDir: out, Force: true, Engine: engine}); err != nil {
		t.Fatalf("restore once the container is stopped: %v", err)
	}
}
