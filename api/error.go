package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is the one error type handlers return. Msg is safe to show to the
// caller; Err is only logged. On the wire it is
//
//	{"error":{"code":"<snake_case>","message":"<Msg>"}}
//
// with HTTP status Status (SPEC §11). Extra fields, if any, are merged into
// the "error" object (for example "unlockUrl").
type Error struct {
	Status int
	Code   string
	Msg    string
	Extra  map[string]any
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Msg, e.Err)
	}
	return e.Code + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorBody is the JSON form of an Error.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Body returns the JSON body for e.
func (e *Error) Body() map[string]any {
	d := map[string]any{"code": e.Code, "message": e.Msg}
	for k, v := range e.Extra {
		d[k] = v
	}
	return map[string]any{"error": d}
}

// E builds an *Error.
func E(status int, code, msg string) *Error { return &Error{Status: status, Code: code, Msg: msg} }

// Constructors for the common cases.
func BadRequest(code, msg string) *Error { return E(http.StatusBadRequest, code, msg) }
func Unauthorized(msg string) *Error     { return E(http.StatusUnauthorized, "unauthorized", msg) }
func Forbidden(code, msg string) *Error  { return E(http.StatusForbidden, code, msg) }
func NotFound(msg string) *Error         { return E(http.StatusNotFound, "not_found", msg) }
func Conflict(code, msg string) *Error   { return E(http.StatusConflict, code, msg) }
func TooMany(msg string) *Error          { return E(http.StatusTooManyRequests, "rate_limited", msg) }

// InvalidUserID is the 400 answer, code "invalid_user_id", for a user id
// (in a path or body) that store.ParseUserID refuses.
func InvalidUserID() *Error { return BadRequest("invalid_user_id", "invalid user id") }

func Unavailable(code, msg string, err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: code, Msg: msg, Err: err}
}

// AsError returns err as an *Error if it is (or wraps) one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
