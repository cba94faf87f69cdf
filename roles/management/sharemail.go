package management

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ocmt/ocmt/mail"
	"github.com/ocmt/ocmt/store"
)

// Share mails: when a grant is recorded or revoked, the recipient gets a
// short plain-text mail in words (who, what, what they may do, until when,
// the call budget, a link to the Sharing tab). It holds metadata only:
// never the token, never anything from a vault. Sending never blocks or
// fails the request: the mail is queued in the outbox (mail.Outbox), whose
// worker sends it with retries.
const (
	// shareMailPairWindow is how long a mail of one kind from one issuer to
	// one recipient holds back the next of that kind; the next one that
	// goes says how many changes it stood for.
	shareMailPairWindow = 10 * time.Minute
	// shareMailIssuerPerHour caps the share mails one issuer causes per hour.
	shareMailIssuerPerHour = 20
	// maxNoticeKeys bounds the guard's memory.
	maxNoticeKeys = 50_000
)

// Kinds of share mail.
const (
	noticeShared  = "shared"
	noticeStopped = "stopped"
)

// shareNotice is what a share mail says. Its fields come from the peer
// grant's metadata and the user records.
type shareNotice struct {
	Kind        string // noticeShared or noticeStopped
	IssuerEmail string
	Resource    string   // "calendar", "provider:anthropic"
	Scope       []string // operations: read, list, write, delete
	ExpiresAt   time.Time
	MaxCalls    int // 0 = no budget
	More        int // changes of this kind held back since the last mail
	// StillActive (noticeStopped): the recipient still has another active
	// share of the same resource from the same issuer.
	StillActive bool
	Link        string // where the Sharing tab is: <public-url>/#sharing
}

// safeResource is what a resource id may look like to be named in a mail
// (integration names and provider:<name>); anything else is "something".
var safeResource = regexp.MustCompile(`^(provider:)?[a-z][a-z0-9_-]{0,63}$`)

// resourceWords names a resource from the recipient's side: "their
// calendar", "their Anthropic key" (provider:anthropic).
func resourceWords(resource string) string {
	if !safeResource.MatchString(resource) {
		return "something"
	}
	if p, ok := strings.CutPrefix(resource, "provider:"); ok {
		names := map[string]string{"anthropic": "Anthropic", "openai": "OpenAI"}
		if n := names[p]; n != "" {
			p = n
		}
		return "their " + p + " key"
	}
	return "their " + resource
}

