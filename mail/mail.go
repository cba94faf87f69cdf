// Package mail sends ocmt's mail (sign-in links, share notices): over SMTP
// when a server is configured, else by printing it on the console (a
// sign-in mail as one line with its link; a notice with its text).
package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Message is one plain-text mail. Link, if set, is what the console mailer
// prints; Body is the full text.
type Message struct {
	To      string
	Subject string
	Body    string
	Link    string
	// ShowBody makes the console mailer print Body too (notices, whose
	// words are the point); a sign-in mail prints only its link line.
	ShowBody bool
}

// Mailer sends messages.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

// Console prints "ocmt: sign-in link for <to>: <link>" on one line to W.
// A message with ShowBody is printed as "ocmt: mail to <to>: <subject>"
// followed by its body, each line prefixed "ocmt: | ", in one write.
type Console struct {
	mu sync.Mutex
	W  io.Writer
}

// Send implements Mailer.
func (c *Console) Send(ctx context.Context, m Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.ShowBody {
		var b strings.Builder
		fmt.Fprintf(&b, "ocmt: mail to %s: %s\n", m.To, m.Subject)
		for _, l := range strings.Split(strings.TrimRight(m.Body, "\n"), "\n") {
			b.WriteString(strings.TrimRight("ocmt: | "+l, " ") + "\n")
		}
		_, err := io.WriteString(c.W, b.String())
		return err
	}
	_, err := fmt.Fprintf(c.W, "ocmt: %s for %s: %s\n", strings.ToLower(m.Subject), m.To, m.Link)
	return err
}

// SMTP sends through a mail server with net/smtp.
type SMTP struct {
	Host     string
	Port     int
	Username string // "" = no AUTH
	Password string
	TLS      string // "starttls" (required), "tls" (implicit TLS) or "none"
	From     string // e.g. "ocmt <ocmt@example.org>"
}

// Send implements Mailer. It refuses header injection in To and Subject.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	if strings.ContainsAny(m.To+m.Subject, "\r\n") {
		return errors.New("mail: header value contains a line break")
	}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	d := net.Dialer{Timeout: 15 * time.Second}
	var conn net.Conn
	var err error
	tlsCfg := &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	if s.TLS == "tls" {
		conn, err = tls.DialWithDialer(&d, "tcp", addr, tlsCfg)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("mail: dial %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(time.Minute))
	}
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("mail: %w", err)
	}
	defer c.Close()
	if s.TLS == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("mail: server does not offer STARTTLS (set --smtp-tls=none to send in clear)")
		}
		if err := c.StartTLS(tlsCfg); err != nil {
			return fmt.Errorf("mail: starttls: %w", err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return fmt.Errorf("mail: auth: %w", err)
		}
	}
	from := s.From
	if i := strings.LastIndex(from, "<"); i >= 0 {
		from = strings.Trim(from[i:], "<>")
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("mail: from: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("mail: rcpt: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("mail: data: %w", err)
	}
	msg := "From: " + s.From + "\r\nTo: " + m.To + "\r\nSubject: " + m.Subject +
		"\r\nDate: " + time.Now().UTC().Format(time.RFC1123Z) +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		strings.ReplaceAll(m.Body, "\n", "\r\n")
	if _, err := io.WriteString(w, msg); err != nil {
		return fmt.Errorf("mail: write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("mail: send: %w", err)
	}
	return c.Quit()
}
