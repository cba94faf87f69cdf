package vault

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/config"
)

// TestPrivateTargetWarning: saving an integration whose address the SSRF
// guard will refuse for shared calls says so at once, with the flag that
// would allow it; an address the administrator allowed gets no warning.
func TestPrivateTargetWarning(t *testing.T) {
	v := newTestVault(t, "")
	v.create("correct horse battery staple")
	put := func(base string) map[string]any {
		t.Helper()
		st, b := v.do("PUT", "/vault/integrations/nas", map[string]string{"type": "http", "baseUrl": base})
		if st != 200 {
			t.Fatalf("put %s: %d %v", base, st, b)
		}
		w, _ := b["warning"].(map[string]any)
		return w
	}
	w := put("http://192.168.1.5:8080/api")
	if w == nil || w["code"] != "private_target" || !strings.Contains(w["message"].(string), "--allow-private-targets=192.168.1.0/24") {
		t.Fatalf("private address: warning %v", w)
	}
	if w := put("http://[::1]:8080"); w == nil || w["address"] != "::1" {
		t.Fatalf("loopback: warning %v", w)
	}
	if w := put("https://93.184.216.34"); w != nil {
		t.Fatalf("public address warned: %v", w)
	}
	v.s.allowPrivate = config.PrivateTargets{Nets: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}}
	if w := put("http://192.168.1.5:8080/api"); w != nil {
		t.Fatalf("allowed range warned: %v", w)
	}
	if w := put("http://192.168.2.5"); w == nil {
		t.Fatal("address outside the allowed range not warned")
	}
}

// TestPrivateTargetsAllowList: a shared call reaches a private address only
// when --allow-private-targets lists a prefix holding it.
func TestPrivateTargetsAllowList(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	for _, tc := range []struct {
		allow string
		ok    bool
	}{{"false", false}, {"10.0.0.0/8", false}, {"127.0.0.0/8", true}, {"127.0.0.1", true}, {"true", true}} {
		var p config.PrivateTargets
		if err := p.Set(tc.allow); err != nil {
			t.Fatal(err)
		}
		s := &Server{allowPrivate: p}
		resp, err := s.resourceClient(5 * time.Second).Get(srv.URL)
		if resp != nil {
			resp.Body.Close()
		}
		switch {
		case tc.ok && err != nil:
			t.Errorf("allow %s: %v", tc.allow, err)
		case !tc.ok && !errors.Is(err, errTargetRefused):
			t.Errorf("allow %s: got %v, want the target refused", tc.allow, err)
		}
	}
}
