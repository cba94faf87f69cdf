package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/xtest"
)

// dockerEnv starts ocmt on the docker runtime, or skips (fails in CI) when
// no engine answers. Containers the test creates are removed afterwards.
func dockerEnv(t *testing.T, opts ...xtest.Option) (*xtest.Env, *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	env := xtest.NewEnv(t, append([]xtest.Option{xtest.WithRuntime(config.RuntimeDocker)}, opts...)...)
	t.Cleanup(func() { cli.Close() })
	return env, cli
}

func containerName(uid string) string { return "ocmt-" + uid }

// execDial runs `ocmt internal dial addr` inside the user's container and
// reports whether the connection succeeded.
func execDial(t *testing.T, cli *client.Client, uid, addr string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := cli.ExecCreate(ctx, containerName(uid), client.ExecCreateOptions{
		Cmd: []string{"/ocmt", "internal", "dial", addr}, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		t.Fatalf("exec create: %v", err)
	}
	att, err := cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec attach: %v", err)
	}
	io.Copy(io.Discard, att.Reader)
	att.Close()
	for {
		in, err := cli.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
		if err != nil {
			t.Fatalf("exec inspect: %v", err)
		}
		if !in.Running {
			return in.ExitCode == 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeVolume(t *testing.T, cli *client.Client, uid, name, content string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(content)), Uid: 65532, Gid: 65532})
	tw.Write([]byte(content))
	tw.Close()
	if _, err := cli.CopyToContainer(context.Background(), containerName(uid), client.CopyToContainerOptions{
		DestinationPath: "/data", Content: &buf,
	}); err != nil {
		t.Fatalf("copy into /data: %v", err)
	}
}

