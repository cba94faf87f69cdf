package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/xtest"
)

// runVaultBackup is the encrypted vault backup story (issue 10 item 5):
// Alice's vault holds a provider key and has three ways in (password,
// recovery phrase, backup key); she backs it up (locked: the
// management role only ever sees ciphertext), her container's data is
// lost, a fresh container gets
// the backup back, and each way in opens it, with the key intact and
// usable. The management database, logs and answers hold neither the key
// nor the DEK nor any derived key. lose destroys the container's data (admin is
// the user's own client, an admin) so that the next wake starts empty.
func runVaultBackup(t *testing.T, env *xtest.Env, fp *fakeprovider.Server, lose func(admin *api.Client, userID string)) {
	ctx := context.Background()
	const (
		password = "alice's vault backup password 9"
		apiKey   = "sk-ant-vault-backup-e2e-3b7f21"
		question = "Which moon keeps the spare key?"
		reply    = "The one behind the copper kite."
	)
	alice, au := env.Admin("alice@example.org")
	chat := &api.Client{Base: alice.Base, HC: &http.Client{Jar: alice.HC.Jar}} // WebSockets bypass the recorder
	responses := record(alice)
	bob, _ := env.Invite(alice, "bob@example.org")
	v := readyVault(t, env, alice, password)
	kek := v.deriveKey(password)
	fp.SetKey(apiKey)
	v.json("PUT", "/apikeys/anthropic", map[string]string{"key": apiKey, "baseUrl": fp.URL()}, nil)
	// Two more ways in (the browser derives these keys; any 32 bytes do here).
	phrase, backupKey := randomKEK(t), randomKEK(t)
	v.json("PUT", "/ways/phrase", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(phrase[:])}, nil)
	v.json("PUT", "/ways/backup-key", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(backupKey[:])}, nil)

	// Back up while locked: the container hands out its sealed file only.
	v.json("POST", "/lock", nil, nil)
	start := time.Now()
	info, err := alice.BackupVault(ctx)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	backupTime := time.Since(start)
	var keys struct {
		Ed25519 string `json:"ed25519"`
	}
	if err := alice.JSON(ctx, "GET", "/api/v1/me/keys", nil, &keys); err != nil || keys.Ed25519 != info.Ed25519 {
		t.Fatalf("backup names key %q, directory %q (%v)", info.Ed25519, keys.Ed25519, err)
	}
	if info.SizeBytes <= 0 || len(info.SHA256) != 64 || !strings.HasPrefix(info.ID, "vbk_") {
		t.Fatalf("backup info: %+v", info)
	}
	// An unchanged vault adds no copy; of changed ones the newest three
	// are kept. Each change seals one more secret (an integration's).
	if again, err := alice.BackupVault(ctx); err != nil || again.ID != info.ID || again.CreatedAt.Before(info.CreatedAt) {
		t.Fatalf("backup of an unchanged vault: %+v %v (first %+v)", again, err, info)
	}
	v.unlock(kek)
	var secrets []string
	for i := range 3 {
		secret := fmt.Sprintf("Bearer calendar-backup-secret-%d-8c1e", i)
		secrets = append(secrets, secret)
		v.json("PUT", fmt.Sprintf("/integrations/calendar%d", i), map[string]string{"type": "http", "baseUrl": "https://calendar.example.org",
			"authHeader": "Authorization", "authValue": secret}, nil)
		if _, err := alice.BackupVault(ctx); err != nil {
			t.Fatal(err)
		}
	}
	v.json("POST", "/lock", nil, nil)
	list, err := alice.VaultBackups(ctx)
	if err != nil || len(list.Backups) != 3 || list.Keep != 3 || list.Backups[0].SHA256 == info.SHA256 || list.Backups[2].SHA256 == info.SHA256 {
		t.Fatalf("list after four different backups: %+v %v", list, err)
	}
	info = list.Backups[0]
	// Nobody else reads or restores it; nothing is restored over a vault.
	if err := bob.RestoreVault(ctx, info.ID); !isAPIError(err, http.StatusNotFound, "not_found") {
		t.Fatalf("bob restores alice's backup: %v", err)
	}
	if err := bob.RestoreVault(ctx, ""); !isAPIError(err, http.StatusBadRequest, "invalid_id") {
		t.Fatalf("restore without an id: %v", err)
	}
	if l, err := bob.VaultBackups(ctx); err != nil || len(l.Backups) != 0 {
		t.Fatalf("bob's list: %+v %v", l, err)
	}
	if err := alice.RestoreVault(ctx, info.ID); !isAPIError(err, http.StatusConflict, "already_initialized") {
		t.Fatalf("restore over the live vault: %v", err)
	}
	// A restore above the servers' general 1 MiB body limit reaches the
	// vault's own checks through every hop (management, agent, vault).
	big := api.VaultBackup{Format: api.VaultBackupFormat, Vault: make([]byte, 2<<20)}
	if r, err := alice.Do(ctx, "PUT", "/api/v1/me/agent"+api.VaultRestorePath, big); err != nil || r.Status != http.StatusBadRequest || r.ErrorCode() != "invalid_backup" {
		t.Fatalf("a 2 MiB restore through the proxy: %v %+v", err, r)
	}

	// Byte search of the stored blob: ciphertext only. The DEK comes from
	// the blob itself, opened with the password the platform never had.
	st, err := store.OpenReadOnly(ctx, filepath.Join(env.Cfg.DataDir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := st.VaultBackup(ctx, store.UserID(au.ID), info.ID)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := crypto.ParseVaultFile(blob.Vault)
	if err != nil {
		t.Fatal(err)
	}
	dek, err := f.Unlock(&kek)
	if err != nil {
		t.Fatalf("the stored backup does not open with the password: %v", err)
	}
	search := newLeakSearch(t).text("the API key", apiKey).text("the password", password)
	for _, sec := range secrets {
		search.text("an integration secret", sec)
	}
	for i, k := range [][]byte{dek[:], kek[:], phrase[:], backupKey[:]} {
		search.key([]string{"the DEK", "the password KEK", "the phrase KEK", "the backup key KEK"}[i], k)
	}
	search.in("the stored backup", blob.Vault)
	search.in("the stored backup's key record", []byte(blob.Record))

	// Lose the container's data; a new one starts empty.
	lose(alice, string(au.ID))
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := alice.ProvisionAgent(wctx); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitAgent(wctx, api.StateRunning); err != nil {
		t.Fatal(err)
	}
	var status struct {
		Initialized bool `json:"initialized"`
		Locked      bool `json:"locked"`
	}
	xtest.Eventually(t, 30*time.Second, func() error {
		return alice.JSON(ctx, "GET", "/api/v1/me/agent/vault/status", nil, &status)
	})
	if status.Initialized {
		t.Fatal("the new container already has a vault")
	}

	// Restore: the vault is back, locked, and opens with the password.
	start = time.Now()
	if err := alice.RestoreVault(ctx, info.ID); err != nil {
		t.Fatalf("restore: %v", err)
	}
	restoreTime := time.Since(start)
	v.json("GET", "/status", nil, &status)
	if !status.Initialized || !status.Locked {
		t.Fatalf("status after restore: %+v", status)
	}
	if err := alice.RestoreVault(ctx, info.ID); !isAPIError(err, http.StatusConflict, "already_initialized") {
		t.Fatalf("a second restore: %v", err)
	}
	wrong := v.deriveKey("not alice's password")
	if r := v.unlockAnswer("password", wrong); r.Status != http.StatusUnauthorized {
		t.Fatalf("a wrong password on the restored vault: %d %s", r.Status, r.Body)
	}
	time.Sleep(300 * time.Millisecond) // the vault's backoff after one failure is 250 ms
	// Every way in opens it: the phrase, the backup key, the password.
	var ways struct {
		Wraps []struct{ Kind string } `json:"wraps"`
	}
	v.json("GET", "/ways", nil, &ways)
	if len(ways.Wraps) != 3 {
		t.Fatalf("ways of the restored vault: %+v", ways)
	}
	v.json("POST", "/unlock", v.proveWay("phrase", phrase, nil), nil)
	v.json("POST", "/lock", nil, nil)
	v.json("POST", "/unlock", v.proveWay("backup-key", backupKey, nil), nil)
	v.json("POST", "/lock", nil, nil)
	v.unlock(kek)
	var providers struct {
		Providers []struct {
			Provider string `json:"provider"`
		} `json:"providers"`
	}
	v.json("GET", "/apikeys", nil, &providers)
	if len(providers.Providers) != 1 || providers.Providers[0].Provider != "anthropic" {
		t.Fatalf("providers after restore: %+v", providers)
	}
	var integrations struct {
		Integrations []struct {
			Name string `json:"name"`
		} `json:"integrations"`
	}
	v.json("GET", "/integrations", nil, &integrations)
	if len(integrations.Integrations) != 3 {
		t.Fatalf("integrations after restore (the newest backup has all three): %+v", integrations)
	}
	fp.Script(fakeprovider.Reply{Text: reply})
	if _, got := dialChat(t, env, chat).chatOnce("main", question); got != reply {
		t.Fatalf("chat with the restored key: %q", got)
	}
	if err := alice.JSON(ctx, "GET", "/api/v1/me/keys", nil, &keys); err != nil || keys.Ed25519 != info.Ed25519 {
		t.Fatalf("directory after restore: %q (%v), want %q", keys.Ed25519, err, info.Ed25519)
	}
	var audit struct {
		Events []api.AuditEvent `json:"events"`
	}
	alice.JSON(ctx, "GET", "/api/v1/audit?action=vault.", nil, &audit)
	seen := map[string]bool{}
	for _, e := range audit.Events {
		seen[e.Action] = true
	}
	if !seen["vault.backed_up"] || !seen["vault.restored"] {
		t.Fatalf("audit: %+v", audit.Events)
	}
	t.Logf("sealed vault %d bytes; backup %v, restore %v (one request each, client → management → container and back)", info.SizeBytes,
		backupTime.Round(time.Millisecond), restoreTime.Round(time.Millisecond))

	// Nothing secret on the platform's disk or in its logs.
	env.Stop()
	search.in("management responses", responses.bytes())
	search.platform(env)
}

func isAPIError(err error, status int, code string) bool {
	var e *api.Error
	return errors.As(err, &e) && e.Status == status && e.Code == code
}

// stopContainer stops userID's container through the admin API.
func stopContainer(t *testing.T, admin *api.Client, userID string) {
	t.Helper()
	if err := admin.AdminAction(context.Background(), userID, api.ActionStop); err != nil {
		t.Fatal(err)
	}
}

// TestVaultBackupRestoreProcess runs the story with the process runtime:
// the stopped container's data directory is emptied.
func TestVaultBackupRestoreProcess(t *testing.T) {
	env := xtest.NewEnv(t)
	fp := fakeprovider.New()
	defer fp.Close()
	runVaultBackup(t, env, fp, func(admin *api.Client, uid string) {
		stopContainer(t, admin, uid)
		dir := filepath.Join(env.Cfg.DataDir, "users", uid)
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) == 0 {
			t.Fatalf("container data in %s: %d entries, %v", dir, len(ents), err)
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestVaultBackupRestoreSplit runs it with the roles apart: the backup
// and the restore cross the agent role's HTTP proxy, and the agent role
// removes the container with its data (its "remove" action, which only
// the service secret reaches).
func TestVaultBackupRestoreSplit(t *testing.T) {
	env := xtest.NewSplitEnv(t)
	fp := fakeprovider.New()
	defer fp.Close()
	runVaultBackup(t, env, fp, func(_ *api.Client, uid string) {
		ac, err := api.NewAgentClient(env.Cfg.AgentURL, env.Cfg.ServiceSecret)
		if err != nil {
			t.Fatal(err)
		}
		if err := ac.Do(context.Background(), uid, api.ActionRemove); err != nil {
			t.Fatal(err)
		}
	})
}

// TestVaultBackupRestoreToNewContainer: real Docker. The user's container
// and its volume are removed behind ocmt's back (a lost volume); the next
// wake creates a new container on a new, empty volume, which gets the
// sealed vault back from the management role and opens with the old
// password.
func TestVaultBackupRestoreToNewContainer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	env := xtest.NewEnv(t, xtest.WithRuntime(config.RuntimeDocker))
	fp := fakeProviderOnGateway(t, env)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	runVaultBackup(t, env, fp, func(admin *api.Client, uid string) {
		ctx := context.Background()
		stopContainer(t, admin, uid)
		if _, err := cli.ContainerRemove(ctx, "ocmt-"+uid, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		vol := docker.VolumeName(uid)
		if _, err := cli.VolumeRemove(ctx, vol, client.VolumeRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.VolumeInspect(ctx, vol, client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
			t.Fatalf("volume %s still there: %v", vol, err)
		}
	})
}
