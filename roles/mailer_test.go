package roles

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/config"
)

// TestMailerWarnsInClear: --smtp-tls=none to a server off this machine is
// allowed (some relays speak nothing else) but warned about at start, as
// --smtp-tls-insecure is; to loopback it is quiet.
func TestMailerWarnsInClear(t *testing.T) {
	for _, tc := range []struct {
		host, tls string
		warn      bool
	}{
		{"mail.example.org", "none", true},
		{"10.0.0.5", "none", true},
		{"127.0.0.1", "none", false},
		{"::1", "none", false},
		{"LocalHost", "none", false},
		{"mail.example.org", "starttls", false},
	} {
		var logs bytes.Buffer
		cfg := config.Default()
		cfg.SMTPHost, cfg.SMTPTLS = tc.host, tc.tls
		if _, err := newMailer(cfg, io.Discard, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "IN CLEAR"); got != tc.warn {
			t.Errorf("%s %s: warned=%v, want %v\n%s", tc.host, tc.tls, got, tc.warn, logs.String())
		}
	}
}
