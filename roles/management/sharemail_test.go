package management

import (
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/store"
)

func TestShareMailText(t *testing.T) {
	exp := time.Date(2025, 12, 7, 14, 3, 0, 0, time.UTC)
	for _, tc := range []struct {
		name         string
		n            shareNotice
		subject      string
		want, absent []string
	}{
		{"integration", shareNotice{Kind: noticeShared, IssuerEmail: "alice@example.org", Resource: "calendar", Scope: []string{"list", "read"}, ExpiresAt: exp, MaxCalls: 50, Link: "https://ocmt.example/#sharing"},
			"alice@example.org shared their calendar with you",
			[]string{"You may: see and list it\n", "Until: 7 December 2025, 14:03 UTC\n", "Calls: up to 50\n", "\nhttps://ocmt.example/#sharing\n", "untick"},
			[]string{"also", "ocap1."}},
		{"model key, no budget", shareNotice{Kind: noticeShared, IssuerEmail: "alice@example.org", Resource: "provider:anthropic", Scope: []string{"write"}, ExpiresAt: exp, Link: "l"},
			"alice@example.org shared their Anthropic key with you",
			[]string{"You may: use it for your chat, without seeing the key\n"},
			[]string{"Calls:"}},
		{"all verbs and more", shareNotice{Kind: noticeShared, IssuerEmail: "a@x.org", Resource: "notes", Scope: []string{"delete", "write", "list", "read", "admin"}, ExpiresAt: exp, More: 2, Link: "l"},
			"a@x.org shared their notes with you",
			[]string{"You may: see, list, change and delete it\n", "a@x.org also shared 2 more things with you"},
			[]string{"admin"}},
		{"stopped, the last share", shareNotice{Kind: noticeStopped, IssuerEmail: "alice@example.org", Resource: "provider:openai", Scope: []string{"write"}, ExpiresAt: exp, More: 1, Link: "l"},
			"alice@example.org stopped sharing their OpenAI key with you",
			[]string{"stopped the share of their OpenAI key (for your chat, until 7 December 2025, 14:03 UTC) with you.",
				"This share no longer works: you and your agent can no longer use it.", "also stopped 1 more share with you"},
			[]string{"You may", "Until", "still active", "change", "more thing"}},
		{"stopped, another share still active", shareNotice{Kind: noticeStopped, IssuerEmail: "alice@example.org", Resource: "calendar", Scope: []string{"read", "list"}, ExpiresAt: exp, MaxCalls: 50, StillActive: true, Link: "l"},
			"alice@example.org stopped a share of their calendar with you",
			[]string{"stopped the share of their calendar (see and list, until 7 December 2025, 14:03 UTC, up to 50 calls) with you.",
				"This share no longer works for you or your agent; another share of it is still active."},
			[]string{"can no longer use it", "stopped sharing"}},
		{"odd resource id", shareNotice{Kind: noticeShared, IssuerEmail: "a@x.org", Resource: "cal\r\nBcc: eve@x.org", Scope: []string{"read"}, ExpiresAt: exp, Link: "l"},
			"a@x.org shared something with you",
			nil, []string{"Bcc", "\r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subject, body := shareMailText(tc.n)
			if subject != tc.subject {
				t.Errorf("subject %q, want %q", subject, tc.subject)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
			for _, w := range tc.absent {
				if strings.Contains(subject+body, w) {
					t.Errorf("mail holds %q:\n%s\n%s", w, subject, body)
				}
			}
		})
	}
}

func TestNoticeGuard(t *testing.T) {
	g := newNoticeGuard()
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	step := func(d time.Duration) { now = now.Add(d) }
	check := func(issuer, recipient, kind string, wantOK bool, wantMore int) {
		t.Helper()
		ok, more := g.allow(store.UserID(issuer), store.UserID(recipient), kind, now)
		if ok != wantOK || more != wantMore {
			t.Fatalf("%s→%s %s at %s: ok=%v more=%d, want %v %d", issuer, recipient, kind, now.Format("15:04"), ok, more, wantOK, wantMore)
		}
	}
	check("a", "b", noticeShared, true, 0)
	step(time.Minute)
	check("a", "b", noticeShared, false, 0) // within 10 minutes: held back
	check("a", "b", noticeShared, false, 0)
	check("a", "b", noticeStopped, true, 0) // a revocation is news of its own
	check("a", "c", noticeShared, true, 0)  // another recipient
	step(10 * time.Minute)
	check("a", "b", noticeShared, true, 2) // says how many were held back
	check("a", "b", noticeShared, false, 0)

	// One issuer causes at most shareMailIssuerPerHour mails an hour.
	for i := 0; i < shareMailIssuerPerHour; i++ {
		check("x", "r"+string(rune('a'+i)), noticeShared, true, 0)
	}
	check("x", "late", noticeShared, false, 0)
	step(time.Hour)
	check("x", "late", noticeShared, true, 1)
}
