package mail

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocmt/ocmt/store"
)

// Kinds of queued mail (store.OutboxMail.Kind).
const (
	KindSignIn = "signin" // a sign-in link; expires with the link
	KindInvite = "invite" // an invitation link; expires with the link
	KindShare  = "share"  // a share notice; no credential
	// KindRecovery tells a user that a recovery of their vault started
	// (issue 10); no credential.
	KindRecovery = "recovery"
)

// Outbox defaults.
const (
	DefaultMinBackoff  = 30 * time.Second // the wait after the first failure
	DefaultMaxBackoff  = time.Hour        // the longest wait between attempts
	DefaultGiveUpAfter = 24 * time.Hour   // a mail still not sent this long after it was queued fails
	// outboxBatch is how many due mails one pass claims.
	outboxBatch = 20
	// outboxPoll is the longest the worker sleeps without looking at the
	// table (a mail queued by another path, a clock moved by a test).
	outboxPoll = time.Minute
)

// Outbox is the persistent mail queue (the store's mail_outbox table) and
// its one worker. Enqueue stores a mail and returns at once; Run sends due
// mail through Mailer one at a time: a mail the server accepted is marked
// sent; a permanent refusal (Permanent: a 5xx reply) marks it failed at
// once; any other error is retried after an exponential backoff with
// jitter (MinBackoff doubling up to MaxBackoff, each wait drawn between
// half and all of it) until GiveUpAfter since it was queued. A sign-in or
// invitation mail whose link expired is never sent: it fails as expired.
// Sent and failed rows lose their body and link at once and are deleted
// after store.MailKeepAfterDone.
//
// Delivery is at least once: a mail being sent when the process died is
// sent again after the restart (with the same Message-ID).
//
// Outbox is a prometheus.Collector: ocmt_mail_sent_total,
// ocmt_mail_failed_total{reason="permanent"|"expired"} (since start) and
// ocmt_mail_queued (read from the table at scrape time).
type Outbox struct {
	st          *store.Store
	mailer      Mailer
	log         *slog.Logger
	now         func() time.Time
	minBackoff  time.Duration
	maxBackoff  time.Duration
	giveUpAfter time.Duration
	sendTimeout time.Duration

	wake chan struct{} // a mail was queued

	sent       prometheus.Counter
	failed     *prometheus.CounterVec
	queuedDesc *prometheus.Desc
	mu         sync.Mutex
	lastQueued float64 // the last gauge value read (served when the database does not answer)
}

// OutboxOptions configure an Outbox. Zero durations take the defaults.
type OutboxOptions struct {
	Store       *store.Store
	Mailer      Mailer
	Log         *slog.Logger
	Now         func() time.Time // nil = time.Now
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
	GiveUpAfter time.Duration
	// SendTimeout bounds one send; 0 = 2 minutes (the SMTP mailer's own
	// dial and command timeouts are shorter).
	SendTimeout time.Duration
}

// NewOutbox makes an Outbox; Run starts its worker.
func NewOutbox(opt OutboxOptions) *Outbox {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opt.MinBackoff, DefaultMinBackoff)
	def(&opt.MaxBackoff, DefaultMaxBackoff)
	def(&opt.GiveUpAfter, DefaultGiveUpAfter)
	def(&opt.SendTimeout, 2*time.Minute)
	if opt.MaxBackoff < opt.MinBackoff {
		opt.MaxBackoff = opt.MinBackoff
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	o := &Outbox{
		st: opt.Store, mailer: opt.Mailer, log: opt.Log, now: opt.Now,
		minBackoff: opt.MinBackoff, maxBackoff: opt.MaxBackoff, giveUpAfter: opt.GiveUpAfter, sendTimeout: opt.SendTimeout,
		wake: make(chan struct{}, 1),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "ocmt_mail_sent_total",
			Help: "Mails accepted by the mail server (or printed by the console mailer) since start."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ocmt_mail_failed_total",
			Help: "Mails given up since start, by reason: permanent (a 5xx reply), expired (the link expired or the retries ran out)."}, []string{"reason"}),
		queuedDesc: prometheus.NewDesc("ocmt_mail_queued", "Mails waiting in the outbox to be sent.", nil, nil),
	}
	for _, r := range []string{"permanent", "expired"} {
		o.failed.WithLabelValues(r) // present (at 0) from the first scrape
	}
	return o
}