// scopeWords turns operations into plain verbs in a fixed order, like the
// UI's sharetext.js: ["write","read"] → "see and change". Unknown
// operations are left out.
func scopeWords(scope []string) string {
	var words []string
	for _, op := range []struct{ op, verb string }{{"read", "see"}, {"list", "list"}, {"write", "change"}, {"delete", "delete"}} {
		for _, s := range scope {
			if s == op.op {
				words = append(words, op.verb)
				break
			}
		}
	}
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// shareMailText returns a share mail's subject and plain-text body.
func shareMailText(n shareNotice) (subject, body string) {
	what := resourceWords(n.Resource)
	var b strings.Builder
	if n.Kind == noticeStopped {
		// Name the share that ended: the issuer may have shared the same
		// thing more than once, and the others keep working.
		subject = fmt.Sprintf("%s stopped sharing %s with you", n.IssuerEmail, what)
		if n.StillActive {
			subject = fmt.Sprintf("%s stopped a share of %s with you", n.IssuerEmail, what)
		}
		fmt.Fprintf(&b, "%s stopped the share of %s (%s) with you.", n.IssuerEmail, what, shareWords(n))
		if n.StillActive {
			b.WriteString(" This share no longer works for you or your agent; another share of it is still active.\n")
		} else {
			b.WriteString(" This share no longer works: you and your agent can no longer use it.\n")
		}
	} else {
		subject = fmt.Sprintf("%s shared %s with you", n.IssuerEmail, what)
		fmt.Fprintf(&b, "%s shared %s with you.\n\n", n.IssuerEmail, what)
		may := scopeWords(n.Scope) + " it"
		if strings.HasPrefix(n.Resource, "provider:") {
			may = "use it for your chat, without seeing the key"
		}
		fmt.Fprintf(&b, "You may: %s\n", may)
		fmt.Fprintf(&b, "Until: %s\n", n.ExpiresAt.UTC().Format("2 January 2006, 15:04 UTC"))
		if n.MaxCalls > 0 {
			fmt.Fprintf(&b, "Calls: up to %d\n", n.MaxCalls)
		}
		b.WriteString("\nYour agent can use it while the share lasts.\n")
	}
	if n.More > 0 {
		if n.Kind == noticeStopped { // shares, not things: the things may still be shared otherwise
			fmt.Fprintf(&b, "\nSince the last mail about it, %s also stopped %d more share%s with you.\n", n.IssuerEmail, n.More, plural(n.More))
		} else {
			fmt.Fprintf(&b, "\nSince the last mail about it, %s also shared %d more thing%s with you.\n", n.IssuerEmail, n.More, plural(n.More))
		}
	}
	fmt.Fprintf(&b, "\nSee everything shared with you in the Sharing tab:\n%s\n", n.Link)
	b.WriteString("\nTo stop these mails, untick \"Email me when someone shares with me\" in the Sharing tab.\n")
	return subject, b.String()
}

// shareWords describes one share in a few words, to tell it from other
// shares of the same thing: "see and list, until 7 December 2025, 14:03
// UTC, up to 50 calls" (a model key: "for your chat, until …").
func shareWords(n shareNotice) string {
	var parts []string
	if strings.HasPrefix(n.Resource, "provider:") {
		parts = append(parts, "for your chat")
	} else if w := scopeWords(n.Scope); w != "" {
		parts = append(parts, w)
	}
	parts = append(parts, "until "+n.ExpiresAt.UTC().Format("2 January 2006, 15:04 UTC"))
	if n.MaxCalls > 0 {
		parts = append(parts, fmt.Sprintf("up to %d calls", n.MaxCalls))
	}
	return strings.Join(parts, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// noticeGuard limits share mails: one per issuer, recipient and kind per
// shareMailPairWindow, and shareMailIssuerPerHour per issuer. It keeps
// metadata in memory only (user ids and times).
type noticeGuard struct {
	mu      sync.Mutex
	pairs   map[string]*pairNotice       // issuer|recipient|kind
	issuers map[store.UserID][]time.Time // send times within the last hour, oldest first
}

type pairNotice struct {
	last    time.Time // the last mail sent
	skipped int       // changes held back since
}

func newNoticeGuard() *noticeGuard {
	return &noticeGuard{pairs: map[string]*pairNotice{}, issuers: map[store.UserID][]time.Time{}}
}

// allow reports whether a mail of kind from issuer to recipient may go at
// now. When it may, more is how many were held back since the last one
// (and the count starts again); when not, this one is counted.
func (g *noticeGuard) allow(issuer, recipient store.UserID, kind string, now time.Time) (ok bool, more int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pairs) >= maxNoticeKeys || len(g.issuers) >= maxNoticeKeys {
		g.sweep(now)
	}
	key := string(issuer) + "|" + string(recipient) + "|" + kind
	p := g.pairs[key]
	if p == nil {
		if len(g.pairs) >= maxNoticeKeys {
			return false, 0 // still full: send nothing rather than grow
		}
		p = &pairNotice{}
		g.pairs[key] = p
	}
	sent := g.issuers[issuer]
	for len(sent) > 0 && now.Sub(sent[0]) >= time.Hour {
		sent = sent[1:]
	}
	g.issuers[issuer] = sent
	if !p.last.IsZero() && now.Sub(p.last) < shareMailPairWindow || len(sent) >= shareMailIssuerPerHour {
		p.skipped++
		return false, 0
	}
	more = p.skipped
	p.last, p.skipped = now, 0
	g.issuers[issuer] = append(sent, now)
	return true, more
}

// sweep forgets pairs and issuers quiet for an hour. Guarded by mu.
func (g *noticeGuard) sweep(now time.Time) {
	for k, p := range g.pairs {
		if now.Sub(p.last) >= time.Hour {
			delete(g.pairs, k)
		}
	}
	for k, ts := range g.issuers {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= time.Hour {
			delete(g.issuers, k)
		}
	}
}

// notifyShare queues a share mail of kind about g to its subject, unless
// the subject turned these mails off or the guard holds it back. It never
// blocks and never fails the caller; problems are logged as metadata.
func (s *Server) notifyShare(ctx context.Context, kind string, issuer store.User, g store.PeerGrant) {
	on, err := s.st.ShareMail(ctx, g.SubjectID)
	if err != nil {
		s.log.Error("share mail setting", "recipient", g.SubjectID, "err", err)
		return
	}
	if !on {
		return
	}
	ok, more := s.noticeGuard.allow(issuer.ID, g.SubjectID, kind, s.now())
	if !ok {
		s.log.Debug("share mail held back", "kind", kind, "issuer", issuer.ID, "recipient", g.SubjectID)
		return
	}
	to, err := s.st.UserByID(ctx, g.SubjectID)
	if err != nil {
		s.log.Error("share mail recipient", "recipient", g.SubjectID, "err", err)
		return
	}
	stillActive := false
	if kind == noticeStopped {
		if stillActive, err = s.otherActiveShare(ctx, issuer.ID, g); err != nil {
			s.log.Error("share mail: other shares", "recipient", g.SubjectID, "err", err)
			return // rather no mail than one that may overstate
		}
	}
	link := s.opt.PublicURL + "/#sharing"
	subject, body := shareMailText(shareNotice{Kind: kind, IssuerEmail: issuer.Email, Resource: g.Resource, Scope: g.Scope,
		ExpiresAt: g.ExpiresAt, MaxCalls: g.MaxCalls, More: more, StillActive: stillActive, Link: link})
	id, err := s.opt.Outbox.Enqueue(context.WithoutCancel(ctx), mail.KindShare,
		mail.Message{To: to.Email, Subject: subject, Body: body, Link: link, ShowBody: true}, time.Time{})
	if err != nil {
		s.log.Error("share mail not queued", "kind", kind, "issuer", issuer.ID, "recipient", g.SubjectID, "err", err)
		return
	}
	s.log.Info("share mail queued", "mail", id, "kind", kind, "issuer", issuer.ID, "recipient", g.SubjectID)
}

// otherActiveShare reports whether g's subject holds another active grant
// of g's resource from issuer (as far as management knows: a share whose
// calls are used up still counts as active here).
func (s *Server) otherActiveShare(ctx context.Context, issuer store.UserID, g store.PeerGrant) (bool, error) {
	gs, err := s.st.PeerGrants(ctx, g.SubjectID, false)
	if err != nil {
		return false, err
	}
	now := s.now()
	for _, o := range gs {
		if o.JTI != g.JTI && o.IssuerID == issuer && o.Resource == g.Resource && o.Status(now) == "active" {
			return true, nil
		}
	}
	return false, nil
}
