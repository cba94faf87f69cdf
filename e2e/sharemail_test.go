package e2e

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/mail"
	"github.com/ocmt/ocmt/xtest"
)

// failingMailer fails share notices while fail is set and passes
// everything else to the console mailer.
type failingMailer struct {
	next     mail.Mailer
	fail     atomic.Bool
	attempts atomic.Int32 // notices refused
}

func (m *failingMailer) Send(ctx context.Context, msg mail.Message) error {
	if msg.ShowBody && m.fail.Load() {
		m.attempts.Add(1)
		return errors.New("mail server refused the message")
	}
	return m.next.Send(ctx, msg)
}

// TestShareMails: sharing through the real roles mails the recipient once,
// in words, with a link to the Sharing tab and without the token or any
// credential; more shares within 10 minutes are held back; a revocation
// gets its own mail; a recipient who turned the mails off gets none; a
// failing mail server does not fail the share. The received grants are
// "new" until the recipient marks them seen, which only they can do.
func TestShareMails(t *testing.T) {
	fm := &failingMailer{}
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} }),
		xtest.WithMailer(func(next mail.Mailer) mail.Mailer { fm.next = next; return fm }))
	ctx := context.Background()
	alice, _ := env.Admin("alice@example.org")
	bob, _ := env.Invite(alice, "bob@example.org")
	carol, _ := env.Invite(alice, "carol@example.org")
	av := readyVault(t, env, alice, "alice's long password")
	readyVault(t, env, bob, "bob's long password")
	cv := readyVault(t, env, carol, "carol's long password")
	const secret = "Bearer alice-mail-secret-7781"
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": "http://127.0.0.1:9", "authHeader": "Authorization", "authValue": secret}, nil)
	cv.json("PUT", "/integrations/notes", map[string]string{"type": "http", "baseUrl": "http://127.0.0.1:9", "authHeader": "Authorization", "authValue": "Bearer c"}, nil)
	share := func(v vaultAPI, to, resource string) (jti, token string) {
		t.Helper()
		var out struct {
			JTI   string `json:"jti"`
			Token string `json:"token"`
		}
		v.json("POST", "/capabilities", map[string]any{"subjectEmail": to, "resource": resource, "scope": []string{"read", "list"}, "expiresIn": 7 * 24 * 3600, "maxCalls": 50}, &out)
		return out.JTI, out.Token
	}
	waitMails := func(email string, n int) []xtest.Mail {
		t.Helper()
		var got []xtest.Mail
		xtest.Eventually(t, 10*time.Second, func() error {
			if got = env.Mails(email); len(got) < n {
				return errString("mails to " + email + " so far: " + mustJSONString(got))
			}
			return nil
		})
		return got
	}

	jti1, token := share(av, "bob@example.org", "calendar")
	mails := waitMails("bob@example.org", 1)
	m := mails[0]
	want := time.Now().Add(7 * 24 * time.Hour).UTC().Format("2 January 2006")
	if m.Subject != "alice@example.org shared their calendar with you" {
		t.Fatalf("subject %q", m.Subject)
	}
	for _, w := range []string{"You may: see and list it", "Until: " + want, "Calls: up to 50", env.URL + "/#sharing"} {
		if !strings.Contains(m.Body, w) {
			t.Errorf("the mail lacks %q:\n%s", w, m.Body)
		}
	}
	all := env.Out.String()
	for _, bad := range []string{"ocap1.", token, jti1, "alice-mail-secret-7781"} {
		if strings.Contains(m.Subject+m.Body, bad) || strings.Contains(all, bad) {
			t.Errorf("the mail output holds %q", bad)
		}
	}

	// Two more shares within 10 minutes: held back. The revocation is news
	// of its own and goes out; the mails go in order, so once it is there
	// the held-back ones would have been too.
	share(av, "bob@example.org", "calendar")
	share(av, "bob@example.org", "calendar")
	if err := alice.JSON(ctx, "DELETE", "/api/v1/me/agent/vault/capabilities/"+jti1, nil, nil); err != nil {
		t.Fatal(err)
	}
	mails = waitMails("bob@example.org", 2)
	// Bob still has two active shares of the calendar: the mail says a
	// share stopped, not that the sharing did.
	if len(mails) != 2 || mails[1].Subject != "alice@example.org stopped a share of their calendar with you" {
		t.Fatalf("mails to Bob after 3 shares and a revocation: %+v", mails)
	}

	// Received grants are new until Bob has seen them; only Bob's call
	// marks his. The revoked one is no news: 2 of the 3.
	newCount := func(c interface {
		JSON(context.Context, string, string, any, any) error
	}) int {
		t.Helper()
		var g struct {
			Received []map[string]any `json:"received"`
			Issued   []map[string]any `json:"issued"`
		}
		if err := c.JSON(ctx, "GET", "/api/v1/me/grants", nil, &g); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, x := range g.Received {
			if x["new"] == true {
				n++
			}
		}
		for _, x := range g.Issued {
			if _, ok := x["new"]; ok {
				t.Fatalf("an issued grant carries new: %v", x)
			}
		}
		return n
	}
	if n := newCount(bob); n != 2 {
		t.Fatalf("Bob's new grants: %d, want 2 (the revoked one is not new)", n)
	}
	for _, c := range []interface {
		JSON(context.Context, string, string, any, any) error
	}{alice, carol} {
		if err := c.JSON(ctx, "POST", "/api/v1/me/grants/seen", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := newCount(bob); n != 2 {
		t.Fatalf("others marking theirs seen changed Bob's: %d new", n)
	}
	if err := bob.JSON(ctx, "POST", "/api/v1/me/grants/seen", nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := newCount(bob); n != 0 {
		t.Fatalf("after Bob saw them: %d new", n)
	}

	// Bob turns the mails off: Carol's share sends him nothing. Alice's
	// share with Carol (mails on) goes after it, so once it arrived Bob's
	// would have too.
	if err := bob.JSON(ctx, "PUT", "/api/v1/me/settings", map[string]bool{"shareMail": false}, nil); err != nil {
		t.Fatal(err)
	}
	share(cv, "bob@example.org", "notes")
	share(av, "carol@example.org", "calendar")
	if got := waitMails("carol@example.org", 1); got[0].Subject != "alice@example.org shared their calendar with you" {
		t.Fatalf("Carol's mail: %+v", got)
	}
	if got := env.Mails("bob@example.org"); len(got) != 2 {
		t.Fatalf("Bob turned share mails off and still got: %+v", got[2:])
	}

	// A failing mail server does not fail the share; the mail stays queued
	// in the outbox for a retry (the admin sees it), and the failure is
	// logged as metadata.
	if err := bob.JSON(ctx, "PUT", "/api/v1/me/settings", map[string]bool{"shareMail": true}, nil); err != nil {
		t.Fatal(err)
	}
	fm.fail.Store(true)
	if jti, _ := share(cv, "bob@example.org", "notes"); jti == "" {
		t.Fatal("no share while the mail server fails")
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if fm.attempts.Load() < 1 || !strings.Contains(env.Log.String(), "mail not sent; will retry") {
			return errString("the failed mail was not tried or not logged")
		}
		return nil
	})
	var outbox api.AdminMail
	if err := alice.JSON(ctx, "GET", "/api/v1/admin/mail", nil, &outbox); err != nil {
		t.Fatal(err)
	}
	if outbox.Counts.Queued != 1 || outbox.Mail[0].To != "bob@example.org" || outbox.Mail[0].State != "queued" || outbox.Mail[0].LastError == "" {
		t.Fatalf("the failed share mail in the outbox: %+v", outbox)
	}
	for _, bad := range []string{"shared their notes", "carol@example.org shared", "#sharing", "ocap1."} {
		if strings.Contains(env.Log.String(), bad) {
			t.Errorf("the log holds mail text %q", bad)
		}
	}
}
