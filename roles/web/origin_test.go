package web_test

import (
	"testing"

	"github.com/ocmt/ocmt/roles/web"
)

// TestOriginMatches: an Origin header matches the public URL only with the
// same scheme, host (any case) and port (default ports filled in).
func TestOriginMatches(t *testing.T) {
	for _, tc := range []struct {
		public, header string
		want           bool
	}{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", true},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080", true},
		{"http://127.0.0.1:8080", "https://127.0.0.1:8080", false}, // scheme
		{"http://127.0.0.1:8080", "ws://127.0.0.1:8080", false},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8081", false}, // port
		{"http://127.0.0.1:8080", "http://127.0.0.1", false},
		{"http://127.0.0.1:8080", "http://localhost:8080", false}, // host
		{"http://127.0.0.1:8080", "http://127.0.0.1.evil.example:8080", false},
		{"https://ocmt.example.org", "https://OCMT.Example.ORG", true},
		{"https://ocmt.example.org", "HTTPS://ocmt.example.org", true},
		{"https://ocmt.example.org", "https://ocmt.example.org:443", true},
		{"https://ocmt.example.org:443", "https://ocmt.example.org", true},
		{"http://ocmt.example.org", "http://ocmt.example.org:80", true},
		{"https://ocmt.example.org", "https://ocmt.example.org:80", false},
		{"https://ocmt.example.org", "http://ocmt.example.org:443", false},
		{"https://ocmt.example.org", "http://ocmt.example.org", false},
		{"https://ocmt.example.org", "https://ocmt.example.org/", false}, // not an origin
		{"https://ocmt.example.org", "https://ocmt.example.org/x", false},
		{"https://ocmt.example.org", "https://ocmt.example.org?x", false},
		{"https://ocmt.example.org", "https://ocmt.example.org#", false},
		{"https://ocmt.example.org", "https://u@ocmt.example.org", false},
		{"https://ocmt.example.org", "https://ocmt.example.org:", true}, // empty port = default (RFC 3986)
		{"https://ocmt.example.org", "https://ocmt.example.org:0443", true},
		{"https://ocmt.example.org", "https://ocmt.example.org:x", false},
		{"https://ocmt.example.org", "null", false},
		{"https://ocmt.example.org", "", false},
		{"https://ocmt.example.org", "ocmt.example.org", false},
		{"http://[::1]:8080", "http://[::1]:8080", true},
		{"http://[::1]:8080", "http://[::2]:8080", false},
		{"not a url", "not a url", false},
		{"", "", false},
	} {
		o, _ := web.ParseOrigin(tc.public)
		if got := o.Matches(tc.header); got != tc.want {
			t.Errorf("public %q, Origin %q: %v, want %v", tc.public, tc.header, got, tc.want)
		}
	}
	if o, ok := web.ParseOrigin("https://Ocmt.Example.org/app"); !ok || o.String() != "https://ocmt.example.org:443" {
		t.Errorf("ParseOrigin: %v %v", o, ok)
	}
}
