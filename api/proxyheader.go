package api

import "net/http"

// UpstreamRequestIDHeader carries, on an answer proxied to a user's
// container, the request id of the ocmt server that produced it: the
// container's vault, or the agent role when it answered itself. Its log
// lines carry that id. X-Request-Id stays the id of the server the client
// talked to.
const UpstreamRequestIDHeader = "X-Upstream-Request-Id"

// MergeProxiedHeader readies upstream, the header of a proxied answer, to be
// added to own, the header the proxying server has set so far (its security
// headers, Cache-Control and request id): every header own already has is
// dropped from upstream, so the proxying server's value is the one sent,
// once; upstream's X-Request-Id becomes UpstreamRequestIDHeader unless
// upstream already has one from a server further in. The proxying server
// must set no representation header (Content-Type, …) before proxying.
func MergeProxiedHeader(own, upstream http.Header) {
	if id := upstream.Get("X-Request-Id"); id != "" && upstream.Get(UpstreamRequestIDHeader) == "" {
		upstream.Set(UpstreamRequestIDHeader, id)
	}
	upstream.Del("X-Request-Id")
	for k := range upstream {
		if _, ok := own[http.CanonicalHeaderKey(k)]; ok {
			delete(upstream, k)
		}
	}
}
