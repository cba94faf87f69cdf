package vault

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
)

// lifecycle posts to one of the /internal endpoints with both headers.
func (v *tv) lifecycle(path string, key []byte, header bool) (int, hibernateResp) {
	v.t.Helper()
	b, _ := json.Marshal(hibernateReq{Key: b64(key)})
	req, _ := http.NewRequest("POST", v.srv.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.ContainerSecretHeader, testSecret)
	if header {
		req.Header.Set(api.LifecycleHeader, testSecret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out hibernateResp
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

func (v *tv) locked() bool {
	v.t.Helper()
	_, st := v.do("GET", "/vault/status", nil)
	return st["locked"] == true
}

// restart replaces the vault server with a new one on the same data
// directory and clock, as a container start does.
func (v *tv) restart() *tv {
	v.t.Helper()
	n := newTestVault(v.t, v.dir)
	n.clk.t = v.clk.now()
	return n
}

func TestHibernateKeepsVaultUnlockedAcrossRestart(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	v := newTestVault(t, "")
	v.create("correct horse battery staple")
	v.clk.add(10 * time.Minute) // 20 minutes of auto-lock left
	if st, res := v.lifecycle("/internal/hibernate", key, true); st != 200 || !res.Unlocked {
		t.Fatalf("hibernate: %d %+v", st, res)
	}
	raw, err := os.ReadFile(filepath.Join(v.dir, hibernateFileName))
	if err != nil || bytes.Contains(raw, key) {
		t.Fatalf("hibernation file: %v (holds the key: %v)", err, bytes.Contains(raw, key))
	}

	w := v.restart()
	if !w.locked() {
		t.Fatal("a restarted vault must start locked")
	}
	w.clk.add(5 * time.Minute)
	st, res := w.lifecycle("/internal/resume", key, true)
	if st != 200 || !res.Unlocked || res.ExpiresIn != int64((15*time.Minute).Seconds()) {
		t.Fatalf("resume: %d %+v (want 900 s left: the deadline does not move)", st, res)
	}
	if w.locked() {
		t.Fatal("vault locked after resume")
	}
	if _, err := os.Stat(filepath.Join(w.dir, hibernateFileName)); !os.IsNotExist(err) {
		t.Fatalf("hibernation file kept after resume: %v", err)
	}
	// The key works once.
	x := w.restart()
	if _, res := x.lifecycle("/internal/resume", key, true); res.Unlocked || res.Reason != "no_state" {
		t.Fatalf("second resume: %+v", res)
	}
}

// restartWithAutoLock is restart with another auto-lock setting, as after
// ocmt recreated the container with a changed OCMT_VAULT_AUTO_LOCK.
func (v *tv) restartWithAutoLock(d time.Duration) *tv {
	v.t.Helper()
	s, err := New(Options{Secret: testSecret, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		DataDir: v.dir, PublicURL: "https://ocmt.example", UserID: "usr_test", Now: v.clk.now, AutoLock: d})
	if err != nil {
		v.t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	v.t.Cleanup(srv.Close)
	return &tv{t: v.t, s: s, srv: srv, clk: v.clk, dir: v.dir}
}

// TestHibernateResumeWithShorterAutoLock: a vault restarted with a shorter
// auto-lock resumes unlocked, but for no longer than the new setting allows.
func TestHibernateResumeWithShorterAutoLock(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	v := newTestVault(t, "")
	k := v.create("correct horse battery staple")
	v.clk.add(time.Minute) // 29 minutes of the default auto-lock left
	if _, res := v.lifecycle("/internal/hibernate", key, true); !res.Unlocked {
		t.Fatalf("hibernate: %+v", res)
	}
	w := v.restartWithAutoLock(2 * time.Minute)
	_, res := w.lifecycle("/internal/resume", key, true)
	if !res.Unlocked || res.ExpiresIn <= 0 || res.ExpiresIn > int64((2*time.Minute).Seconds()) {
		t.Fatalf("resume: %+v (want unlocked for at most the new 120 s)", res)
	}
	w.clk.add(2 * time.Minute)
	if !w.locked() {
		t.Fatal("vault still unlocked past the new, shorter auto-lock")
	}

	// A longer auto-lock does not move the old deadline either.
	w.unlockWith(k)
	w.clk.add(30 * time.Second) // 90 s left
	if _, res := w.lifecycle("/internal/hibernate", key, true); !res.Unlocked {
		t.Fatalf("hibernate: %+v", res)
	}
	x := w.restartWithAutoLock(time.Hour)
	if _, res := x.lifecycle("/internal/resume", key, true); !res.Unlocked || res.ExpiresIn != 90 {
		t.Fatalf("resume with a longer auto-lock: %+v (want the old 90 s)", res)
	}
}

func TestHibernateRefusals(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	v := newTestVault(t, "")

	// Without the lifecycle header (as through the proxy): not found.
	if st, _ := v.lifecycle("/internal/hibernate", key, false); st != http.StatusNotFound {
		t.Fatalf("without lifecycle header: %d", st)
	}
	if _, res := v.lifecycle("/internal/hibernate", key, true); res.Unlocked || res.Reason != "not_initialized" {
		t.Fatalf("uninitialized: %+v", res)
	}
	k := v.create("correct horse battery staple")
	if st, _ := v.lifecycle("/internal/hibernate", []byte("short"), true); st != http.StatusBadRequest {
		t.Fatalf("short key: %d", st)
	}

	// A locked vault keeps nothing.
	v.do("POST", "/vault/lock", nil)
	if _, res := v.lifecycle("/internal/hibernate", key, true); res.Unlocked || res.Reason != "locked" {
		t.Fatalf("locked: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(v.dir, hibernateFileName)); !os.IsNotExist(err) {
		t.Fatal("a locked vault wrote a hibernation file")
	}

	// A wrong key opens nothing and burns the file.
	v.unlockWith(k)
	v.lifecycle("/internal/hibernate", key, true)
	w := v.restart()
	if _, res := w.lifecycle("/internal/resume", bytes.Repeat([]byte{8}, 32), true); res.Unlocked || res.Reason != "bad_key" || !w.locked() {
		t.Fatalf("wrong key: %+v", res)
	}
	if _, res := w.lifecycle("/internal/resume", key, true); res.Unlocked {
		t.Fatal("the right key worked after a wrong one: the file must be gone")
	}

	// Past the auto-lock deadline: stays locked.
	w.unlockWith(k)
	w.lifecycle("/internal/hibernate", key, true)
	x := w.restart()
	x.clk.add(DefaultAutoLock)
	if _, res := x.lifecycle("/internal/resume", key, true); res.Unlocked || res.Reason != "expired" || !x.locked() {
		t.Fatalf("expired: %+v", res)
	}

	// An explicit lock, a password unlock, or the deadline passing deletes the file.
	x.unlockWith(k)
	for name, drop := range map[string]func(v *tv){
		"lock":     func(v *tv) { v.do("POST", "/vault/lock", nil) },
		"unlock":   func(v *tv) { v.unlockWith(k) },
		"deadline": func(v *tv) { v.clk.add(DefaultAutoLock); v.s.dropStaleHibernation() },
	} {
		x.unlockWith(k)
		x.lifecycle("/internal/hibernate", key, true)
		drop(x)
		if _, err := os.Stat(filepath.Join(x.dir, hibernateFileName)); !os.IsNotExist(err) {
			t.Errorf("%s kept the hibernation file", name)
		}
	}
}
