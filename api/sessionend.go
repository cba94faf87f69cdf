package api

import (
	"context"
	"errors"
)

// StatusSessionEnded is the WebSocket close code (RFC 6455 §7.4.2, private
// range) of a socket the management role closes because the browser
// session it was opened with ended. The close reason says why:
// CloseReasonSignedOut, CloseReasonExpired or CloseReasonEnded. A client
// should not reconnect on it: the session is gone, signing in again is the
// way back.
const StatusSessionEnded = 4401

// Close reasons sent with StatusSessionEnded.
const (
	CloseReasonSignedOut = "signed out"      // POST /api/v1/auth/logout of this session
	CloseReasonExpired   = "session expired" // the session's TTL (--session-ttl) passed
	CloseReasonEnded     = "session ended"   // the session was removed otherwise
)

// SessionEnded is the cancellation cause (context.Cause) of every request
// and socket the management role tied to a session that has ended. Reason
// is the close reason (CloseReasonSignedOut, …).
type SessionEnded struct{ Reason string }

func (e *SessionEnded) Error() string { return "session ended: " + e.Reason }

// SessionEndedCause returns the SessionEnded cause of ctx, if ctx was
// cancelled because its session ended.
func SessionEndedCause(ctx context.Context) (*SessionEnded, bool) {
	var e *SessionEnded
	if ctx.Err() == nil || !errors.As(context.Cause(ctx), &e) {
		return nil, false
	}
	return e, true
}

// StreamHeader carries a random id that the management role's AgentClient
// gives each WebSocket it proxies to a separate agent role, so that it can
// ask the agent role to close that socket with StatusSessionEnded (POST
// /internal/v1/agent/streams/{id}/close).
const StreamHeader = "X-Ocmt-Stream"
