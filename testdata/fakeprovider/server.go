package fakeprovider

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Error types accepted in [Reply.ErrorType].
const (
	ErrRateLimit     = "rate_limit"      // 429
	ErrOverloaded    = "overloaded"      // Anthropic 529 overloaded_error; OpenAI 503 server_error
	ErrNotFoundModel = "not_found_model" // 404 with the provider's model-not-found shape
	ErrServer        = "server"          // 500
	ErrAuth          = "auth"            // 401
	ErrBadRequest    = "bad_request"     // 400 invalid_request_error
)

// Reply is one scripted model answer, consumed by one request.
//
// A reply is an error when Status or ErrorType is set; otherwise it streams
// Text (if any) and then ToolCall (if any). The zero Reply answers with an
// empty text.
type Reply struct {
	// Text is the assistant text.
	Text string
	// Chunks splits Text into this many deltas of about equal length (in
	// runes); 0 = one delta per word (each word keeps its trailing spaces, so
	// the deltas concatenate to Text).
	Chunks int
	// ChunkDelay is slept before each delta after the first (text and tool
	// input), to test progressive streaming and aborts; 0 = no delay. The
	// sleep ends early when the client goes away.
	ChunkDelay time.Duration
	// ToolCall, or nil, is a tool call the model makes after Text; the stop
	// reason is then tool_use / tool_calls.
	ToolCall *ToolCallReply
	// Status is the HTTP status of an error reply; 0 = the ErrorType's usual
	// status. A Status below 400 is ignored.
	Status int
	// ErrorType is one of the Err* constants; "" with a Status >= 400 picks
	// a type from the status.
	ErrorType string
	// MidStream sends the error as an in-stream error event after Text has
	// streamed with status 200 (Anthropic "event: error"; OpenAI a data line
	// holding {"error":{...}}), as real providers do when they fail mid-reply.
	// Only for streaming requests; ignored when the reply is not an error.
	MidStream bool
}

// ToolCallReply is a tool call in a scripted [Reply].
type ToolCallReply struct {
	// ID is the tool call id; "" = a generated one ("toolu_fake_N" for
	// Anthropic, "call_fake_N" for OpenAI).
	ID string
	// Name is the tool name.
	Name string
	// Input is marshalled to JSON as the tool's input object; nil = {}.
	// A json.RawMessage is sent as is.
	Input any
}

// Recorded is one request as the server received it.
type Recorded struct {
	// Path is the URL path, such as "/v1/messages".
	Path string
	// Model is the request's "model" field.
	Model string
	// Stream is the request's "stream" field.
	Stream bool
	// Messages is the raw JSON of the request's "messages" array.
	Messages json.RawMessage
	// System is the raw JSON of Anthropic's top-level "system" field, or nil.
	System json.RawMessage
	// Tools is the raw JSON of the request's "tools" array, or nil.
	Tools json.RawMessage
	// Body is the whole request body.
	Body json.RawMessage
	// Headers are the request headers, credentials included (x-api-key,
	// Authorization), so tests can assert which credential arrived.
	Headers http.Header
}

// Server is a fake provider. Its methods are safe for concurrent use.
type Server struct {
	ts *httptest.Server

	mu      sync.Mutex
	key     string   // accepted API key; "" = accept any; guarded by mu
	known   []string // accepted models; nil = any; guarded by mu
	script  []Reply  // guarded by mu
	reqs    []Recorded
	aborted int
	seq     int // id counter; guarded by mu
}

// New starts a fake provider on a loopback port. Close it when done.
func New() *Server {
	s := &Server{}
	s.ts = httptest.NewServer(s.handler())
	return s
}

// NewOn starts a fake provider on l, which it takes over (Close closes it),
// for tests that need a given address, such as a Docker bridge gateway IP
// that containers can reach.
func NewOn(l net.Listener) *Server {
	s := &Server{}
	s.ts = httptest.NewUnstartedServer(s.handler())
	_ = s.ts.Listener.Close()
	s.ts.Listener = l
	s.ts.Start()
	return s
}

