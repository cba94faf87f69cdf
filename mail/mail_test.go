package mail

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
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

func TestSMTPSends(t *testing.T) {
	addr, got := fakeSMTP(t, false)
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	m := &SMTP{Host: host, Port: p, TLS: "none", From: "ocmt <ocmt@example.org>"}
	err := m.Send(context.Background(), Message{To: "bob@example.org", Subject: "Sign-in link", Body: "open https://x/auth/verify?token=abc\n", Link: "https://x"})
	if err != nil {
		t.Fatal(err)
	}
	conv := <-got
	for _, want := range []string{"MAIL FROM:<ocmt@example.org>", "RCPT TO:<bob@example.org>", "Subject: Sign-in link", "token=abc"} {
		if !strings.Contains(conv, want) {
			t.Errorf("conversation lacks %q:\n%s", want, conv)
		}
	}
}

func TestSMTPRefusesClearWhenStartTLSRequired(t *testing.T) {
	addr, _ := fakeSMTP(t, false) // offers no STARTTLS
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	m := &SMTP{Host: host, Port: p, TLS: "starttls", Username: "u", Password: "secret-pw", From: "ocmt@example.org"}
	err := m.Send(context.Background(), Message{To: "bob@example.org", Subject: "x", Body: "y"})
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
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
