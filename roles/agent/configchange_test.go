package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/agent"
	"github.com/ocmt/ocmt/roles/agent/process"
	"github.com/ocmt/ocmt/roles/agent/runtime"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/xtest"
)

// keepOpen is a driver whose Close leaves its instances alone, so that two
// agent servers in a row can share one process driver the way two ocmt runs
// share one docker engine.
type keepOpen struct{ runtime.Driver }

func (keepOpen) Close() error { return nil }

// directVault talks to a user's vault at its endpoint with the container
// secret, as the agent role's proxy does.
type directVault struct {
	t      *testing.T
	s      *agent.Server
	userID string
}

func (v directVault) do(method, path string, body, out any) {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec, err := v.s.Wake(ctx, v.userID)
	if err != nil {
		v.t.Fatalf("wake %s: %v", v.userID, err)
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, method, rec.Endpoint+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(runtime.SecretHeader, v.s.ContainerSecret(v.userID))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		v.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			v.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// create initializes the vault (which leaves it unlocked) and returns its key.
func (v directVault) create(password string) crypto.KEK {
	v.t.Helper()
	var p struct {
		Salt string           `json:"salt"`
		KDF  crypto.KDFParams `json:"kdf"`
	}
	v.do("GET", "/vault/params", nil, &p)
	salt, _ := base64.StdEncoding.DecodeString(p.Salt)
	k, err := crypto.DeriveKEK([]byte(password), salt, p.KDF)
	if err != nil {
		v.t.Fatal(err)
	}
	v.do("POST", "/vault/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(k[:])}, nil)
	return k
}

func (v directVault) unlock(k crypto.KEK) {
	v.t.Helper()
	var ch struct {
		ChallengeID string `json:"challengeId"`
		Challenge   string `json:"challenge"`
	}
	v.do("POST", "/vault/unlock/challenge", nil, &ch)
	chb, _ := base64.StdEncoding.DecodeString(ch.Challenge)
	v.do("POST", "/vault/unlock", map[string]string{"challengeId": ch.ChallengeID, "derivedKey": base64.StdEncoding.EncodeToString(k[:]),
		"proof": base64.StdEncoding.EncodeToString(crypto.UnlockProof(&k, chb))}, nil)
}

type vaultStatus struct {
	Initialized bool  `json:"initialized"`
	Locked      bool  `json:"locked"`
	ExpiresIn   int64 `json:"expiresIn"`
}

func (v directVault) status() vaultStatus {
	v.t.Helper()
	var st vaultStatus
	v.do("GET", "/vault/status", nil, &st)
	return st
}

// TestConfigChangeProcess: after the agent role starts with a shorter vault
// auto-lock, running and paused containers are recreated from the new
// configuration at once and their unlocked vaults stay unlocked (for no
// longer than the new auto-lock); a stopped one gets the new configuration
// at its next start; with the configuration unchanged nothing is recreated.
func TestConfigChangeProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &xtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	drv := process.New(log)
	t.Cleanup(func() { drv.Close() })
	bin := xtest.Binary(t)
	start := func(autoLock time.Duration) *agent.Server {
		t.Helper()
		s, err := agent.New(ctx, agent.Options{Driver: keepOpen{drv}, Store: st, Log: log, Version: "test", Binary: bin,
			DataDir: filepath.Join(dir, "users"), PublicURL: "http://127.0.0.1:1", HibernateUnlocked: true, VaultAutoLock: autoLock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		select {
		case <-s.ApplyConfig():
		case <-time.After(2 * time.Minute):
			t.Fatal("ApplyConfig did not finish")
		}
		return s
	}
	state := func(s *agent.Server, uid string) string {
		t.Helper()
		as, err := s.Status(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		return as.State
	}
	const newAutoLock = 2 * time.Minute
	unlockedFor := func(v directVault, what string) {
		t.Helper()
		st := v.status()
		if st.Locked || st.ExpiresIn <= 0 || st.ExpiresIn > int64(newAutoLock.Seconds()) {
			t.Fatalf("%s: vault %+v, want unlocked for at most %s", what, st, newAutoLock)
		}
	}

	s1 := start(30 * time.Minute)
	users := []string{"usr_runningaaaaaaaaaaaaaaaaaaa", "usr_pausedaaaaaaaaaaaaaaaaaaaa", "usr_stoppedaaaaaaaaaaaaaaaaaaa"}
	keys := map[string]crypto.KEK{}
	for _, uid := range users {
		if err := s1.Provision(ctx, uid); err != nil {
			t.Fatal(err)
		}
	}
	for _, uid := range users {
		xtest.Eventually(t, time.Minute, func() error {
			if s := state(s1, uid); s != api.StateRunning {
				return errString("state " + s)
			}
			return nil
		})
		keys[uid] = directVault{t, s1, uid}.create("password of " + uid)
	}
	if st := (directVault{t, s1, "usr_runningaaaaaaaaaaaaaaaaaaa"}).status(); st.ExpiresIn <= int64(newAutoLock.Seconds()) {
		t.Fatalf("vault before the change: %+v, want the 30 min auto-lock", st)
	}
	if err := s1.Do(ctx, "usr_pausedaaaaaaaaaaaaaaaaaaaa", api.ActionPause); err != nil {
		t.Fatal(err)
	}
	if err := s1.Do(ctx, "usr_stoppedaaaaaaaaaaaaaaaaaaa", api.ActionStop); err != nil {
		t.Fatal(err)
	}
	s1.Close()

	// ocmt starts again with a shorter auto-lock.
	s2 := start(newAutoLock)
	if got := state(s2, "usr_runningaaaaaaaaaaaaaaaaaaa"); got != api.StateRunning {
		t.Fatalf("running container is %s after the update", got)
	}
	unlockedFor(directVault{t, s2, "usr_runningaaaaaaaaaaaaaaaaaaa"}, "running container")
	if got := state(s2, "usr_pausedaaaaaaaaaaaaaaaaaaaa"); got != api.StatePaused {
		t.Fatalf("paused container is %s after the update, want paused again", got)
	}
	unlockedFor(directVault{t, s2, "usr_pausedaaaaaaaaaaaaaaaaaaaa"}, "paused container")
	if !strings.Contains(logs.String(), "containers updated to the current configuration") {
		t.Fatal("no summary line for the updated containers")
	}

	// The stopped one is recreated at its next start. Its resume key went
	// with the previous server, so its vault starts locked, data intact.
	if got := state(s2, "usr_stoppedaaaaaaaaaaaaaaaaaaa"); got != api.StateStopped {
		t.Fatalf("stopped container is %s after the update, want left stopped", got)
	}
	before := strings.Count(logs.String(), "configuration changed")
	sv := directVault{t, s2, "usr_stoppedaaaaaaaaaaaaaaaaaaa"}
	if st := sv.status(); !st.Initialized || !st.Locked {
		t.Fatalf("stopped container's vault after wake: %+v, want initialized and locked", st)
	}
	sv.unlock(keys["usr_stoppedaaaaaaaaaaaaaaaaaaa"])
	unlockedFor(sv, "stopped container after its next start")
	if strings.Count(logs.String(), "configuration changed") != before+1 {
		t.Fatal("waking the stopped container did not recreate it")
	}

	// Unchanged configuration: nothing is recreated, at start or on wake.
	endpoint := func(s *agent.Server, uid string) string {
		rec, err := s.Wake(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Endpoint
	}
	was := endpoint(s2, "usr_runningaaaaaaaaaaaaaaaaaaa")
	s2.Close()
	changes := strings.Count(logs.String(), "configuration changed")
	s3 := start(newAutoLock)
	if got := endpoint(s3, "usr_runningaaaaaaaaaaaaaaaaaaa"); got != was {
		t.Fatalf("running container restarted (endpoint %s, was %s) with its configuration unchanged", got, was)
	}
	unlockedFor(directVault{t, s3, "usr_runningaaaaaaaaaaaaaaaaaaa"}, "unchanged configuration")
	if err := s3.Do(ctx, "usr_runningaaaaaaaaaaaaaaaaaaa", api.ActionStop); err != nil {
		t.Fatal(err)
	}
	unlockedFor(directVault{t, s3, "usr_runningaaaaaaaaaaaaaaaaaaa"}, "stop and wake with the configuration unchanged")
	if n := strings.Count(logs.String(), "configuration changed"); n != changes {
		t.Fatalf("%d containers recreated with the configuration unchanged", n-changes)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
