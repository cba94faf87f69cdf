package vault

import (
	"encoding/base64"
	"time"

	"github.com/ocmt/ocmt/api"
)

// Binding of relay envelopes to their sealed payloads, and replay state
// (SPEC §7.1, §7.2; issue 8, item 2).
//
// The relay reads, stores and could rewrite an envelope's header {id,
// from, to, ts, type, jti}; NaCl box authenticates only the sender's key
// and the payload. So every payload a vault seals (capability.grant, .call
// and .result) carries an exact copy of its envelope's header under
// "header", and a vault acts on an envelope only when that sealed copy
// equals the header it was delivered with, names this vault's owner as
// recipient and the expected type, and (grants, calls) the capability
// the header names. Whatever a decision depends on (who, to whom, when,
// which capability, which request) is therefore authenticated end to end.
// A payload without the sealed header (sealed by a version before this
// rule) is refused: code payload_unbound in the log, no answer.
//
// Replay: a call is fresh while its sealed time is at most
// callWait(resource)+staleCallSlack old (40 s for an ordinary resource,
// 2 min 25 s for a model provider key: after that its caller has stopped
// waiting) and at most envClockSkew ahead of this vault's clock. The
// issuer remembers the request id of every call it counted, in the
// capability's sealed record (issuedCap.Seen), until that window has
// passed, so a copy, delivered again with a new envelope id, or byte for
// byte after a restart or relock, is dropped without running or being
// answered. A caller hands a result only to the call waiting for that
// request id, from that call's issuer, for that call's capability, and not
// sealed before the call was sent (less envClockSkew). A grant is stored
// once per jti; records of received capabilities are never deleted, so a
// replayed grant changes nothing.

const (
	// envClockSkew is how far ahead of this vault's clock a sealed time may
	// be (another host's clock), and how much earlier than its call a
	// result may be sealed.
	envClockSkew = time.Minute
	// maxSeenPerCap bounds the request ids remembered per capability.
	// Calls beyond it within the freshness window are refused (capability
	// rate limit) rather than forgotten, which would let a copy run.
	maxSeenPerCap = 1024
)

// Drop codes of envelopes that fail the binding or replay rules (logged).
const (
	codePayloadUnbound = "payload_unbound" // no sealed header: an older version's payload
	codeHeaderMismatch = "header_mismatch" // the sealed header is not the envelope's
	codeStale          = "stale"           // outside the freshness window
	codeReplayed       = "replayed"        // this request id has run already
	codeBadRequestID   = "bad_request_id"
)

// sealedPayload is a payload that carries a copy of its envelope's header.
type sealedPayload interface{ bind(h api.RelayHeader) }

func (p *callPayload) bind(h api.RelayHeader)   { p.Header = h }
func (p *resultPayload) bind(h api.RelayHeader) { p.Header = h }
func (p *grantPayload) bind(h api.RelayHeader)  { p.Header = h }

// checkSealedHeader compares the header sealed in a payload with the
// envelope's: it must be present, equal in every field, of type typ and
// addressed to self. It returns "" or a drop code.
func checkSealedHeader(env *api.RelayEnvelope, sealed *api.RelayHeader, typ, self string) string {
	switch {
	case sealed.ID == "":
		return codePayloadUnbound
	case *sealed != env.Header || sealed.Type != typ || sealed.To != self:
		return codeHeaderMismatch
	}
	return ""
}

// callWindow is how long after its sealed time a call on resource may
// still run (see the comment at the top of this file).
func callWindow(resource string) time.Duration {
	return callWait(resource) + staleCallSlack
}

// fresh reports whether a sealed time tsMs (unix ms) is within window
// before now and at most envClockSkew after it.
func fresh(tsMs int64, now time.Time, window time.Duration) bool {
	age := now.Sub(time.UnixMilli(tsMs))
	return age <= window && age >= -envClockSkew
}

// validRequestID accepts what newRandomID makes: base64url of 16 bytes.
func validRequestID(s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(16) {
		return false
	}
	var b [16]byte
	_, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s))
	return err == nil
}

// pruneSeen forgets, in every issued record of cs, the request ids whose
// window ended before now.
func pruneSeen(cs *capState, now time.Time) {
	ms := now.UnixMilli()
	for _, ic := range cs.Issued {
		for id, until := range ic.Seen {
			if until < ms {
				delete(ic.Seen, id)
			}
		}
		if len(ic.Seen) == 0 {
			ic.Seen = nil
		}
	}
}

// remember records that request id ran on ic, until its call's window
// (from the sealed time tsMs) has passed.
func (ic *issuedCap) remember(id string, tsMs int64) {
	if ic.Seen == nil {
		ic.Seen = map[string]int64{}
	}
	ic.Seen[id] = tsMs + callWindow(ic.Resource).Milliseconds()
}
