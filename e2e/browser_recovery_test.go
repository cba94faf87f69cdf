package e2e

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/ui"
	"github.com/ocmt/ocmt/xtest"
)

// skipRecoveryPhrase waits for the recovery phrase dialog that follows
// "Create vault" and presses "Skip for now" (for tests about other things).
func (b *browser) skipRecoveryPhrase() {
	b.t.Helper()
	b.waitJS("the recovery phrase dialog", 90*time.Second,
		`document.getElementById('phrase-dialog').open && document.querySelectorAll('#phrase-words .phrase-word').length === 12`,
		`document.getElementById('vault-create-status').dataset.kind === 'error' && 'vault creation failed: ' + document.getElementById('vault-create-status').textContent`)
	b.do("press Skip for now", chromedp.Click(chromedp.ID("phrase-skip")))
	b.waitJS("the phrase dialog closed", stepTimeout, `!document.getElementById('phrase-dialog').open`, "")
}

// TestBrowserRecoveryPhrase walks the recovery UI in Chromium: the
// recovery phrase at vault creation (12 words, three asked back), the
// "Ways back in" card, a backup key made from it, and "Forgot password?"
// with the phrase setting a new password; the old one is then refused.
// It also checks that the page's WebAssembly derives the same KEKs as
// package crypto for a fixed phrase and backup key (the Go↔browser
// derivation check).
func TestBrowserRecoveryPhrase(t *testing.T) {
	if findChromium() == "" {
		xtest.SkipOrFail(t, "no chromium or chromium-browser in PATH")
	}
	env := xtest.NewEnv(t)
	b := newBrowser(t, env, 5*time.Minute)
	const (
		email  = "recovery-browser@example.com"
		oldPW  = "quartz-meadow-lantern-5127"
		newPW  = "saffron-glacier-violin-8803"
		vector = "legal winner thank year wave sausage worth useful legal winner thank yellow"
	)

	b.signInBootstrap(email)
	b.waitAgentState("running", 2*time.Minute)
	b.waitJS("the onboarding wizard shows step 1", 30*time.Second, `vis('#onboarding-step-1') && vis('#vault-password')`, "")

	// Go ↔ browser: the page's module (worker + kdf.wasm) against package crypto.
	var bk crypto.BackupKey
	copy(bk[:], "fixed backup key")
	wantPhrase, err := crypto.PhraseKEK(vector)
	if err != nil {
		t.Fatal(err)
	}
	wantBK := crypto.BackupKeyKEK(&bk)
	got, err := evalAwait[[]string](b, `import('`+ui.AssetURL("recoverykeys.js")+`').then(async (m) => {
  const t0 = performance.now();
  const p = await m.phraseKey('`+strings.ToUpper(vector)+`');
  const t1 = performance.now();
  return [p, await m.backupKeyKey('`+strings.ToLower(bk.Text())+`'), String(Math.round(t1 - t0)), await m.newPhrase()];
})`, stepTimeout)
	if err != nil {
		b.fatalf("derive in the page: %v", err)
	}
	if got[0] != base64.StdEncoding.EncodeToString(wantPhrase[:]) {
		t.Errorf("browser phrase KEK %s, Go %s", got[0], base64.StdEncoding.EncodeToString(wantPhrase[:]))
	}
	if got[1] != base64.StdEncoding.EncodeToString(wantBK[:]) {
		t.Errorf("browser backup-key KEK %s, Go %s", got[1], base64.StdEncoding.EncodeToString(wantBK[:]))
	}
	if _, err := crypto.PhraseKEK(got[3]); err != nil || len(strings.Fields(got[3])) != 12 {
		t.Errorf("the browser's new phrase %q: %v", got[3], err)
	}
	t.Logf("browser phrase KEK derivation (worker start + wasm load + PBKDF2 + HKDF): %s ms", got[2])

	// 1. Create the vault; the phrase is shown once, three words asked back.
	b.do("type the vault password twice",
		chromedp.SendKeys(chromedp.ID("vault-password"), oldPW),
		chromedp.SendKeys(chromedp.ID("vault-password-confirm"), oldPW))
	b.do("press Create vault", chromedp.Click(chromedp.ID("vault-create-submit")))
	b.waitJS("the recovery phrase dialog", 90*time.Second,
		`document.getElementById('phrase-dialog').open && document.querySelectorAll('#phrase-words .phrase-word').length === 12`,
		`document.getElementById('vault-create-status').dataset.kind === 'error' && document.getElementById('vault-create-status').textContent`)
	b.screenshot("recovery-phrase")
	words := mustEval[[]string](b, `[...document.querySelectorAll('#phrase-words .phrase-word')].map((e) => e.textContent)`)
	phrase := strings.Join(words, " ")
	if _, err := crypto.PhraseKEK(phrase); err != nil {
		t.Fatalf("the page shows an invalid phrase %q: %v", phrase, err)
	}
	b.do("press I wrote it down", chromedp.Click(chromedp.ID("phrase-written")))
	b.waitJS("three words asked back", stepTimeout, `vis('#phrase-check') && document.querySelectorAll('#phrase-quiz input').length === 3`, "")
	// A wrong word is refused.
	mustEval[bool](b, `(() => { for (const el of document.querySelectorAll('#phrase-quiz input')) el.value = 'wrong'; return true; })()`)
	b.do("press Save with wrong words", chromedp.Click(chromedp.ID("phrase-confirm")))
	b.waitJS("the wrong word refused", stepTimeout, `document.getElementById('phrase-check-status').dataset.kind === 'error'`, "")
	mustEval[bool](b, `(() => { const w = `+jsonString(words)+`; for (const el of document.querySelectorAll('#phrase-quiz input')) el.value = w[Number(el.dataset.index)].toUpperCase() + ' '; return true; })()`)
	b.do("press Save recovery phrase", chromedp.Click(chromedp.ID("phrase-confirm")))
	b.waitJS("the phrase saved and the provider step", 30*time.Second, `!document.getElementById('phrase-dialog').open && vis('#onboarding-step-2')`,
		`document.getElementById('phrase-check-status').dataset.kind === 'error' && document.getElementById('phrase-check-status').textContent`)
	b.do("press Later", chromedp.Click(chromedp.CSS(`#provider-setup-form [data-action="onboarding-skip"]`)))

	// 2. "Ways back in" shows the phrase; make a backup key too.
	b.do("open Vault & keys", chromedp.Click(chromedp.ID("tab-vault")))
	b.waitJS("the phrase listed as set", 30*time.Second, `document.querySelector('#ways-list [data-way="Recovery phrase"]')?.dataset.set === 'true' && document.getElementById('ways-nudge').hidden`, "")
	b.do("press Create (backup key)", chromedp.Click(chromedp.ID("ways-backupkey-setup")))
	b.waitJS("a backup key", 30*time.Second, `/^([0-9A-Z]{4}-){7}[0-9A-Z]{4}$/.test(document.getElementById('backupkey-text').textContent)`, "")
	b.screenshot("recovery-backup-key")
	bkText := mustEval[string](b, `document.getElementById('backupkey-text').textContent`)
	if _, err := crypto.ParseBackupKey(bkText); err != nil {
		t.Errorf("the page shows a backup key Go cannot parse %q: %v", bkText, err)
	}
	b.do("tick and save", chromedp.Click(chromedp.ID("backupkey-saved")), chromedp.Click(chromedp.ID("backupkey-save")))
	b.waitJS("the backup key listed as set", 30*time.Second, `!document.getElementById('backupkey-dialog').open && document.querySelector('#ways-list [data-way="Backup key"]')?.dataset.set === 'true'`,
		`document.getElementById('backupkey-status').dataset.kind === 'error' && document.getElementById('backupkey-status').textContent`)
	b.screenshot("recovery-ways")

	// 3. Lock; "Forgot password?" → the phrase → a new password.
	b.do("press Lock now", chromedp.Click(chromedp.ID("vault-lock")))
	b.waitJS("the vault locked", stepTimeout, `document.getElementById('vault-state').dataset.locked === 'true'`, "")
	b.do("press Unlock", chromedp.Click(chromedp.ID("vault-unlock")))
	b.waitJS("the unlock dialog", stepTimeout, `document.getElementById('unlock-dialog').open`, "")
	b.do("press Forgot password?", chromedp.Click(chromedp.ID("unlock-forgot")))
	b.waitJS("the recovery choices", stepTimeout, `vis('#recover-paths [data-path="phrase"]') && vis('#recover-paths [data-path="backup-key"]')`, "")
	b.screenshot("recovery-forgot")
	b.do("choose the phrase", chromedp.Click(chromedp.CSS(`#recover-paths [data-path="phrase"]`)))
	b.do("fill in the phrase and a new password",
		chromedp.SendKeys(chromedp.ID("recover-secret"), "  "+strings.ToUpper(phrase)),
		chromedp.SendKeys(chromedp.ID("recover-password"), newPW),
		chromedp.SendKeys(chromedp.ID("recover-password-confirm"), newPW))
	start := time.Now()
	b.do("press Set new password", chromedp.Click(chromedp.ID("recover-submit")))
	b.waitJS("the vault open with the new password", 90*time.Second,
		`!document.getElementById('recover-dialog').open && !document.getElementById('unlock-dialog').open && document.getElementById('vault-state').dataset.locked === 'false'`,
		`document.getElementById('recover-status').dataset.kind === 'error' && document.getElementById('recover-status').textContent`)
	t.Logf("browser recovery reset (phrase KEK + Argon2id of the new password + challenge + reset): %d ms", time.Since(start).Milliseconds())

	// 4. The old password is refused, the new one works.
	b.do("press Lock now", chromedp.Click(chromedp.ID("vault-lock")))
	b.waitJS("the vault locked", stepTimeout, `document.getElementById('vault-state').dataset.locked === 'true'`, "")
	b.do("unlock with the old password", chromedp.Click(chromedp.ID("vault-unlock")),
		chromedp.SendKeys(chromedp.ID("unlock-password"), oldPW), chromedp.Click(chromedp.ID("unlock-submit")))
	b.waitJS("the old password refused", 90*time.Second, `document.getElementById('unlock-status').textContent === 'Wrong password.'`, "")
	mustEval[bool](b, `(() => { document.getElementById('unlock-password').value = ''; return true; })()`)
	time.Sleep(1100 * time.Millisecond) // the backoff after one wrong try
	b.waitJS("the unlock button usable", 10*time.Second, `!document.getElementById('unlock-submit').disabled`, "")
	b.do("unlock with the new password", chromedp.SendKeys(chromedp.ID("unlock-password"), newPW), chromedp.Click(chromedp.ID("unlock-submit")))
	b.waitJS("the vault unlocked", 90*time.Second, `!document.getElementById('unlock-dialog').open && document.getElementById('vault-state').dataset.locked === 'false'`,
		`document.getElementById('unlock-status').dataset.kind === 'error' && !/^(Wrong password|Too many)/.test(document.getElementById('unlock-status').textContent) && document.getElementById('unlock-status').textContent`)

	// 5. The backup key resets the password too (typed in lower case,
	// without dashes); the phrase is still listed afterwards.
	const thirdPW = "cobalt-orchard-tundra-2290"
	b.do("press Lock now", chromedp.Click(chromedp.ID("vault-lock")))
	b.waitJS("the vault locked", stepTimeout, `document.getElementById('vault-state').dataset.locked === 'true'`, "")
	b.do("press Unlock", chromedp.Click(chromedp.ID("vault-unlock")))
	b.waitJS("the unlock dialog", stepTimeout, `document.getElementById('unlock-dialog').open`, "")
	b.do("press Forgot password?", chromedp.Click(chromedp.ID("unlock-forgot")))
	b.waitJS("the recovery choices", stepTimeout, `vis('#recover-paths [data-path="backup-key"]')`, "")
	b.do("choose the backup key", chromedp.Click(chromedp.CSS(`#recover-paths [data-path="backup-key"]`)))
	b.do("fill in the key and a new password",
		chromedp.SendKeys(chromedp.ID("recover-secret"), strings.ToLower(strings.ReplaceAll(bkText, "-", ""))),
		chromedp.SendKeys(chromedp.ID("recover-password"), thirdPW),
		chromedp.SendKeys(chromedp.ID("recover-password-confirm"), thirdPW))
	b.do("press Set new password", chromedp.Click(chromedp.ID("recover-submit")))
	b.waitJS("the vault open after the backup-key reset", 90*time.Second,
		`!document.getElementById('recover-dialog').open && document.getElementById('vault-state').dataset.locked === 'false'`,
		`document.getElementById('recover-status').dataset.kind === 'error' && document.getElementById('recover-status').textContent`)
	b.waitJS("both ways still listed", 30*time.Second, `document.querySelector('#ways-list [data-way="Recovery phrase"]')?.dataset.set === 'true' && document.querySelector('#ways-list [data-way="Backup key"]')?.dataset.set === 'true' && document.getElementById('tab-vault').dataset.nudge === 'false'`, "")

	// 6. Remove the backup key: it is listed as not set up, and the
	// "Forgot password?" dialog no longer offers it.
	b.do("press Remove (backup key)", chromedp.Click(chromedp.ID("ways-backupkey-remove")))
	asked := b.confirmStyled("remove the backup key")
	b.waitJS("the backup key removed", 30*time.Second, `document.querySelector('#ways-list [data-way="Backup key"]')?.dataset.set === 'false' && document.querySelector('#ways-list [data-way="Recovery phrase"]')?.dataset.set === 'true'`,
		`document.getElementById('ways-status').dataset.kind === 'error' && document.getElementById('ways-status').textContent`)
	if !strings.Contains(asked, "Remove your backup key?") {
		t.Errorf("confirm dialog: %q", asked)
	}
	b.do("press Lock now", chromedp.Click(chromedp.ID("vault-lock")))
	b.waitJS("the vault locked", stepTimeout, `document.getElementById('vault-state').dataset.locked === 'true'`, "")
	b.do("press Unlock", chromedp.Click(chromedp.ID("vault-unlock")))
	b.do("press Forgot password?", chromedp.Click(chromedp.ID("unlock-forgot")))
	b.waitJS("only the phrase offered", stepTimeout, `vis('#recover-paths [data-path="phrase"]') && !document.querySelector('#recover-paths [data-path="backup-key"]')`, "")

	// 7. A password change with "Sign out all devices" leaves only the
	// new password: the phrase is no longer a way back in.
	const fourthPW = "saffron-glacier-meadow-7731"
	b.open("/") // a fresh page: no dialog left open by the steps above
	b.waitJS("the locked workspace", 60*time.Second, `vis('#tab-vault') && document.getElementById('vault-state').dataset.locked === 'true'`, "")
	mustEval[bool](b, `(() => { if (!document.getElementById('unlock-dialog').open) document.getElementById('vault-unlock').click(); return true; })()`)
	b.waitJS("the unlock dialog", stepTimeout, `document.getElementById('unlock-dialog').open && vis('#unlock-password')`, "")
	time.Sleep(300 * time.Millisecond) // let the dialog's open hooks settle
	// Set, not typed: the dialog's hooks may move the focus while it opens.
	mustEval[bool](b, `(() => { document.getElementById('unlock-password').value = '`+thirdPW+`'; return true; })()`)
	b.do("unlock with the third password", chromedp.Click(chromedp.ID("unlock-submit")))
	b.waitJS("the vault unlocked", 90*time.Second, `!document.getElementById('unlock-dialog').open && document.getElementById('vault-state').dataset.locked === 'false'`,
		`document.getElementById('unlock-status').dataset.kind === 'error' && !/^(Wrong password|Too many)/.test(document.getElementById('unlock-status').textContent) && document.getElementById('unlock-status').textContent`)
	b.do("open Vault & keys", chromedp.Click(chromedp.ID("tab-vault")))
	b.do("change the password, signing out all devices",
		chromedp.SendKeys(chromedp.ID("pw-current"), thirdPW),
		chromedp.SendKeys(chromedp.ID("pw-new"), fourthPW),
		chromedp.SendKeys(chromedp.ID("pw-new-confirm"), fourthPW),
		chromedp.Click(chromedp.ID("pw-signout-all")),
		chromedp.Click(chromedp.ID("password-submit")))
	b.waitJS("the password changed and the phrase gone", 90*time.Second,
		`document.getElementById('password-status').dataset.kind === 'ok' && document.querySelector('#ways-list [data-way="Recovery phrase"]')?.dataset.set === 'false' && document.getElementById('tab-vault').dataset.nudge === 'true'`,
		`document.getElementById('password-status').dataset.kind === 'error' && document.getElementById('password-status').textContent`)
	b.checkConsoleAllowing(allowedConsole)
}

// jsonString returns words as a JavaScript array literal.
func jsonString(words []string) string {
	return `['` + strings.Join(words, `','`) + `']`
}
