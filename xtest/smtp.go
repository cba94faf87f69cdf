package xtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/ocmt/ocmt/config"
)

// SMTPServer is a real SMTP server (github.com/emersion/go-smtp) on
// 127.0.0.1 for tests: STARTTLS with a self-signed certificate made for
// the test (CAFile holds it, PEM), AUTH PLAIN (offered only after
// STARTTLS) as User/Password, and every accepted mail kept in memory.
// It can be stopped and started again on the same port, and told to
// refuse a recipient with 550.
type SMTPServer struct {
	Host     string // "127.0.0.1"
	Port     int
	CAFile   string // the server certificate, PEM: pass as --smtp-ca-file
	User     string
	Password string

	t        testing.TB
	implicit bool // TLS from the first byte (NewSMTPServerTLS)
	tlsCfg   *tls.Config
	mu       sync.Mutex
	srv      *smtp.Server // nil while stopped
	ln       net.Listener // srv's listener
	mails    []ReceivedMail
	reject   map[string]bool // recipients refused with 550
	froms    int             // MAIL FROM commands seen
}

// ReceivedMail is one mail the SMTPServer accepted.
type ReceivedMail struct {
	From string
	To   []string
	Data []byte // the message as sent (RFC 5322), CRLF line ends
	Auth string // the user name it authenticated as
}

// NewSMTPServer starts an SMTPServer; it is stopped when the test ends.
func NewSMTPServer(t testing.TB) *SMTPServer { t.Helper(); return newSMTPServer(t, false) }

// NewSMTPServerTLS starts an SMTPServer that speaks TLS from the first
// byte (--smtp-tls=tls) instead of STARTTLS.
func NewSMTPServerTLS(t testing.TB) *SMTPServer { t.Helper(); return newSMTPServer(t, true) }

func newSMTPServer(t testing.TB, implicit bool) *SMTPServer {
	t.Helper()
	certPEM, keyPEM := SelfSignedCert(t, "127.0.0.1")
	dir := t.TempDir()
	s := &SMTPServer{Host: "127.0.0.1", CAFile: filepath.Join(dir, "smtp-ca.pem"), User: "ocmt-test",
		Password: "smtp-test-password-" + strconv.Itoa(os.Getpid()), t: t, reject: map[string]bool{}, implicit: implicit}
	if err := os.WriteFile(s.CAFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s.tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Port = ln.Addr().(*net.TCPAddr).Port
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// Configure points cfg at the server: STARTTLS (or implicit TLS), its certificate as the
// CA file, its user and password.
func (s *SMTPServer) Configure(cfg *config.Config) {
	cfg.SMTPHost, cfg.SMTPPort, cfg.SMTPTLS, cfg.SMTPCAFile = s.Host, s.Port, "starttls", s.CAFile
	if s.implicit {
		cfg.SMTPTLS = "tls"
	}
	cfg.SMTPUsername, cfg.SMTPPassword = s.User, s.Password
	cfg.MailFrom = "ocmt <ocmt@example.org>"
}

func (s *SMTPServer) serve(ln net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s}, nil }))
	srv.Domain = "localhost"
	srv.TLSConfig = s.tlsCfg
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.MaxMessageBytes = 1 << 20
	if s.implicit {
		ln = tls.NewListener(ln, s.tlsCfg)
	}
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.mu.Unlock()
	go srv.Serve(ln)
}

// Stop closes the server (connections refused until Start).
func (s *SMTPServer) Stop() {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	s.mu.Unlock()
	if srv != nil {
		ln.Close() // Serve may not have started yet: Close alone would miss it
		srv.Close()
	}
}

// Start serves again on the same port.
func (s *SMTPServer) Start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; the kernel may need a moment to let
	// it go.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.Port))); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("smtp server: listen again on %d: %v", s.Port, err)
	}
	s.serve(ln)
}

// Reject makes the server answer RCPT TO:<addr> with 550 5.1.1.
func (s *SMTPServer) Reject(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject[strings.ToLower(addr)] = true
}

// Mails returns the mails accepted so far.
func (s *SMTPServer) Mails() []ReceivedMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ReceivedMail(nil), s.mails...)
}

// MailFroms returns how many MAIL FROM commands the server has seen (each
// is a delivery attempt that got past TLS and AUTH).
func (s *SMTPServer) MailFroms() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.froms
}

type smtpSession struct {
	s    *SMTPServer
	auth string
	cur  ReceivedMail
}

func (x *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != x.s.User || password != x.s.Password {
			return smtp.ErrAuthFailed
		}
		x.auth = username
		return nil
	}), nil
}

func (x *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if x.auth == "" {
		return smtp.ErrAuthRequired
	}
	x.s.mu.Lock()
	x.s.froms++
	x.s.mu.Unlock()
	x.cur = ReceivedMail{From: from, Auth: x.auth}
	return nil
}

func (x *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	rej := x.s.reject[strings.ToLower(to)]
	x.s.mu.Unlock()
	if rej {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such mailbox"}
	}
	x.cur.To = append(x.cur.To, to)
	return nil
}

func (x *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.cur.Data = b
	x.s.mu.Lock()
	x.s.mails = append(x.s.mails, x.cur)
	x.s.mu.Unlock()
	return nil
}

func (x *smtpSession) Reset()        { x.cur = ReceivedMail{} }
func (x *smtpSession) Logout() error { return nil }

// SelfSignedCert returns a self-signed ECDSA P-256 certificate valid for a
// day for hosts (IP addresses or DNS names; the first is also its common
// name), and its key in PKCS #8, both PEM.
func SelfSignedCert(t testing.TB, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// SilentServer accepts TCP connections on 127.0.0.1 and never says a
// word (a mail server that hangs before its greeting). Connections stay
// open until the client closes them or the test ends.
type SilentServer struct {
	Host string
	Port int

	mu       sync.Mutex
	accepted int
	closed   int // connections the client closed
}

// NewSilentServer starts a SilentServer; it stops when the test ends.
func NewSilentServer(t testing.TB) *SilentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SilentServer{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}
	var conns []net.Conn
	var cmu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		defer cmu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cmu.Lock()
			conns = append(conns, c)
			cmu.Unlock()
			s.mu.Lock()
			s.accepted++
			s.mu.Unlock()
			go func() {
				_, err := io.Copy(io.Discard, c) // returns when the client hangs up
				if err == nil || !errors.Is(err, net.ErrClosed) {
					s.mu.Lock()
					s.closed++
					s.mu.Unlock()
				}
			}()
		}
	}()
	return s
}

// Counts returns how many connections were accepted and how many of them
// the client has closed.
func (s *SilentServer) Counts() (accepted, closed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.closed
}
