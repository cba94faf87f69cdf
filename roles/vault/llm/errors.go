package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Kind classifies a provider failure.
type Kind string

// Error kinds.
const (
	// KindAuth: the provider rejected the key (401, 403).
	KindAuth Kind = "auth"
	// KindRateLimit: too many requests or tokens (429).
	KindRateLimit Kind = "rate_limit"
	// KindUnreachable: no answer: DNS failure, connection refused or reset,
	// timeout, the stream cut short, or the provider down or overloaded
	// (5xx, Anthropic 529).
	KindUnreachable Kind = "unreachable"
	// KindModelNotFound: the provider does not offer the configured model
	// (404, or a 400 that names the model).
	KindModelNotFound Kind = "model_not_found"
	// KindBadRequest: the provider refused the request as malformed (400,
	// 413, 422), e.g. a context too long.
	KindBadRequest Kind = "bad_request"
	// KindProvider: any other provider failure.
	KindProvider Kind = "provider"
)

// Error is a provider failure. Message is readable and safe to show to the
// user: it never holds the API key, and quotes the provider's own words only
// for bad requests and unclassified errors, with the key redacted.
type Error struct {
	// Kind classifies the failure.
	Kind Kind
	// Message is a one-line explanation for the user, e.g.
	// "Anthropic rejected the API key (HTTP 401)".
	Message string
	// Status is the provider's HTTP status, or 0 when none arrived (network
	// failures, or an error event inside a 200 stream).
	Status int
	// Err is the underlying error, for logs only (never for the user), or
	// nil. It may hold the provider's raw response body and request URL, never
	// the key (both SDKs keep request headers out of error texts).
	Err error
}

// Error returns Message.
func (e *Error) Error() string { return e.Message }

// Unwrap returns Err, so errors.Is(err, context.DeadlineExceeded) holds for
// a provider that did not answer before the context deadline.
func (e *Error) Unwrap() error { return e.Err }

// providerError carries what both SDKs' API errors tell us.
type providerError struct {
	status  int    // HTTP status; 200 for an in-stream error event
	typ     string // Anthropic error.type; OpenAI error.type
	code    string // OpenAI error.code; "" for Anthropic
	message string // provider's error.message
	retry   string // Retry-After header, or ""
}

