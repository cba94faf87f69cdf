package docker

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// The benchmarks use the real engine and skip without one. Each iteration
// starts containers, so run them with a small count, e.g.
//
//	go test ./roles/agent/docker/ -run '^$' -bench . -benchtime 5x

// BenchmarkProvision measures what a user waits for on first use: Create
// (volume, hardened container) + Start + /healthz answering 200 with the
// secret header. Removal is not timed.
func BenchmarkProvision(b *testing.B) {
	f := engineFixture(b)
	ctx := context.Background()
	for b.Loop() {
		spec := testSpec(f.image)
		inst, err := f.drv.Create(ctx, spec)
		if err != nil {
			b.Fatalf("Create: %v", err)
		}
		run, err := f.drv.Start(ctx, inst.ID)
		if err != nil {
			removeUser(b, f.drv, spec.Name, spec.UserID)
			b.Fatalf("Start: %v", err)
		}
		err = waitHealthy(run.Endpoint, spec.Secret)
		b.StopTimer()
		removeUser(b, f.drv, spec.Name, spec.UserID)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkRawCreateStart is the engine's floor for BenchmarkProvision:
// ContainerCreate + ContainerStart of the same image with a minimal config
// (a loopback port, nothing else), without waiting for /healthz.
func BenchmarkRawCreateStart(b *testing.B) {
	f := engineFixture(b)
	ctx := context.Background()
	cli := f.drv.Client()
	for b.Loop() {
		name := "ocmt-bench-raw-" + randHex(5)
		res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name:   name,
			Config: &container.Config{Image: f.image, ExposedPorts: network.PortSet{vaultPort: {}}},
			HostConfig: &container.HostConfig{
				PortBindings: network.PortMap{vaultPort: {{HostIP: loopback}}},
			},
		})
		if err != nil {
			b.Fatalf("ContainerCreate: %v", err)
		}
		_, err = cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{})
		b.StopTimer()
		if _, rerr := cli.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true}); rerr != nil {
			b.Errorf("remove %s: %v", name, rerr)
		}
		if err != nil {
			b.Fatalf("ContainerStart: %v", err)
		}
		b.StartTimer()
	}
}

// BenchmarkWakeFromPaused measures a wake from the first hibernation tier:
// Unpause + /healthz 200.
func BenchmarkWakeFromPaused(b *testing.B) {
	f := engineFixture(b)
	ctx := context.Background()
	spec := testSpec(f.image)
	inst := createInstance(b, f.drv, spec)
	run, err := f.drv.Start(ctx, inst.ID)
	if err != nil {
		b.Fatalf("Start: %v", err)
	}
	mustHealthy(b, run, spec.Secret)
	for b.Loop() {
		b.StopTimer()
		if err := f.drv.Pause(ctx, inst.ID); err != nil {
			b.Fatalf("Pause: %v", err)
		}
		b.StartTimer()
		if err := f.drv.Unpause(ctx, inst.ID); err != nil {
			b.Fatalf("Unpause: %v", err)
		}
		if err := waitHealthy(run.Endpoint, spec.Secret); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWakeFromStopped measures a wake from the second hibernation
// tier: Start (new published port) + /healthz 200.
func BenchmarkWakeFromStopped(b *testing.B) {
	f := engineFixture(b)
	ctx := context.Background()
	spec := testSpec(f.image)
	inst := createInstance(b, f.drv, spec)
	for b.Loop() {
		b.StopTimer()
		if err := f.drv.Stop(ctx, inst.ID, 5*time.Second); err != nil {
			b.Fatalf("Stop: %v", err)
		}
		b.StartTimer()
		run, err := f.drv.Start(ctx, inst.ID)
		if err != nil {
			b.Fatalf("Start: %v", err)
		}
		if err := waitHealthy(run.Endpoint, spec.Secret); err != nil {
			b.Fatal(err)
		}
	}
}
