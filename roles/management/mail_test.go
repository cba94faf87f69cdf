package management_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/xtest"
)

// adminMail returns GET /api/v1/admin/mail and its raw body.
func adminMail(t *testing.T, admin *api.Client) (api.AdminMail, string) {
	t.Helper()
	r, err := admin.Do(context.Background(), "GET", "/api/v1/admin/mail", nil)
	if err != nil || r.Status != 200 {
		t.Fatalf("admin mail: %v %v", r, err)
	}
	var out api.AdminMail
	if err := admin.JSON(context.Background(), "GET", "/api/v1/admin/mail", nil, &out); err != nil {
		t.Fatal(err)
	}
	return out, string(r.Body)
}

// mailTo returns the newest outbox row to addr.
func mailTo(m api.AdminMail, addr string) (api.AdminMailItem, bool) {
	for _, it := range m.Mail {
		if it.To == addr {
			return it, true
		}
	}
	return api.AdminMailItem{}, false
}

var tokenRE = regexp.MustCompile(`/auth/verify\?token=([A-Za-z0-9_-]{43})`)

// decodedBody returns a received mail's text (quoted-printable decoded).
func decodedBody(t *testing.T, data []byte) string {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// TestSignInSameAnswerWhenMailDown: with the SMTP server down, a sign-in
// request for a known address and one for an unknown address get the same
// 202 with the same body (no account probe). The known one's mail waits in
// the outbox (the admin sees it queued, retried, with the error), survives
// a restart of ocmt, and is delivered once the server is up; its link
// signs the user in.
func TestSignInSameAnswerWhenMailDown(t *testing.T) {
	srv := xtest.NewSMTPServer(t)
	srv.Stop()
	env := xtest.NewEnv(t, xtest.WithConfig(srv.Configure), xtest.WithMailBackoff(50*time.Millisecond))
	ctx := context.Background()
	admin, _ := env.Admin("admin@example.org")
	anon := env.Client()
	var bodies []string
	for _, email := range []string{"admin@example.org", "nobody@example.org"} {
		start := time.Now()
		r, err := anon.Do(ctx, "POST", "/api/v1/auth/magic-link", api.MagicLinkRequest{Email: email})
		if err != nil || r.Status != 202 {
			t.Fatalf("magic-link %s with mail down: %v %v", email, r, err)
		}
		t.Logf("magic-link %s answered 202 in %v with the mail server down", email, time.Since(start))
		bodies = append(bodies, string(r.Body))
	}
	if bodies[0] != bodies[1] {
		t.Fatalf("known and unknown addresses get different bodies:\n%s\n%s", bodies[0], bodies[1])
	}
	var it api.AdminMailItem
	xtest.Eventually(t, 10*time.Second, func() error {
		m, raw := adminMail(t, admin)
		var ok bool
		if it, ok = mailTo(m, "admin@example.org"); !ok || it.State != "queued" || it.Attempts < 2 || !strings.Contains(it.LastError, "refused") || m.Counts.Queued != 1 {
			return fmt.Errorf("admin mail: %s", raw)
		}
		if strings.Contains(raw, "token=") || strings.Contains(raw, "nobody@example.org") {
			return errors.New("the admin's view holds a link or an unknown address: " + raw)
		}
		return nil
	})
	env.Restart()
	srv.Start()
	var tok string
	xtest.Eventually(t, 10*time.Second, func() error {
		for _, m := range srv.Mails() {
			if m.To[0] == "admin@example.org" {
				body := decodedBody(t, m.Data)
				if !strings.Contains(body, "valid for 15 minutes") {
					return errors.New("no duration in words: " + body)
				}
				if mm := tokenRE.FindStringSubmatch(body); mm != nil {
					tok = mm[1]
					return nil
				}
			}
		}
		return errors.New("not delivered yet")
	})
	for _, m := range srv.Mails() {
		if m.To[0] == "nobody@example.org" {
			t.Fatal("an unknown address got mail")
		}
	}
	if u, err := env.Client().Verify(ctx, tok, ""); err != nil || u.Email != "admin@example.org" {
		t.Fatalf("the delivered link: %v %v", u, err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		m, raw := adminMail(t, admin)
		if it, _ := mailTo(m, "admin@example.org"); it.State != "sent" || m.Counts.Queued != 0 {
			return errors.New(raw)
		}
		return nil
	})
}

// TestRefusedMailVisibleToAdmin: a recipient the server refuses with 550
// fails at once (one attempt, no retry) and the admin sees it failed with
// the server's reply; the invitation request itself answered 202.
func TestRefusedMailVisibleToAdmin(t *testing.T) {
	srv := xtest.NewSMTPServer(t)
	srv.Reject("gone@example.org")
	env := xtest.NewEnv(t, xtest.WithConfig(srv.Configure), xtest.WithMailBackoff(50*time.Millisecond))
	ctx := context.Background()
	admin, _ := env.Admin("admin@example.org")
	r, err := admin.Do(ctx, "POST", "/api/v1/admin/users", api.InviteRequest{Email: "gone@example.org"})
	if err != nil || r.Status != 202 {
		t.Fatalf("invite: %v %v", r, err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		m, raw := adminMail(t, admin)
		it, ok := mailTo(m, "gone@example.org")
		if !ok || it.State != "failed" || m.Counts.Failed != 1 {
			return errors.New(raw)
		}
		if it.Attempts != 1 || !strings.Contains(it.LastError, "550") || it.Subject != "Invitation link" || it.Kind != "invite" {
			t.Fatalf("failed mail as the admin sees it: %s", raw)
		}
		if strings.Contains(raw, "token=") {
			t.Fatalf("the admin's view holds the link: %s", raw)
		}
		return nil
	})
	// Delivery still works for others, and the refused one was not tried
	// again meanwhile (a retry would be due after 50–200 ms).
	r, err = admin.Do(ctx, "POST", "/api/v1/admin/users", api.InviteRequest{Email: "fine@example.org"})
	if err != nil || r.Status != 202 {
		t.Fatalf("invite: %v %v", r, err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if len(srv.Mails()) != 1 {
			return errors.New("not delivered")
		}
		return nil
	})
	if m, raw := adminMail(t, admin); func() bool { it, _ := mailTo(m, "gone@example.org"); return it.Attempts != 1 }() {
		t.Fatalf("the refused mail was tried again: %s", raw)
	}
}

// TestSignInNotHeldBySilentMailServer: a mail server that accepts the
// connection and never greets does not hold the sign-in request: it
// answers 202 while the worker's connection is still waiting for the
// greeting (a request that waited for the mail would only return after
// its connection gave up and closed).
func TestSignInNotHeldBySilentMailServer(t *testing.T) {
	silent := xtest.NewSilentServer(t)
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) {
		c.SMTPHost, c.SMTPPort, c.SMTPTLS = silent.Host, silent.Port, "starttls"
	}))
	ctx := context.Background()
	env.Admin("admin@example.org")
	start := time.Now()
	r, err := env.Client().Do(ctx, "POST", "/api/v1/auth/magic-link", api.MagicLinkRequest{Email: "admin@example.org"})
	took := time.Since(start)
	if err != nil || r.Status != 202 {
		t.Fatalf("magic-link with a silent mail server: %v %v", r, err)
	}
	_, closedAt202 := silent.Counts()
	t.Logf("magic-link answered 202 in %v with a silent mail server", took)
	xtest.Eventually(t, 10*time.Second, func() error {
		if acc, _ := silent.Counts(); acc < 1 {
			return errors.New("the worker has not connected")
		}
		return nil
	})
	if closedAt202 != 0 {
		t.Fatalf("the request returned only after %d mail connection(s) gave up", closedAt202)
	}
}

