package mail

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeSMTP is a minimal SMTP server (RFC 5321) on loopback that records
// one conversation. starttls says whether it advertises STARTTLS.
func fakeSMTP(t *testing.T, starttls bool) (addr string, got chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var log bytes.Buffer
		r := bufio.NewReader(c)
		say := func(s string) { c.Write([]byte(s + "\r\n")) }
		say("220 fake ESMTP")
		data := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				got <- log.String()
				return
			}
			log.WriteString(line)
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case data:
				if cmd == "." {
					data = false
					say("250 queued")
				}
			case strings.HasPrefix(cmd, "EHLO"):
				if starttls {
					say("250-fake")
					say("250 STARTTLS")
				} else {
					say("250-fake")
					say("250 AUTH PLAIN")
				}
			case strings.HasPrefix(cmd, "AUTH"):
				say("235 ok")
			case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"):
				say("250 ok")
			case cmd == "DATA":
				data = true
				say("354 go on")
			case cmd == "QUIT":
				say("221 bye")
				got <- log.String()
				return
			default:
				say("502 no")
			}
		}
	}()
	return ln.Addr().String(), got
}

func TestSMTPRefusesClearWhenStartTLSRequired(t *testing.T) {
	addr, conv := fakeSMTP(t, false) // offers no STARTTLS
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	m := &SMTP{Host: host, Port: p, TLS: "starttls", Username: "u", Password: "secret-pw", From: "ocmt@example.org"}
	err := m.Send(context.Background(), Message{To: "bob@example.org", Subject: "x", Body: "y"})
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") || strings.Contains(<-conv, "secret-pw") {
		t.Fatalf("sent without TLS: %v", err)
	}
}

func TestHeaderInjectionRefused(t *testing.T) {
	m := &SMTP{Host: "127.0.0.1", Port: 1, TLS: "none", From: "a@b"}
	if err := m.Send(context.Background(), Message{To: "bob@example.org\r\nBcc: eve@example.org", Subject: "x"}); err == nil {
		t.Fatal("header injection accepted")
	}
}

func TestConsoleOneLine(t *testing.T) {
	var b bytes.Buffer
	(&Console{W: &b}).Send(context.Background(), Message{To: "a@example.org", Subject: "Sign-in link", Link: "http://x/auth/verify?token=t"})
	if b.String() != "ocmt: sign-in link for a@example.org: http://x/auth/verify?token=t\n" {
		t.Fatalf("console: %q", b.String())
	}
}

func TestConsoleNoticeWithBody(t *testing.T) {
	var b bytes.Buffer
	(&Console{W: &b}).Send(context.Background(), Message{To: "b@example.org", Subject: "a@example.org shared their calendar with you",
		Body: "First line.\n\nhttp://x/#sharing\n", Link: "http://x/#sharing", ShowBody: true})
	want := "ocmt: mail to b@example.org: a@example.org shared their calendar with you\nocmt: | First line.\nocmt: |\nocmt: | http://x/#sharing\n"
	if b.String() != want {
		t.Fatalf("console:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestDurationWords(t *testing.T) {
	for d, want := range map[time.Duration]string{
		15 * time.Minute: "15 minutes", time.Hour: "1 hour", 90 * time.Minute: "1 hour 30 minutes",
		time.Minute: "1 minute", 45 * time.Second: "45 seconds", 48 * time.Hour: "2 days",
		25*time.Hour + 3*time.Minute: "1 day 1 hour", 24*time.Hour + 3*time.Minute: "1 day",
		0: "0 seconds", -time.Hour: "0 seconds", 1500 * time.Millisecond: "1 second",
	} {
		if got := DurationWords(d); got != want {
			t.Errorf("DurationWords(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestPermanentOnlyFor5xxReplies(t *testing.T) {
	for _, err := range []error{errors.New("550 no such user"), context.DeadlineExceeded, errors.New("x509: certificate signed by unknown authority")} {
		if Permanent(err) {
			t.Errorf("Permanent(%v) = true", err)
		}
	}
}
