package config

import "testing"

// TestPublicURLScheme: the public URL's scheme is matched in any case, so
// an https URL written in capitals still turns on Secure cookies and HSTS.
func TestPublicURLScheme(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		secure   bool
	}{
		{"https://ocmt.example.org/", "https://ocmt.example.org", true},
		{"HTTPS://Ocmt.example.org", "https://Ocmt.example.org", true},
		{"Http://ocmt.example.org:8080", "http://ocmt.example.org:8080", false},
	} {
		c := Default()
		c.DataDir, c.PublicURL = t.TempDir(), tc.in
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if c.PublicURL != tc.want || c.Secure() != tc.secure {
			t.Errorf("%s: PublicURL %q Secure %v, want %q %v", tc.in, c.PublicURL, c.Secure(), tc.want, tc.secure)
		}
	}
}
