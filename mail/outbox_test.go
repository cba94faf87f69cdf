package mail_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	ocmail "github.com/ocmt/ocmt/mail"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/xtest"
)

// dbPath is where each test's database lives (tests here run one at a time).
var dbPath = map[*store.Store]string{}

// openStore opens a fresh database in a temp dir.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), store.FileName)
	st, err := store.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	dbPath[st] = path
	t.Cleanup(func() { st.Close() })
	return st
}

// runOutbox starts an outbox over st and m with short backoffs; it stops
// when the test ends (or when the returned stop is called).
func runOutbox(t *testing.T, st *store.Store, m ocmail.Mailer) (*ocmail.Outbox, func()) {
	t.Helper()
	o := ocmail.NewOutbox(ocmail.OutboxOptions{Store: st, Mailer: m, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return o, stop
}

// smtpMailer is the SMTP mailer for srv, trusting its certificate.
func smtpMailer(t *testing.T, host string, port int, caFile, user, password string) *ocmail.SMTP {
	t.Helper()
	pool, err := ocmail.LoadCAFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return &ocmail.SMTP{Host: host, Port: port, TLS: ocmail.TLSStartTLS, Username: user, Password: password,
		From: "ocmt <ocmt@example.org>", RootCAs: pool, Timeout: 5 * time.Second}
}

// row returns the outbox row id (as the admin sees it: no body).
func row(t *testing.T, st *store.Store, id string) store.OutboxMail {
	t.Helper()
	rows, err := st.OutboxList(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no outbox row %s", id)
	return store.OutboxMail{}
}

// rawBody returns the body and link columns of row id, read straight from
// the database file.
func rawBody(t *testing.T, st *store.Store, id string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+dbPath[st]+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var body, link string
	if err := db.QueryRow(`SELECT body, link FROM mail_outbox WHERE id = ?`, id).Scan(&body, &link); err != nil {
		t.Fatal(err)
	}
	return body + link
}

// metric returns the value of the metric name (with label reason, if not
// "") that o collects.
func metric(t *testing.T, o *ocmail.Outbox, name, reason string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(o)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if reason != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != reason) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s %s", name, reason)
	return 0
}

const signinBody = "Open this link to sign in to ocmt (valid for 15 minutes, single use):\n\nhttps://ocmt.example/auth/verify?token=tok-abc_123-tok-abc_123-tok-abc_123-tok-abc\n\nIf you did not ask for it, ignore this mail.\n"

func signinMsg(to string) ocmail.Message {
	return ocmail.Message{To: to, Subject: "Sign-in link", Body: signinBody,
		Link: "https://ocmt.example/auth/verify?token=tok-abc_123-tok-abc_123-tok-abc_123-tok-abc"}
}

// TestOutboxDeliversOverSTARTTLS: a queued sign-in mail reaches a real SMTP
// server over STARTTLS with AUTH PLAIN, verified with --smtp-ca-file, and
// carries Message-ID, Date, MIME-Version, Content-Transfer-Encoding
// (quoted-printable), Auto-Submitted and From; its body decodes to the
// link text. Once sent, the row keeps no body.
func TestOutboxDeliversOverSTARTTLS(t *testing.T) {
	srv := xtest.NewSMTPServer(t)
	st := openStore(t)
	o, _ := runOutbox(t, st, smtpMailer(t, srv.Host, srv.Port, srv.CAFile, srv.User, srv.Password))
	id, err := o.Enqueue(context.Background(), ocmail.KindSignIn, signinMsg("bob@example.org"), time.Now().Add(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if len(srv.Mails()) == 0 {
			return errors.New("no mail delivered")
		}
		return nil
	})
	got := srv.Mails()[0]
	if got.Auth != srv.User || got.From != "ocmt@example.org" || len(got.To) != 1 || got.To[0] != "bob@example.org" {
		t.Fatalf("envelope: auth %q from %q to %v", got.Auth, got.From, got.To)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(got.Data)))
	if err != nil {
		t.Fatalf("parse mail: %v\n%s", err, got.Data)
	}
	h := msg.Header
	wantID := "<" + id + "@example.org>"
	for k, want := range map[string]string{"Message-Id": wantID, "Mime-Version": "1.0", "Content-Transfer-Encoding": "quoted-printable",
		"Auto-Submitted": "auto-generated", "Subject": "Sign-in link", "To": "<bob@example.org>"} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if from, err := h.AddressList("From"); err != nil || from[0].Address != "ocmt@example.org" || from[0].Name != "ocmt" {
		t.Errorf("From %q: %v", h.Get("From"), err)
	}
	if d, err := h.Date(); err != nil || time.Since(d) > time.Hour || time.Until(d) > time.Hour {
		t.Errorf("Date %q: %v", h.Get("Date"), err)
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "text/plain; charset=UTF-8") {
		t.Errorf("Content-Type %q", h.Get("Content-Type"))
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	if b := strings.ReplaceAll(string(body), "\r\n", "\n"); b != signinBody {
		t.Errorf("decoded body:\n%q\nwant\n%q", b, signinBody)
	}
	xtest.Eventually(t, 5*time.Second, func() error {
		if r := row(t, st, id); r.State != store.MailSent || r.Attempts != 1 {
			return fmt.Errorf("row %+v", r)
		}
		return nil
	})
	if b := rawBody(t, st, id); b != "" {
		t.Errorf("a sent mail's body is still stored: %q", b)
	}
	if v := metric(t, o, "ocmt_mail_sent_total", ""); v != 1 {
		t.Errorf("sent counter %v", v)
	}
}

// TestOutboxRetriesUntilServerUp: with the mail server down the mail stays
// queued and is tried again and again (with the error recorded); once the
// server is up it is delivered, once.
func TestOutboxRetriesUntilServerUp(t *testing.T) {
	srv := xtest.NewSMTPServer(t)
	srv.Stop()
	st := openStore(t)
	o, _ := runOutbox(t, st, smtpMailer(t, srv.Host, srv.Port, srv.CAFile, srv.User, srv.Password))
	id, err := o.Enqueue(context.Background(), ocmail.KindShare, ocmail.Message{To: "carol@example.org", Subject: "a shared b", Body: "hello\n"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if r := row(t, st, id); r.State != store.MailQueued || r.Attempts < 3 || !strings.Contains(r.LastError, "connection refused") {
			return fmt.Errorf("row %+v", r)
		}
		return nil
	})
	if v := metric(t, o, "ocmt_mail_queued", ""); v != 1 {
		t.Errorf("ocmt_mail_queued %v, want 1", v)
	}
	srv.Start()
	xtest.Eventually(t, 10*time.Second, func() error {
		if r := row(t, st, id); r.State != store.MailSent {
			return fmt.Errorf("row %+v", r)
		}
		return nil
	})
	if n := len(srv.Mails()); n != 1 {
		t.Fatalf("%d mails delivered, want 1", n)
	}
}

// TestOutboxStopsOn550: a 5xx reply to RCPT fails the mail for good at
// once: one attempt, state failed with the server's reply, no body kept,
// counted as permanent; it is not tried again.
func TestOutboxStopsOn550(t *testing.T) {
	srv := xtest.NewSMTPServer(t)
	srv.Reject("gone@example.org")
	st := openStore(t)
	o, _ := runOutbox(t, st, smtpMailer(t, srv.Host, srv.Port, srv.CAFile, srv.User, srv.Password))
	id, err := o.Enqueue(context.Background(), ocmail.KindSignIn, signinMsg("gone@example.org"), time.Now().Add(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var r store.OutboxMail
	xtest.Eventually(t, 10*time.Second, func() error {
		if r = row(t, st, id); r.State != store.MailFailed {
			return fmt.Errorf("row %+v", r)
		}
		return nil
	})
	if r.Attempts != 1 || !strings.Contains(r.LastError, "550") {
		t.Fatalf("failed row %+v", r)
	}
	if strings.Contains(r.LastError, "token=") || rawBody(t, st, id) != "" {
		t.Fatal("the failed row holds the link")
	}
	// A later mail goes through the same worker; by then a retry of the
	// refused one would have happened (backoffs here are ≤ 200 ms).
	id2, err := o.Enqueue(context.Background(), ocmail.KindShare, ocmail.Message{To: "ok@example.org", Subject: "s", Body: "b\n"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if r := row(t, st, id2); r.State != store.MailSent {
			return fmt.Errorf("row %+v", r)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // longer than MaxBackoff: a retry would be due
	if n := srv.MailFroms(); n != 2 {
		t.Fatalf("server saw %d attempts, want 2 (the refused mail once, the other once)", n)
	}
	if r := row(t, st, id); r.Attempts != 1 || r.State != store.MailFailed {
		t.Fatalf("refused mail tried again: %+v", r)
	}
	if v := metric(t, o, "ocmt_mail_failed_total", "permanent"); v != 1 {
		t.Errorf("failed{permanent} = %v", v)
	}
}

// TestOutboxSilentServer: a server that accepts the connection and never
// greets does not hold the worker: the attempt times out (the SMTP
// mailer's Timeout) and is retried on a new connection.
func TestOutboxSilentServer(t *testing.T) {
	silent := xtest.NewSilentServer(t)
	st := openStore(t)
	m := &ocmail.SMTP{Host: silent.Host, Port: silent.Port, TLS: ocmail.TLSStartTLS, From: "ocmt <ocmt@example.org>", Timeout: 200 * time.Millisecond}
	o, _ := runOutbox(t, st, m)
	id, err := o.Enqueue(context.Background(), ocmail.KindShare, ocmail.Message{To: "d@example.org", Subject: "s", Body: "b\n"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		acc, closed := silent.Counts()
		r := row(t, st, id)
		if acc < 2 || closed < 1 || r.Attempts < 1 || r.State != store.MailQueued || !strings.Contains(r.LastError, "timeout") {
			return fmt.Errorf("accepted %d closed %d row %+v", acc, closed, r)
		}
		return nil
	})
}

// TestOutboxWrongCA: a server whose certificate the configured CA did not
// sign is refused before anything is sent (no MAIL FROM, no fallback to
// clear text); the mail stays queued for a retry.
func TestOutboxWrongCA(t *testing.T) {
	srv := xtest.NewSMTPServer(t)
	other := xtest.NewSMTPServer(t) // its certificate is another one
	st := openStore(t)
	o, _ := runOutbox(t, st, smtpMailer(t, srv.Host, srv.Port, other.CAFile, srv.User, srv.Password))
	id, err := o.Enqueue(context.Background(), ocmail.KindSignIn, signinMsg("bob@example.org"), time.Now().Add(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if r := row(t, st, id); r.Attempts < 2 || r.State != store.MailQueued || !strings.Contains(r.LastError, "certificate") {
			return fmt.Errorf("row %+v", r)
		}
		return nil
	})
	if n := srv.MailFroms(); n != 0 || len(srv.Mails()) != 0 {
		t.Fatalf("the server got %d MAIL FROM and %d mails despite an untrusted certificate", n, len(srv.Mails()))
	}
}

// flaky fails every send until ok is set.
type flaky struct {
	ok    atomic.Bool
	tries atomic.Int32
	sent  atomic.Int32
}

func (f *flaky) Send(ctx context.Context, m ocmail.Message) error {
	f.tries.Add(1)
	if !f.ok.Load() {
		return errors.New("dial tcp: connection refused")
	}
	f.sent.Add(1)
	return nil
}

// TestOutboxExpiredLinkNeverSent: a sign-in mail still queued when its link
// expires is given up as expired (body deleted), never sent late.
func TestOutboxExpiredLinkNeverSent(t *testing.T) {
	st := openStore(t)
	f := &flaky{}
	o, _ := runOutbox(t, st, f)
	id, err := o.Enqueue(context.Background(), ocmail.KindSignIn, signinMsg("bob@example.org"), time.Now().Add(400*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	xtest.Eventually(t, 10*time.Second, func() error {
		if r := row(t, st, id); r.State != store.MailFailed || !strings.Contains(r.LastError, "expired") {
			return fmt.Errorf("row %+v", r)
		}
		return nil
	})
	f.ok.Store(true)
	if f.sent.Load() != 0 || f.tries.Load() < 1 {
		t.Fatalf("tries %d sent %d", f.tries.Load(), f.sent.Load())
	}
	if rawBody(t, st, id) != "" {
		t.Fatal("an expired mail's body is still stored")
	}
	if v := metric(t, o, "ocmt_mail_failed_total", "expired"); v != 1 {
		t.Errorf("failed{expired} = %v", v)
	}
}

// TestOutboxSurvivesRestart: mail queued by a process that stopped, and
// mail claimed by one that died mid-send, are sent by the next one.
func TestOutboxSurvivesRestart(t *testing.T) {
	st := openStore(t)
	f := &flaky{}
	o1 := ocmail.NewOutbox(ocmail.OutboxOptions{Store: st, Mailer: f})
	queued, err := o1.Enqueue(context.Background(), ocmail.KindShare, ocmail.Message{To: "a@example.org", Subject: "s", Body: "b\n"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// A second mail claimed as if a worker were sending it when the
	// process died.
	claimed, err := o1.Enqueue(context.Background(), ocmail.KindShare, ocmail.Message{To: "b@example.org", Subject: "s", Body: "b\n"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimDueMail(context.Background(), time.Now(), 1); err != nil { // the older one: queued
		t.Fatal(err)
	}
	f.ok.Store(true)
	o2, _ := runOutbox(t, st, f) // "after the restart"
	xtest.Eventually(t, 10*time.Second, func() error {
		for _, id := range []string{queued, claimed} {
			if r := row(t, st, id); r.State != store.MailSent {
				return fmt.Errorf("row %+v", r)
			}
		}
		return nil
	})
	if v := metric(t, o2, "ocmt_mail_sent_total", ""); v != 2 {
		t.Errorf("sent %v", v)
	}
}

// TestOutboxMetrics: the collector exposes the three metrics, without
// recipient labels; ocmt_mail_queued is read from the table.
func TestOutboxMetrics(t *testing.T) {
	st := openStore(t)
	o := ocmail.NewOutbox(ocmail.OutboxOptions{Store: st, Mailer: &flaky{}})
	for i := 0; i < 3; i++ {
		if _, err := o.Enqueue(context.Background(), ocmail.KindShare, ocmail.Message{To: "x@example.org", Subject: "s", Body: "b"}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP ocmt_mail_failed_total Mails given up since start, by reason: permanent (a 5xx reply), expired (the link expired or the retries ran out).
# TYPE ocmt_mail_failed_total counter
ocmt_mail_failed_total{reason="expired"} 0
ocmt_mail_failed_total{reason="permanent"} 0
# HELP ocmt_mail_queued Mails waiting in the outbox to be sent.
# TYPE ocmt_mail_queued gauge
ocmt_mail_queued 3
# HELP ocmt_mail_sent_total Mails accepted by the mail server (or printed by the console mailer) since start.
# TYPE ocmt_mail_sent_total counter
ocmt_mail_sent_total 0
`
	if err := testutil.CollectAndCompare(o, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if probs, err := testutil.CollectAndLint(o); err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", probs, err)
	}
}

// TestSMTPImplicitTLSWithAuth: --smtp-tls=tls speaks TLS from the first
// byte and authenticates (AUTH PLAIN is offered only because the
// connection is encrypted).
func TestSMTPImplicitTLSWithAuth(t *testing.T) {
	srv := xtest.NewSMTPServerTLS(t)
	m := smtpMailer(t, srv.Host, srv.Port, srv.CAFile, srv.User, srv.Password)
	m.TLS = ocmail.TLSImplicit
	if err := m.Send(context.Background(), signinMsg("bob@example.org")); err != nil {
		t.Fatal(err)
	}
	if got := srv.Mails(); len(got) != 1 || got[0].Auth != srv.User {
		t.Fatalf("mails %+v", got)
	}
}