// TestLinkDurationInWords: the sign-in page and the mail say the
// configured link lifetime in words, never Go's "1h30m0s".
func TestLinkDurationInWords(t *testing.T) {
	srv := xtest.NewSMTPServer(t)
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { srv.Configure(c); c.MagicLinkTTL = 90 * time.Minute }))
	ctx := context.Background()
	env.Admin("admin@example.org")
	anon := env.Client()
	r, err := anon.Do(ctx, "GET", "/signin", nil)
	if err != nil || !strings.Contains(string(r.Body), "expires after 1 hour 30 minutes.") {
		t.Fatalf("sign-in page: %v %v", err, r)
	}
	if r, err := anon.Do(ctx, "POST", "/api/v1/auth/magic-link", api.MagicLinkRequest{Email: "admin@example.org"}); err != nil || r.Status != 202 {
		t.Fatalf("magic-link: %v %v", r, err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if len(srv.Mails()) == 0 {
			return errors.New("not delivered")
		}
		return nil
	})
	if body := decodedBody(t, srv.Mails()[0].Data); !strings.Contains(body, "(valid for 1 hour 30 minutes, single use)") || strings.Contains(body, "1h30m") {
		t.Fatalf("mail body:\n%s", body)
	}
}

// TestSMTPTLSInsecureWarns: --smtp-tls-insecure delivers to a server whose
// certificate nobody vouches for, and says so loudly at start.
func TestSMTPTLSInsecureWarns(t *testing.T) {
	srv := xtest.NewSMTPServer(t)
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { srv.Configure(c); c.SMTPCAFile = ""; c.SMTPTLSInsecure = true }))
	if !strings.Contains(env.Log.String(), "SMTP SERVER CERTIFICATE IS NOT VERIFIED") {
		t.Fatalf("no warning at start:\n%s", env.Log.String())
	}
	admin, _ := env.Admin("admin@example.org")
	if r, err := admin.Do(context.Background(), "POST", "/api/v1/admin/users", api.InviteRequest{Email: "new@example.org"}); err != nil || r.Status != 202 {
		t.Fatalf("invite: %v %v", r, err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if len(srv.Mails()) == 0 {
			return errors.New("not delivered")
		}
		return nil
	})
}
