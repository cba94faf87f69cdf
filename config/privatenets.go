package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PrivateTargets is the SSRF guard's exception list for shared resources
// (SPEC §7.3): what --allow-private-targets (OCMT_ALLOW_PRIVATE_TARGETS)
// lets a capability call reach although it is loopback, private,
// link-local or CGNAT. The flag takes "true" (everything: the guard off),
// "false" (nothing, the default) or a comma-separated list of CIDR
// prefixes or single addresses ("192.168.1.0/24,10.0.0.7"). It is a
// pflag.Value.
type PrivateTargets struct {
	All  bool           // every address: the guard is off
	Nets []netip.Prefix // else these prefixes only (masked)
}

// Allows reports whether ip (a non-public address) may be reached.
func (p PrivateTargets) Allows(ip netip.Addr) bool {
	if p.All {
		return true
	}
	ip = ip.Unmap()
	for _, n := range p.Nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Enabled reports whether anything private is allowed.
func (p PrivateTargets) Enabled() bool { return p.All || len(p.Nets) > 0 }

// String is the flag's text: "true", "false" or the prefixes joined by commas.
func (p PrivateTargets) String() string {
	switch {
	case p.All:
		return "true"
	case len(p.Nets) == 0:
		return "false"
	}
	s := make([]string, len(p.Nets))
	for i, n := range p.Nets {
		s[i] = n.String()
	}
	return strings.Join(s, ",")
}

// Set parses the flag's text (see PrivateTargets); an error names the
// entry that is neither a boolean nor a prefix or address.
func (p *PrivateTargets) Set(s string) error {
	s = strings.TrimSpace(s)
	if b, err := strconv.ParseBool(s); err == nil {
		*p = PrivateTargets{All: b}
		return nil
	}
	var nets []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		pre, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return fmt.Errorf("%q is not true, false, a CIDR prefix (10.0.0.0/8) or an address", part)
			}
			pre = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		nets = append(nets, pre.Masked())
	}
	if len(nets) == 0 {
		return fmt.Errorf("expected true, false or a comma-separated list of CIDR prefixes")
	}
	*p = PrivateTargets{Nets: nets}
	return nil
}

// Type is the flag's type name in help texts.
func (p *PrivateTargets) Type() string { return "true|false|CIDRs" }
