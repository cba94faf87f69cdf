package e2e

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/xtest"
)

// TestBrowserVaultBackupRestore: the "Encrypted backup" card backs the
// vault up; after the container's data is lost, the wizard's first step
// offers the backup instead of a new vault, restoring it leads to the
// unlock dialog, and the old password opens it (process runtime).
func TestBrowserVaultBackupRestore(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	const (
		email    = "backup-browser@example.org"
		password = "a browser backup password 4"
	)
	env := xtest.NewEnv(t)
	b := newBrowser(t, env, 4*time.Minute)
	b.signInBootstrap(email)
	b.waitAgentState("running", 2*time.Minute)
	b.waitJS("the wizard's first step", 30*time.Second, `vis('#onboarding-step-1') && vis('#vault-password')`, "")
	if mustEval[bool](b, `!document.getElementById('restore-offer').hidden`) {
		t.Fatal("a restore is offered without any backup")
	}

	// The vault is made over the API (the wizard has its own test).
	c := b.apiClient()
	v := vaultAPI{t: t, c: c, env: env}
	k := v.deriveKey(password)
	v.json("POST", "/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(k[:])}, nil)
	b.open("/")
	b.waitJS("the workspace", 30*time.Second, `vis('#tab-vault')`, "")
	b.do("open Vault & keys", chromedp.Click(chromedp.ID("tab-vault")))
	b.waitJS("the Vault & keys tab with the backup card", 30*time.Second, `vis('#backup-card') && vis('#backup-now') && document.getElementById('backup-last').textContent === 'never'`, "")
	b.do("press Back up now", chromedp.Click(chromedp.ID("backup-now")))
	b.waitJS("the backup is taken", 30*time.Second,
		`document.getElementById('backup-status').dataset.kind === 'ok' && document.querySelector('#backup-last time')`,
		`document.getElementById('backup-status').dataset.kind === 'error' && document.getElementById('backup-status').textContent`)
	list, err := c.VaultBackups(context.Background())
	if err != nil || len(list.Backups) != 1 {
		t.Fatalf("backups after the click: %+v %v", list, err)
	}
	b.screenshot("vault-backup-card")

	// The container's data is lost; the next wake starts an empty vault.
	u, err := c.Me(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AdminAction(context.Background(), u.ID, api.ActionStop); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(env.Cfg.DataDir, "users", u.ID)
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		t.Fatalf("container data: %d entries, %v", len(ents), err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	v.wake()
	b.open("/")
	b.waitJS("the wizard offers the backup", 30*time.Second,
		`vis('#onboarding-step-1') && vis('#restore-offer') && document.getElementById('restore-choice').options.length === 1`, "")
	b.screenshot("vault-restore-offer")
	b.do("press Restore this backup", chromedp.Click(chromedp.ID("restore-submit")))
	b.waitJS("the unlock dialog after the restore", 30*time.Second,
		`document.getElementById('onboarding').hidden && document.getElementById('unlock-dialog').open`,
		`document.getElementById('restore-status').dataset.kind === 'error' && document.getElementById('restore-status').textContent`)
	b.do("unlock with the old password",
		chromedp.SendKeys(chromedp.ID("unlock-password"), password),
		chromedp.Click(chromedp.ID("unlock-submit")))
	b.waitJS("the vault unlocked", 60*time.Second,
		`!document.getElementById('unlock-dialog').open && document.getElementById('vault-state').dataset.locked === 'false'`, "")
	b.checkConsole()
}
