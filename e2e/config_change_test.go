package e2e

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/xtest"
)

// TestConfigChangeDocker: ocmt restarted with a shorter vault auto-lock
// recreates its running and paused containers with the new environment at
// once, keeping their volumes and their unlocked vaults (for no longer than
// the new auto-lock); a stopped container gets it at its next start. A
// restart with the same configuration recreates nothing.
func TestConfigChangeDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	// The relay URL is part of a container's configuration: keep its port
	// across restarts (0 would pick a new one each time).
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	relayPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	env := xtest.NewEnv(t, xtest.WithRuntime(config.RuntimeDocker), xtest.WithConfig(func(c *config.Config) { c.RelayPort = relayPort }))
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx = context.Background()

	inspect := func(uid string) (id string, env []string) {
		t.Helper()
		r, err := cli.ContainerInspect(ctx, "ocmt-"+uid, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Container.ID, r.Container.Config.Env
	}
	type status struct {
		Initialized bool  `json:"initialized"`
		Locked      bool  `json:"locked"`
		ExpiresIn   int64 `json:"expiresIn"`
	}
	vaultStatus := func(v vaultAPI) status {
		t.Helper()
		v.wake() // a status poll alone does not wake a sleeping container
		var st status
		v.json("GET", "/status", nil, &st)
		return st
	}
	const newAutoLock = 2 * time.Minute
	unlockedFor := func(v vaultAPI, what string) {
		t.Helper()
		st := vaultStatus(v)
		if st.Locked || st.ExpiresIn <= 0 || st.ExpiresIn > int64(newAutoLock.Seconds()) {
			t.Fatalf("%s: vault %+v, want unlocked for at most %s", what, st, newAutoLock)
		}
	}
	agentState := func(c *api.Client) string {
		t.Helper()
		s, err := c.Agent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s.State
	}
	// restart restarts ocmt and waits (up to a minute) until its pass over
	// the running and paused containers logged line.
	restart := func(line string) {
		t.Helper()
		n := strings.Count(env.Log.String(), line)
		env.Restart()
		for deadline := time.Now().Add(time.Minute); strings.Count(env.Log.String(), line) == n; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("no %q logged within a minute of the restart", line)
				return
			}
		}
	}

	alice, au := env.Admin("alice@example.org")
	bob, bu := env.Invite(alice, "bob@example.org")
	carol, cu := env.Invite(alice, "carol@example.org")
	av := readyVault(t, env, alice, "alice's long password")
	bv := readyVault(t, env, bob, "bob's long password")
	cv := readyVault(t, env, carol, "carol's long password")
	if err := alice.AdminAction(ctx, bu.ID, api.ActionPause); err != nil {
		t.Fatal(err)
	}
	if err := alice.AdminAction(ctx, cu.ID, api.ActionStop); err != nil {
		t.Fatal(err)
	}
	const oldEnv, newEnv = "OCMT_VAULT_AUTO_LOCK=30m0s", "OCMT_VAULT_AUTO_LOCK=2m0s"
	ids := map[string]string{}
	for _, uid := range []string{au.ID, bu.ID, cu.ID} {
		id, e := inspect(uid)
		if !slices.Contains(e, oldEnv) {
			t.Fatalf("container env before the change has no %s", oldEnv)
		}
		ids[uid] = id
	}

	t.Run("unchanged configuration recreates nothing", func(t *testing.T) {
		restart("containers match the current configuration")
		for _, uid := range []string{au.ID, bu.ID, cu.ID} {
			if id, _ := inspect(uid); id != ids[uid] {
				t.Fatalf("container of %s recreated with its configuration unchanged", uid)
			}
		}
		if s := agentState(bob); s != api.StatePaused {
			t.Fatalf("paused container is %s", s)
		}
		if st := vaultStatus(av); st.Locked {
			t.Fatalf("alice's vault locked by a restart that changed nothing: %+v", st)
		}
	})

	env.Cfg.VaultAutoLock = newAutoLock
	restart("containers updated to the current configuration")

	t.Run("running container recreated with the new environment, vault still unlocked", func(t *testing.T) {
		id, e := inspect(au.ID)
		if id == ids[au.ID] || !slices.Contains(e, newEnv) || slices.Contains(e, oldEnv) {
			t.Fatalf("running container not recreated with %s (same id: %v)", newEnv, id == ids[au.ID])
		}
		if s := agentState(alice); s != api.StateRunning {
			t.Fatalf("state %s", s)
		}
		unlockedFor(av, "running container")
	})

	t.Run("paused container recreated and paused again, vault still unlocked", func(t *testing.T) {
		id, e := inspect(bu.ID)
		if id == ids[bu.ID] || !slices.Contains(e, newEnv) {
			t.Fatalf("paused container not recreated with %s (same id: %v)", newEnv, id == ids[bu.ID])
		}
		if s := agentState(bob); s != api.StatePaused {
			t.Fatalf("state %s, want paused again", s)
		}
		unlockedFor(bv, "paused container") // wakes it
	})

	t.Run("stopped container gets the new environment at its next start", func(t *testing.T) {
		id, e := inspect(cu.ID)
		if id != ids[cu.ID] || !slices.Contains(e, oldEnv) {
			t.Fatal("a stopped container was touched before its next start")
		}
		// The restart forgot its hibernation key: locked, but its volume
		// (and so its vault) is still there.
		if st := vaultStatus(cv); !st.Initialized || !st.Locked {
			t.Fatalf("vault after wake: %+v, want initialized and locked", st)
		}
		id, e = inspect(cu.ID)
		if id == ids[cu.ID] || !slices.Contains(e, newEnv) {
			t.Fatalf("stopped container not recreated with %s at its start (same id: %v)", newEnv, id == ids[cu.ID])
		}
		cv.unlock(cv.deriveKey("carol's long password"))
		unlockedFor(cv, "stopped container after its next start")
	})
}