func readVolume(cli *client.Client, uid, name string) string {
	res, err := cli.CopyFromContainer(context.Background(), containerName(uid), client.CopyFromContainerOptions{SourcePath: "/data/" + name})
	if err != nil {
		return ""
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	if _, err := tr.Next(); err != nil {
		return ""
	}
	b, _ := io.ReadAll(tr)
	return string(b)
}

func TestLifecycleDocker(t *testing.T) {
	env, cli := dockerEnv(t)
	lifecycle(t, env,
		func(uid string) { writeVolume(t, cli, uid, "marker", "keep me") },
		func(uid string) bool { return readVolume(cli, uid, "marker") == "keep me" })
}

func TestIdleWebSocketDocker(t *testing.T) {
	env, _ := dockerEnv(t, xtest.WithConfig(hibernateConfig), xtest.WithSweep(100*time.Millisecond))
	idleWebSocket(t, env)
}

// TestIsolationDocker checks SPEC §4: containers cannot reach each other,
// the Docker socket or the host's management port, and run hardened.
func TestIsolationDocker(t *testing.T) {
	env, cli := dockerEnv(t, xtest.WithConfig(func(c *config.Config) {
		c.MemoryMiB, c.NanoCPUs, c.PidsLimit = 96, 500_000_000, 64
	}))
	ctx := context.Background()
	admin, au := env.Admin("admin@example.org")
	bob, bu := env.Invite(admin, "bob@example.org")
	provision(t, admin)
	provision(t, bob)

	ins := func(uid string) client.ContainerInspectResult {
		r, err := cli.ContainerInspect(ctx, containerName(uid), client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := ins(au.ID), ins(bu.ID)
	netName := env.Cfg.Network
	bIP := b.Container.NetworkSettings.Networks[netName].IPAddress.String()
	gw := a.Container.NetworkSettings.Networks[netName].Gateway.String()
	if bIP == "" || gw == "" {
		t.Fatalf("containers not on network %s: %+v", netName, a.Container.NetworkSettings.Networks)
	}

	// The probe works: a container reaches its own vault port.
	if !execDial(t, cli, au.ID, "127.0.0.1:8080") {
		t.Fatal("probe cannot reach its own port; the checks below would prove nothing")
	}
	if execDial(t, cli, au.ID, net.JoinHostPort(bIP, "8080")) {
		t.Error("alice's container reached bob's container over the network")
	}
	_, mport, _ := net.SplitHostPort(strings.TrimPrefix(env.URL, "http://"))
	if execDial(t, cli, au.ID, net.JoinHostPort(gw, mport)) {
		t.Error("a container reached the management port through the bridge gateway")
	}
	// The relay, and only the relay, listens where containers can reach it.
	relayAddr := ""
	for _, kv := range a.Container.Config.Env {
		if v, ok := strings.CutPrefix(kv, "OCMT_RELAY_URL=ws://"); ok {
			relayAddr = strings.SplitN(v, "/", 2)[0]
		}
	}
	if relayAddr == "" || !strings.HasPrefix(relayAddr, gw+":") {
		t.Fatalf("container has no relay URL on the gateway: %v", a.Container.Config.Env)
	}
	if !execDial(t, cli, au.ID, relayAddr) {
		t.Error("a container cannot reach the relay")
	}
	if execDial(t, cli, au.ID, "unix:/var/run/docker.sock") || execDial(t, cli, au.ID, "unix:/run/docker.sock") {
		t.Error("a container reached the Docker socket")
	}
	if execDial(t, cli, au.ID, net.JoinHostPort(gw, "2375")) {
		t.Error("a container reached a Docker TCP port on the host")
	}

	hc := a.Container.HostConfig
	cfg := a.Container.Config
	checks := []struct {
		name string
		ok   bool
	}{
		{"read-only root filesystem", hc.ReadonlyRootfs},
		{"all capabilities dropped", len(hc.CapDrop) == 1 && strings.EqualFold(hc.CapDrop[0], "ALL") && len(hc.CapAdd) == 0},
		{"no-new-privileges", strings.Contains(strings.Join(hc.SecurityOpt, ","), "no-new-privileges")},
		{"not privileged", !hc.Privileged},
		{"memory limit", hc.Memory == 96<<20},
		{"cpu limit", hc.NanoCPUs == 500_000_000},
		{"pids limit", hc.PidsLimit != nil && *hc.PidsLimit == 64},
		{"non-root user", cfg.User != "" && cfg.User != "0" && cfg.User != "root" && !strings.HasPrefix(cfg.User, "0:")},
		{"own bridge network", string(hc.NetworkMode) == netName},
		{"labels", cfg.Labels["ocmt.user"] == au.ID && cfg.Labels["ocmt.role"] == "vault"},
		{"tmpfs for scratch", len(hc.Tmpfs) > 0},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("hardening: %s not applied (%+v)", c.name, hc)
		}
	}
	for _, m := range a.Container.Mounts {
		if strings.Contains(m.Source, "docker.sock") || strings.Contains(m.Destination, "docker.sock") {
			t.Errorf("docker socket mounted: %+v", m)
		}
		if m.Destination == "/data" && m.Name != "ocmt-data-"+au.ID {
			t.Errorf("/data is not the user's volume: %+v", m)
		}
	}
	for port, binds := range hc.PortBindings {
		for _, pb := range binds {
			if pb.HostIP.String() != "127.0.0.1" {
				t.Errorf("port %v published on %v, want loopback only", port, pb.HostIP)
			}
		}
	}
	nw, err := cli.NetworkInspect(ctx, netName, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nw.Network.Options["com.docker.network.bridge.enable_icc"] != "false" {
		t.Errorf("network %s allows inter-container traffic: %v", netName, nw.Network.Options)
	}
	if st, _ := admin.Agent(ctx); st.State != api.StateRunning {
		t.Fatalf("state %s", st.State)
	}
}

// TestDeploymentsStayApart runs two deployments on one engine: neither
// adopts, lists nor removes the other's containers.
func TestDeploymentsStayApart(t *testing.T) {
	a, cli := dockerEnv(t)
	admin, au := a.Admin("admin@example.org")
	provision(t, admin)
	b, _ := dockerEnv(t)
	bAdmin, _ := b.Admin("admin@example.org")
	var list struct {
		Containers []api.AdminContainer `json:"containers"`
	}
	if err := bAdmin.JSON(context.Background(), "GET", "/api/v1/admin/containers", nil, &list); err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Containers {
		if c.UserID == au.ID {
			t.Fatalf("deployment B adopted deployment A's container: %+v", c)
		}
	}
	b.Stop()
	if _, err := cli.ContainerInspect(context.Background(), containerName(au.ID), client.ContainerInspectOptions{}); err != nil {
		t.Fatalf("A's container is gone after B stopped: %v", err)
	}
	healthz(t, admin)
}

// TestVanishedContainer removes a running container behind ocmt's back: the
// next request recreates it (keeping /data) instead of failing forever.
func TestVanishedContainer(t *testing.T) {
	env, cli := dockerEnv(t)
	admin, au := env.Admin("admin@example.org")
	provision(t, admin)
	writeVolume(t, cli, au.ID, "marker", "still here")
	if _, err := cli.ContainerRemove(context.Background(), containerName(au.ID), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	healthz(t, admin) // refused upstream → refresh → recreate → retry
	if readVolume(cli, au.ID, "marker") != "still here" {
		t.Fatal("data lost when the vanished container was recreated")
	}
	if s, _ := admin.Agent(context.Background()); s.State != api.StateRunning {
		t.Fatalf("state %q", s.State)
	}

	// A wake asked for without a proxied request (the relay waking a
	// recipient, the user pressing Start) checks the engine too, so it
	// recreates a vanished container at once rather than at the next sweep.
	if _, err := cli.ContainerRemove(context.Background(), containerName(au.ID), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := admin.ProvisionAgent(context.Background()); err != nil {
		t.Fatal(err)
	}
	xtest.Eventually(t, 30*time.Second, func() error {
		r, err := cli.ContainerInspect(context.Background(), containerName(au.ID), client.ContainerInspectOptions{})
		if err != nil {
			return err
		}
		if !r.Container.State.Running {
			return errors.New("not running yet")
		}
		return nil
	})
	if readVolume(cli, au.ID, "marker") != "still here" {
		t.Fatal("data lost when the vanished container was recreated by a wake")
	}
}

// TestExternalPauseDocker: `docker pause` behind ocmt's back while chat is
// open. A chat message gets its answer within the keep-alive bound (the
// proxy notices the silent container, records it paused and wakes it), and
// so does a plain HTTP request (checked with the engine after 3 s).
func TestExternalPauseDocker(t *testing.T) {
	env, cli := dockerEnv(t, xtest.WithProxyPing(testPing, testPong))
	ctx := context.Background()
	admin, au := env.Admin("admin@example.org")
	provision(t, admin)
	cc := connectChat(t, env, admin)
	if _, err := cli.ContainerPause(ctx, containerName(au.ID), client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.ContainerUnpause(context.Background(), containerName(au.ID), client.ContainerUnpauseOptions{})
	})
	start := time.Now()
	cc.send("l1", "sessions.list", map[string]any{})
	cc.until("l1", testPing+testPong+10*time.Second)
	t.Logf("chat answer from a container paused behind ocmt's back after %v (ping %v, pong timeout %v)",
		time.Since(start).Round(time.Millisecond), testPing, testPong)
	// The answer came after the unpause, so the record says running already.
	if st, _ := admin.Agent(ctx); st.State != api.StateRunning {
		t.Fatalf("state %s after the answer of the woken container", st.State)
	}

	if _, err := cli.ContainerPause(ctx, containerName(au.ID), client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	r, err := admin.Do(hctx, "GET", "/api/v1/me/agent/healthz", nil)
	if err != nil || r.Status != 200 {
		t.Fatalf("HTTP request to a container paused behind ocmt's back: %v %v after %v", r, err, time.Since(start))
	}
	t.Logf("HTTP answer from a container paused behind ocmt's back after %v", time.Since(start).Round(time.Millisecond))
}

// TestExternalUnpauseDocker: a container that ocmt paused and someone
// unpaused behind its back takes the next connect at once, not after the
// next sweep.
func TestExternalUnpauseDocker(t *testing.T) {
	env, cli := dockerEnv(t) // sweeps every 15 s: the test must not need one
	ctx := context.Background()
	admin, au := env.Admin("admin@example.org")
	provision(t, admin)
	if err := admin.AdminAction(ctx, au.ID, api.ActionPause); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerUnpause(ctx, containerName(au.ID), client.ContainerUnpauseOptions{}); err != nil {
		t.Fatal(err)
	}
	conn := dialEcho(t, env, admin)
	echoRoundTrip(t, conn, "after an outside unpause")
	if st, _ := admin.Agent(ctx); st.State != api.StateRunning {
		t.Fatalf("state %s after the connect", st.State)
	}
	// The record says running now; pause behind ocmt's back and unpause
	// again: an HTTP request is answered too.
	if err := admin.AdminAction(ctx, au.ID, api.ActionPause); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerUnpause(ctx, containerName(au.ID), client.ContainerUnpauseOptions{}); err != nil {
		t.Fatal(err)
	}
	healthz(t, admin)
}
