package web

import (
	"net/url"
	"strings"
)

// Origin is a serialised web origin (RFC 6454 §6.1): scheme, host and port,
// normalised (lower case, the default port — 80 for http, 443 for https —
// written out). The zero Origin matches nothing.
type Origin struct {
	scheme, host, port string
}

// ParseOrigin returns the origin of an http(s) URL such as the public URL
// ("https://ocmt.example.org", "http://127.0.0.1:8080/"), ignoring any path.
// ok is false for anything else.
func ParseOrigin(raw string) (o Origin, ok bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil {
		return Origin{}, false
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	switch {
	case scheme == "http" && port == "":
		port = "80"
	case scheme == "https" && port == "":
		port = "443"
	case scheme != "http" && scheme != "https":
		return Origin{}, false
	}
	host := strings.ToLower(u.Hostname())
	if host == "" || strings.Trim(port, "0123456789") != "" || len(port) > 5 {
		return Origin{}, false
	}
	if port = strings.TrimLeft(port, "0"); port == "" {
		port = "0"
	}
	return Origin{scheme: scheme, host: host, port: port}, true
}

// String returns the origin as scheme://host:port, "" for the zero Origin.
func (o Origin) String() string {
	if o.scheme == "" {
		return ""
	}
	h := o.host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return o.scheme + "://" + h + ":" + o.port
}

// Matches reports whether header, the value of a request's Origin header,
// names this origin: the same scheme, host (ASCII case-insensitive) and
// port, a missing port standing for the scheme's default. An empty header,
// "null", anything with a path, query, fragment or user info, and every
// value for the zero Origin do not match. This is ocmt's one origin rule:
// the CSRF check and WebSocket upgrades use it alike, and neither the
// request's Host nor X-Forwarded-* headers take part.
func (o Origin) Matches(header string) bool {
	if o.scheme == "" || header == "" || header == "null" {
		return false
	}
	u, err := url.Parse(header)
	if err != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(header, "#") {
		return false
	}
	h, ok := ParseOrigin(header)
	return ok && h == o
}
