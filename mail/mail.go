// Package mail sends ocmt's mail (sign-in links, invitations, share
// notices): over SMTP when a server is configured, else by printing it on
// the console (a sign-in mail as one line with its link; a notice with its
// text). Mail is not sent by the requests that cause it: they queue it in
// the persistent [Outbox], whose worker sends it with retries.
package mail

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Message is one plain-text mail. Link, if set, is what the console mailer
// prints; Body is the full text.
type Message struct {
	// ID, if set, is the local part of the Message-ID (the outbox row's
	// id, so that a mail sent again after a crash carries the same
	// Message-ID); "" = random.
	ID      string
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

// TLS modes of SMTP.TLS.
const (
	TLSStartTLS = "starttls" // plain connection upgraded with STARTTLS (RFC 3207); refused if not offered
	TLSImplicit = "tls"      // TLS from the first byte (RFC 8314, usually port 465)
	TLSNone     = "none"     // no encryption (a relay on the same host); AUTH is then refused
)

// DefaultTimeout bounds one send: dialling, TLS and every SMTP command.
const DefaultTimeout = 30 * time.Second

// SMTP sends through a mail server with github.com/wneessen/go-mail. A
// server certificate is always verified (against the system roots plus
// RootCAs) unless InsecureSkipVerify is set.
type SMTP struct {
	Host     string
	Port     int
	Username string // "" = no AUTH
	Password string
	TLS      string // TLSStartTLS (the default when ""), TLSImplicit or TLSNone
	From     string // e.g. "ocmt <ocmt@example.org>" (RFC 5322 address)
	// RootCAs verifies the server's certificate; nil = the system roots.
	// LoadCAFile makes one.
	RootCAs *x509.CertPool
	// InsecureSkipVerify accepts any server certificate (tests only).
	InsecureSkipVerify bool
	// Timeout bounds one send (dialling, TLS, every command); 0 =
	// DefaultTimeout.
	Timeout time.Duration
}

// LoadCAFile returns the system roots plus the PEM certificates in path
// (--smtp-ca-file). It fails when the file cannot be read or holds no
// certificate.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("CA file holds no PEM certificate")
	}
	return pool, nil
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// message builds m as a MIME message (RFC 5322, RFC 2045): From, To,
// Subject, Date, Message-ID (local part m.ID or random, domain of From),
// MIME-Version, Auto-Submitted: auto-generated (RFC 3834), and a
// text/plain UTF-8 body in quoted-printable.
func (s *SMTP) message(m Message) (*gomail.Msg, error) {
	if strings.ContainsAny(m.To+m.Subject, "\r\n") {
		return nil, errors.New("mail: header value contains a line break")
	}
	from, err := mail.ParseAddress(s.From)
	if err != nil {
		return nil, fmt.Errorf("mail: from address: %w", err)
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent(), gomail.WithEncoding(gomail.EncodingQP), gomail.WithCharset(gomail.CharsetUTF8))
	msg.FromMailAddress(from)
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("mail: recipient: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	id := m.ID
	if id == "" {
		var b [16]byte
		rand.Read(b[:])
		id = strings.ToLower(idEncoding.EncodeToString(b[:]))
	}
	domain := "localhost"
	if i := strings.LastIndexByte(from.Address, '@'); i >= 0 {
		domain = from.Address[i+1:]
	}
	msg.SetMessageIDWithValue(id + "@" + domain)
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, m.Body)
	return msg, nil
}

// Send implements Mailer. It refuses header injection in To and Subject.
// An error the server answered with a 5xx reply to the message (MAIL,
// RCPT, DATA) is permanent: see Permanent.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg, err := s.message(m)
	if err != nil {
		return err
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tlsCfg := &tls.Config{ServerName: s.Host, RootCAs: s.RootCAs, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: s.InsecureSkipVerify} //nolint:gosec // documented test-only option
	// Our own dialer, so that every connection is closed when Send
	// returns: go-mail leaves it open when the greeting, STARTTLS or AUTH
	// fails.
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if s.TLS == TLSImplicit {
			tc := tls.Client(c, tlsCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			c = tc
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		return c, nil
	}
	opts := []gomail.Option{gomail.WithPort(s.Port), gomail.WithTimeout(timeout), gomail.WithTLSConfig(tlsCfg), gomail.WithDialContextFunc(dial)}
	switch s.TLS {
	case TLSImplicit:
		// The connection is TLS from the dialer on; go-mail sees a
		// *tls.Conn and counts it as encrypted (for AUTH).
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.Username != "" {
		if s.TLS == TLSNone {
			return errors.New("mail: refusing SMTP AUTH without TLS")
		}
		// The best mechanism the server offers; PLAIN and LOGIN only
		// over TLS (go-mail's auto-discovery).
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover), gomail.WithUsername(s.Username), gomail.WithPassword(s.Password))
	}
	c, err := gomail.NewClient(s.Host, opts...)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// go-mail bounds each command by its timeout but does not watch ctx
	// once connected: closing the connection ends a send at once when
	// ctx ends (shutdown).
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	defer stop()
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	return nil
}

// Permanent reports whether err is a permanent refusal of the message: the
// server answered MAIL, RCPT or DATA with a 5xx reply (RFC 5321 §4.2.1).
// Everything else (no connection, timeouts, TLS failures, 4xx replies,
// refused AUTH) is worth retrying: it is about the server or the
// configuration, not the message.
func Permanent(err error) bool {
	var se *gomail.SendError
	if errors.As(err, &se) {
		return se.ErrorCode() >= 500 && se.ErrorCode() < 600
	}
	return false
}

// DurationWords says d in words for people, in its two largest units,
// rounded down to whole seconds: "15 minutes", "1 hour", "1 hour 30
// minutes", "2 days", "45 seconds". Zero or less is "0 seconds". Used
// wherever a duration is shown in mail or a page (never "15m0s").
func DurationWords(d time.Duration) string {
	if d < time.Second {
		return "0 seconds"
	}
	units := []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}}
	var parts []string
	for _, u := range units {
		if n := d / u.d; n > 0 {
			w := fmt.Sprintf("%d %s", n, u.name)
			if n != 1 {
				w += "s"
			}
			parts = append(parts, w)
			d -= n * u.d
			if len(parts) == 2 {
				break
			}
		} else if len(parts) > 0 {
			break // "1 day 3 minutes" says less than it seems; stop at a gap
		}
	}
	return strings.Join(parts, " ")
}