// classify maps a provider API error to an *Error. name is the provider's
// display name; key is redacted from any quoted provider text.
func classify(name, model, key string, pe providerError, cause error) *Error {
	e := &Error{Status: pe.status, Err: cause}
	if pe.status == 200 {
		e.Status = 0
	}
	typ := strings.ToLower(pe.typ)
	code := strings.ToLower(pe.code)
	msgLower := strings.ToLower(pe.message)
	httpNote := ""
	if e.Status != 0 {
		httpNote = fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	switch {
	case pe.status == 401 || pe.status == 403 || typ == "authentication_error" || typ == "permission_error" || code == "invalid_api_key":
		e.Kind = KindAuth
		if pe.status == 403 || typ == "permission_error" {
			e.Message = fmt.Sprintf("%s refused access with this API key%s; check the key's permissions", name, httpNote)
		} else {
			e.Message = fmt.Sprintf("%s rejected the API key%s; check the key in your vault", name, httpNote)
		}
	case pe.status == 429 || typ == "rate_limit_error" || code == "rate_limit_exceeded":
		e.Kind = KindRateLimit
		e.Message = fmt.Sprintf("%s is rate limiting requests%s; try again later", name, httpNote)
		if pe.retry != "" && len(pe.retry) < 12 {
			e.Message = fmt.Sprintf("%s is rate limiting requests%s; try again in %s seconds", name, httpNote, pe.retry)
		}
		if code == "insufficient_quota" || strings.Contains(msgLower, "quota") {
			e.Message = fmt.Sprintf("%s refused the request: the account's quota is used up%s", name, httpNote)
		}
	case pe.status == 404 && typ == "" && code == "" && !mentionsUnknownModel(msgLower):
		// A bare 404 without a provider error body: the base URL is wrong.
		e.Kind = KindProvider
		e.Message = fmt.Sprintf("%s has no chat endpoint at the configured base URL%s; check the base URL", name, httpNote)
	case pe.status == 404 || typ == "not_found_error" || code == "model_not_found" || mentionsUnknownModel(msgLower):
		e.Kind = KindModelNotFound
		e.Message = fmt.Sprintf("%s does not offer the model %q%s; pick another model", name, model, httpNote)
	case pe.status == 529 || typ == "overloaded_error" || pe.status == 503 || strings.Contains(msgLower, "overloaded"):
		e.Kind = KindUnreachable
		e.Message = fmt.Sprintf("%s is overloaded%s; try again in a moment", name, httpNote)
	case pe.status >= 500 || typ == "api_error" || typ == "server_error":
		e.Kind = KindUnreachable
		e.Message = fmt.Sprintf("%s had a server error%s; try again later", name, httpNote)
	case pe.status == 400 || pe.status == 413 || pe.status == 422 || typ == "invalid_request_error" || typ == "request_too_large":
		e.Kind = KindBadRequest
		e.Message = fmt.Sprintf("%s refused the request%s", name, httpNote) + quote(pe.message, key)
	default:
		e.Kind = KindProvider
		e.Message = fmt.Sprintf("%s returned an error%s", name, httpNote) + quote(pe.message, key)
	}
	return e
}

// unknownModel matches the wording OpenAI-compatible servers use for a
// missing model in a 400: OpenRouter "x is not a valid model ID", Ollama
// `model "x" not found`, vLLM "The model `x` does not exist.".
var unknownModel = regexp.MustCompile(`model.*(not found|does not exist|not a valid|invalid model|unknown)|(invalid|unknown) model|not a valid model`)

func mentionsUnknownModel(msgLower string) bool {
	return msgLower != "" && unknownModel.MatchString(msgLower)
}

// keyLike matches strings shaped like API keys, redacted from quoted
// provider text in case a provider echoes a key we did not send verbatim.
var keyLike = regexp.MustCompile(`\b(sk|rk|pk)-[A-Za-z0-9_*.\-]{6,}`)

// quote returns ": <msg>" with key and key-like strings redacted, newlines
// flattened and the length capped at 300 bytes; "" for an empty msg.
func quote(msg, key string) string {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return ""
	}
	if key != "" {
		msg = strings.ReplaceAll(msg, key, "[redacted]")
	}
	msg = keyLike.ReplaceAllString(msg, "[redacted]")
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 300 {
		cut := 300
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return ": " + msg
}

// transportError maps a non-API failure (network, decoding, cancellation).
// It returns ctx.Err() unchanged when ctx is done with context.Canceled.
func transportError(ctx context.Context, name string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return &Error{Kind: KindUnreachable, Err: ctxErr,
				Message: fmt.Sprintf("%s did not answer in time", name)}
		}
		return ctxErr
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	e := &Error{Kind: KindUnreachable, Err: err}
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr):
		e.Message = fmt.Sprintf("cannot reach %s: host not found", name)
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Message = fmt.Sprintf("cannot reach %s: connection refused", name)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		e.Message = fmt.Sprintf("the connection to %s was cut", name)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		e.Message = fmt.Sprintf("%s did not answer in time", name)
	case errors.As(err, &netErr):
		e.Message = fmt.Sprintf("cannot reach %s: network error", name)
	default:
		e.Kind = KindProvider
		e.Message = fmt.Sprintf("%s sent a reply that could not be read", name)
	}
	return e
}

// errTruncated is the cause when a stream ends without its final event.
var errTruncated = errors.New("stream ended before the reply was complete")

func truncatedError(name string) *Error {
	return &Error{Kind: KindUnreachable, Err: errTruncated,
		Message: fmt.Sprintf("the connection to %s closed before the reply was complete", name)}
}