// URL is the server's base URL, "http://host:port", without a trailing
// slash. Use it as the Anthropic base URL, and it or URL()+"/v1" as the
// OpenAI base URL.
func (s *Server) URL() string { return s.ts.URL }

// Close stops the server, cutting open streams, and waits for handlers.
func (s *Server) Close() {
	s.ts.CloseClientConnections()
	s.ts.Close()
}

// SetKey sets the one API key the server accepts (Anthropic: x-api-key or
// Authorization: Bearer; OpenAI: Authorization: Bearer); "" (the default)
// accepts any key, or none.
func (s *Server) SetKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key = key
}

// KnownModels limits the models the server accepts; others get 404 with the
// provider's model-not-found error. No arguments (the default) accepts any
// model.
func (s *Server) KnownModels(models ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(models) == 0 {
		s.known = nil
		return
	}
	s.known = slices.Clone(models)
}

// Script queues replies; each request that passes authentication and the
// model check consumes the first one. With the queue empty the server
// echoes.
func (s *Server) Script(replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, replies...)
}

// Pending reports how many scripted replies are still queued.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.script)
}

// Requests returns a copy of every request received so far, oldest first,
// rejected ones included.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// Aborted counts streams the client cut short (it went away before the last
// event was written).
func (s *Server) Aborted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborted
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.serveAnthropic)
	mux.HandleFunc("POST /v1/chat/completions", s.serveOpenAI)
	mux.HandleFunc("POST /chat/completions", s.serveOpenAI)
	return mux
}

// request is the part of a request body both providers share.
type request struct {
	Model    string          `json:"model"`
	Stream   bool            `json:"stream"`
	Messages json.RawMessage `json:"messages"`
	System   json.RawMessage `json:"system"`
	Tools    json.RawMessage `json:"tools"`
}

// record parses and records r's body. ok is false when the body is not JSON.
func (s *Server) record(r *http.Request) (req request, ok bool) {
	var body json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 32<<20)).Decode(&body); err == nil {
		ok = json.Unmarshal(body, &req) == nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, Recorded{
		Path: r.URL.Path, Model: req.Model, Stream: req.Stream,
		Messages: req.Messages, System: req.System, Tools: req.Tools,
		Body: body, Headers: r.Header.Clone(),
	})
	return req, ok
}

// admit checks the key and the model. It returns "" when both pass, else
// ErrAuth or ErrNotFoundModel.
func (s *Server) admit(gotKey, model string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != "" && gotKey != s.key {
		return ErrAuth
	}
	if s.known != nil && !slices.Contains(s.known, model) {
		return ErrNotFoundModel
	}
	return ""
}

// next pops the next scripted reply, or returns "echo: " + echo().
func (s *Server) next(echo func() string) Reply {
	s.mu.Lock()
	if len(s.script) > 0 {
		r := s.script[0]
		s.script = s.script[1:]
		s.mu.Unlock()
		return r
	}
	s.mu.Unlock()
	return Reply{Text: "echo: " + echo()}
}

// nextID returns prefix followed by a fresh counter value.
func (s *Server) nextID(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return fmt.Sprintf("%s%d", prefix, s.seq)
}

func (s *Server) countAbort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted++
}

// errorType returns rp's error type and whether rp is an error reply.
func (rp Reply) errorType() (string, bool) {
	if rp.ErrorType != "" {
		return rp.ErrorType, true
	}
	switch {
	case rp.Status < 400:
		return "", false
	case rp.Status == 401 || rp.Status == 403:
		return ErrAuth, true
	case rp.Status == 404:
		return ErrNotFoundModel, true
	case rp.Status == 429:
		return ErrRateLimit, true
	case rp.Status == 529 || rp.Status == 503:
		return ErrOverloaded, true
	case rp.Status >= 500:
		return ErrServer, true
	default:
		return ErrBadRequest, true
	}
}

