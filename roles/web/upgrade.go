package web

import (
	"net/http"
	"strings"
)

// HeaderHasToken reports whether any value of header name in h, read as a
// comma-separated list (RFC 9110 §5.6.1), holds token, ignoring ASCII case
// and surrounding whitespace.
func HeaderHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// IsWebSocket reports whether r asks to be upgraded to a WebSocket (RFC 6455
// §4.1): its Connection header lists "upgrade" and its Upgrade header lists
// "websocket", in any case and among any other tokens. This is the rule
// WebSocket servers (coder/websocket's Accept among them) accept a handshake
// by, so every request a server could upgrade is one this reports.
func IsWebSocket(r *http.Request) bool {
	return HeaderHasToken(r.Header, "Connection", "upgrade") && HeaderHasToken(r.Header, "Upgrade", "websocket")
}

// DropUpgrade removes a request for a protocol upgrade from h: the Upgrade
// header and the Connection header that names it. A proxy calls it on a
// request it does not forward as a WebSocket, so that no other protocol
// (h2c, …) is negotiated with the server behind it.
func DropUpgrade(h http.Header) {
	h.Del("Upgrade")
	if HeaderHasToken(h, "Connection", "upgrade") {
		h.Del("Connection")
	}
}