// Enqueue stores m, of kind (KindSignIn, KindInvite, KindShare), to be
// sent by the worker; expires, if not zero, is when the mail's link stops
// working (the mail is never sent after it). It returns the row's id, and
// does not wait for the mail server.
func (o *Outbox) Enqueue(ctx context.Context, kind string, m Message, expires time.Time) (string, error) {
	row, err := o.st.EnqueueMail(ctx, store.OutboxMail{To: m.To, Subject: m.Subject, Body: m.Body, Link: m.Link, Kind: kind, ExpiresAt: expires})
	if err != nil {
		return "", err
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return row.ID, nil
}

// Run sends queued mail until ctx ends. It first releases the claims a
// previous process left (those mails are sent again).
func (o *Outbox) Run(ctx context.Context) {
	if n, err := o.st.ReleaseMailClaims(ctx, o.now()); err != nil {
		o.log.Error("mail outbox: release claims", "err", err)
	} else if n > 0 {
		o.log.Warn("mail outbox: mail interrupted by a restart will be sent again", "count", n)
	}
	lastSweep := time.Time{}
	for {
		if now := o.now(); now.Sub(lastSweep) > time.Hour {
			if _, err := o.st.DeleteOldMail(ctx, now.Add(-store.MailKeepAfterDone)); err != nil && ctx.Err() == nil {
				o.log.Error("mail outbox: delete old rows", "err", err)
			}
			lastSweep = now
		}
		for ctx.Err() == nil && o.pass(ctx) {
		}
		wait := outboxPoll
		if t, ok, err := o.st.NextMailDue(ctx); err == nil && ok {
			wait = min(max(t.Sub(o.now()), 0), outboxPoll)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-o.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// pass claims a batch of due mail and settles each; it reports whether it
// found any.
func (o *Outbox) pass(ctx context.Context) bool {
	due, err := o.st.ClaimDueMail(ctx, o.now(), outboxBatch)
	if err != nil {
		if ctx.Err() == nil {
			o.log.Error("mail outbox: claim", "err", err)
		}
		return false
	}
	for _, m := range due {
		o.send(ctx, m)
	}
	return len(due) > 0
}

// send tries m once and records the outcome. Settling uses a context that
// outlives ctx, so a shutdown mid-send leaves a settled row, not a claim.
func (o *Outbox) send(ctx context.Context, m store.OutboxMail) {
	settle := context.WithoutCancel(ctx)
	now := o.now()
	if !m.ExpiresAt.IsZero() && !now.Before(m.ExpiresAt) {
		o.fail(settle, m, m.Attempts, "expired", "the link expired before the mail could be sent")
		return
	}
	sctx, cancel := context.WithTimeout(ctx, o.sendTimeout)
	err := o.mailer.Send(sctx, Message{ID: m.ID, To: m.To, Subject: m.Subject, Body: m.Body, Link: m.Link, ShowBody: m.Kind == KindShare || m.Kind == KindRecovery})
	cancel()
	attempts := m.Attempts + 1
	now = o.now()
	switch {
	case err == nil:
		if err := o.st.MailSent(settle, m.ID, now, attempts); err != nil {
			o.log.Error("mail outbox: record sent", "mail", m.ID, "err", err)
		}
		o.sent.Inc()
		o.log.Info("mail sent", "mail", m.ID, "kind", m.Kind, "attempts", attempts)
	case ctx.Err() != nil:
		// Shutting down (the send was cut off): not the mail's fault, not
		// counted; due again at the next start.
		if err := o.st.MailRetry(settle, m.ID, now, m.Attempts, m.LastError, now); err != nil {
			o.log.Error("mail outbox: release", "mail", m.ID, "err", err)
		}
	case Permanent(err):
		o.fail(settle, m, attempts, "permanent", errorText(err))
	default:
		next := now.Add(o.backoff(attempts))
		if !m.ExpiresAt.IsZero() && next.After(m.ExpiresAt) {
			next = m.ExpiresAt // settled as expired then, never sent late
		}
		if next.Sub(m.CreatedAt) > o.giveUpAfter {
			o.fail(settle, m, attempts, "expired", "gave up after "+DurationWords(o.giveUpAfter)+": "+errorText(err))
			return
		}
		if err := o.st.MailRetry(settle, m.ID, now, attempts, errorText(err), next); err != nil {
			o.log.Error("mail outbox: record retry", "mail", m.ID, "err", err)
		}
		o.log.Warn("mail not sent; will retry", "mail", m.ID, "kind", m.Kind, "attempts", attempts, "retry_in", next.Sub(now).Round(time.Second).String(), "err", errorText(err))
	}
}

func (o *Outbox) fail(ctx context.Context, m store.OutboxMail, attempts int, reason, text string) {
	if err := o.st.MailFailed(ctx, m.ID, o.now(), attempts, text); err != nil {
		o.log.Error("mail outbox: record failure", "mail", m.ID, "err", err)
	}
	o.failed.WithLabelValues(reason).Inc()
	o.log.Warn("mail failed for good", "mail", m.ID, "kind", m.Kind, "reason", reason, "attempts", attempts, "err", text)
}

// backoff is the wait after the n-th failed attempt (n ≥ 1): MinBackoff ·
// 2^(n-1), at most MaxBackoff, then a random point in its upper half.
func (o *Outbox) backoff(n int) time.Duration {
	d := o.minBackoff
	for i := 1; i < n && d < o.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, o.maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// errorText is err's text for the outbox row and the log, cut to 300
// bytes. Errors of the mailers never hold the password or the body.
func errorText(err error) string {
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Describe implements prometheus.Collector.
func (o *Outbox) Describe(ch chan<- *prometheus.Desc) {
	o.sent.Describe(ch)
	o.failed.Describe(ch)
	ch <- o.queuedDesc
}

// Collect implements prometheus.Collector. ocmt_mail_queued is counted in
// the table (within 2 s; else the last value read).
func (o *Outbox) Collect(ch chan<- prometheus.Metric) {
	o.sent.Collect(ch)
	o.failed.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	if counts, err := o.st.MailCounts(ctx); err == nil {
		o.lastQueued = float64(counts[store.MailQueued])
	}
	ch <- prometheus.MustNewConstMetric(o.queuedDesc, prometheus.GaugeValue, o.lastQueued)
}