// toolInput marshals tc's input; nil = {}.
func (tc *ToolCallReply) toolInput() string {
	if tc.Input == nil {
		return "{}"
	}
	b, err := json.Marshal(tc.Input)
	if err != nil {
		panic(fmt.Sprintf("fakeprovider: tool input does not marshal: %v", err))
	}
	return string(b)
}

// split cuts text into deltas: n pieces of about equal rune length, or one
// per word (with its trailing whitespace) when n <= 0. The pieces concatenate
// to text; an empty text gives no pieces.
func split(text string, n int) []string {
	if text == "" {
		return nil
	}
	if n <= 0 {
		var out []string
		start := 0
		inSpace, seenWord := false, false
		for i, r := range text {
			space := r == ' ' || r == '\n' || r == '\t'
			if !space && inSpace && seenWord {
				out = append(out, text[start:i])
				start = i
			}
			inSpace = space
			seenWord = seenWord || !space
		}
		return append(out, text[start:])
	}
	runes := utf8.RuneCountInString(text)
	if n > runes {
		n = runes
	}
	out := make([]string, 0, n)
	per, extra := runes/n, runes%n
	rest := text
	for i := range n {
		size := per
		if i < extra {
			size++
		}
		cut := 0
		for range size {
			_, w := utf8.DecodeRuneInString(rest[cut:])
			cut += w
		}
		out = append(out, rest[:cut])
		rest = rest[cut:]
	}
	return out
}

// splitJSON cuts a JSON text into up to three pieces, the way providers
// stream tool input (partial_json / arguments fragments).
func splitJSON(js string) []string {
	if len(js) < 3 {
		return []string{js}
	}
	a, b := len(js)/3, 2*len(js)/3
	return []string{js[:a], js[a:b], js[b:]}
}

// sseWriter writes server-sent events and notices a departed client.
type sseWriter struct {
	w     http.ResponseWriter
	r     *http.Request
	f     http.Flusher
	delay time.Duration
	sent  int // deltas sent so far, for delay
	gone  bool
}

func newSSE(w http.ResponseWriter, r *http.Request, delay time.Duration) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	sw := &sseWriter{w: w, r: r, f: f, delay: delay}
	sw.flush()
	return sw
}

func (sw *sseWriter) flush() {
	if sw.f != nil {
		sw.f.Flush()
	}
}

// pace sleeps the delta delay (not before the first delta) and reports
// whether the client is still there.
func (sw *sseWriter) pace() bool {
	if sw.gone {
		return false
	}
	if sw.sent > 0 && sw.delay > 0 {
		t := time.NewTimer(sw.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-sw.r.Context().Done():
			sw.gone = true
			return false
		}
	}
	sw.sent++
	return sw.alive()
}

func (sw *sseWriter) alive() bool {
	if sw.gone || sw.r.Context().Err() != nil {
		sw.gone = true
		return false
	}
	return true
}

// event writes one event: "event: <name>" (when name != "") and
// "data: <JSON of v>" (or v itself when it is a string), then a blank line.
func (sw *sseWriter) event(name string, v any) bool {
	if !sw.alive() {
		return false
	}
	var data string
	if str, ok := v.(string); ok {
		data = str
	} else {
		b, err := json.Marshal(v)
		if err != nil {
			panic(fmt.Sprintf("fakeprovider: event does not marshal: %v", err))
		}
		data = string(b)
	}
	var b strings.Builder
	if name != "" {
		b.WriteString("event: " + name + "\n")
	}
	b.WriteString("data: " + data + "\n\n")
	if _, err := sw.w.Write([]byte(b.String())); err != nil {
		sw.gone = true
		return false
	}
	sw.flush()
	return true
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fixedCreated is the "created" time of every OpenAI object: fixed for
// determinism (unix seconds).
const fixedCreated = 1767225600
