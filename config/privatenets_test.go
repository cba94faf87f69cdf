package config

import (
	"net/netip"
	"testing"
)

func TestPrivateTargets(t *testing.T) {
	for _, tc := range []struct {
		in, str string
		allows  []string
		refuses []string
	}{
		{"false", "false", nil, []string{"10.1.2.3", "127.0.0.1"}},
		{"true", "true", []string{"10.1.2.3", "::1"}, nil},
		{"192.168.1.0/24, 10.0.0.7", "192.168.1.0/24,10.0.0.7/32", []string{"192.168.1.200", "10.0.0.7", "::ffff:10.0.0.7"}, []string{"192.168.2.1", "10.0.0.8"}},
		{"192.168.1.77/24", "192.168.1.0/24", []string{"192.168.1.1"}, nil},
		{"fd00::/8", "fd00::/8", []string{"fd12::1"}, []string{"fe80::1"}},
	} {
		var p PrivateTargets
		if err := p.Set(tc.in); err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if p.String() != tc.str {
			t.Errorf("%q: String() = %q, want %q", tc.in, p.String(), tc.str)
		}
		for _, a := range tc.allows {
			if !p.Allows(netip.MustParseAddr(a)) {
				t.Errorf("%q refuses %s", tc.in, a)
			}
		}
		for _, a := range tc.refuses {
			if p.Allows(netip.MustParseAddr(a)) {
				t.Errorf("%q allows %s", tc.in, a)
			}
		}
	}
	for _, bad := range []string{"", "yes please", "10.0.0.0/33", "10.0.0.0/8,nope", ","} {
		var p PrivateTargets
		if err := p.Set(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, p)
		}
	}
}
