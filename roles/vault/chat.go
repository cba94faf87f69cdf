package vault

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/vault/llm"
)

// Chat protocol: a compatible subset of the OpenClaw gateway protocol v3
// (SPEC §5.5) over WebSocket JSON text frames:
//
//	request  {"type":"req","id","method","params"}
//	response {"type":"res","id","ok","payload"|"error":{"code","message"}}
//	event    {"type":"event","event","payload","seq"}
//
// The server opens with event connect.challenge {nonce, ts}; the client's
// first request must be connect {minProtocol, maxProtocol, client, role,
// scopes}, answered with hello-ok. Methods: chat.send, chat.history,
// chat.abort, sessions.list, sessions.reset, sessions.delete. Events: chat
// (delta|final|aborted|error, delta text cumulative), agent (tool use, for
// clients that ask), tick.
const (
	ProtocolVersion   = 3
	MaxChatFrameBytes = 256 << 10 // larger frames close the socket (1009)
	MaxMessageRunes   = 32 << 10
	tickInterval      = 15 * time.Second
	historyContext    = 60 // messages sent to the model
	idempotencyTTL    = 10 * time.Minute
)

var chatMethods = []string{"connect", "chat.send", "chat.history", "chat.abort", "sessions.list", "sessions.reset", "sessions.delete"}
var chatEvents = []string{"connect.challenge", "chat", "agent", "tick"}

// Frame is a request frame as decoded from the wire.
type Frame struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// FrameError is the error object of a response.
type FrameError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	UnlockURL string `json:"unlockUrl,omitempty"`
}

func (e *FrameError) Error() string { return e.Code + ": " + e.Message }

func ferr(code, format string, args ...any) *FrameError {
	return &FrameError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// DecodeFrame parses and validates one client frame. It never panics; any
// problem is a *FrameError with code invalid_request. The returned id is
// set when it could be read, so the error can be answered.
func DecodeFrame(data []byte) (Frame, *FrameError) {
	var f Frame
	if !utf8.Valid(data) {
		return f, ferr("invalid_request", "frame is not UTF-8 text")
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return Frame{}, ferr("invalid_request", "frame is not a JSON object of the expected shape")
	}
	switch {
	case f.Type != "req":
		return f, ferr("invalid_request", "type must be \"req\"")
	case f.ID == "" || len(f.ID) > 128:
		return f, ferr("invalid_request", "id must be 1 to 128 characters")
	case f.Method == "" || len(f.Method) > 64:
		return f, ferr("invalid_request", "method missing")
	}
	if len(f.Params) == 0 || string(f.Params) == "null" {
		f.Params = json.RawMessage("{}")
	}
	return f, nil
}

// chatHub holds the runs and the connected clients. Chat events go to every
// connected client of this vault (there is one user per container).
type chatHub struct {
	mu     sync.Mutex
	conns  map[*chatConn]struct{}
	runs   map[string]*run   // by runId
	bySess map[string]string // sessionKey → active runId
	// observe, or nil, sees every event before it is sent (tests only;
	// set before the first connection).
	observe func(name string, payload any)
	idem    map[string]idemEntry
	// idemLoaded: the sealed records (idempotency.go) were merged into
	// idem. persistMu serializes loading and writing them.
	idemLoaded bool
	persistMu  sync.Mutex
	wg         sync.WaitGroup
}

// idemEntry is what chat.send remembers of an idempotency key for
// idempotencyTTL: the run it started and a fingerprint of the request
// (idemFingerprint), so that the same key with another payload is refused
// (idempotency_conflict) instead of answered as a duplicate.
type idemEntry struct {
	runID   string
	fp      [sha256.Size]byte
	state   string // idemRunning, a terminal chat state, or idemInterrupted
	expires time.Time
}

// idemFingerprint is SHA-256 over the fields of a chat.send that decide
// what the run does: the session key and the message, each length-prefixed
// (so "ab"+"c" and "a"+"bc" differ). Only the hash is kept, never the text.
func idemFingerprint(sessionKey, message string) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range []string{sessionKey, message} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// idemLookupLocked answers a chat.send whose idempotency key is already
// known: the original run for the same payload ({runId, status:"started",
// duplicate:true, state}, state as in idempotency.go), idempotency_conflict
// for another one. ok is false when the key is unknown. h.mu held.
func (h *chatHub) idemLookupLocked(key string, fp [sha256.Size]byte) (res any, fe *FrameError, ok bool) {
	e, found := h.idem[key]
	if !found {
		return nil, nil, false
	}
	if subtle.ConstantTimeCompare(e.fp[:], fp[:]) != 1 {
		return nil, ferr("idempotency_conflict", "this idempotencyKey was already used for a different message or session; use a new key"), true
	}
	state := e.state
	if _, live := h.runs[e.runID]; live {
		state = idemRunning
	}
	return map[string]any{"runId": e.runID, "status": "started", "duplicate": true, "state": state}, nil, true
}

type run struct {
	id, sessionKey string
	idemKey        string // "" when sent without one
	cancel         context.CancelFunc
	aborted        atomic.Bool
}

func newChatHub() *chatHub {
	return &chatHub{conns: map[*chatConn]struct{}{}, runs: map[string]*run{}, bySess: map[string]string{}, idem: map[string]idemEntry{}}
}

type chatConn struct {
	s      *Server
	ws     *websocket.Conn
	out    chan []byte
	seq    atomic.Int64
	id     string
	closed chan struct{}
	once   sync.Once
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// chat serves the chat WebSocket.
func (s *Server) chat(c echo.Context) error {
	ws, err := websocket.Accept(c.Response(), c.Request(), &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return nil
	}
	ws.SetReadLimit(MaxChatFrameBytes)
	cc := &chatConn{s: s, ws: ws, out: make(chan []byte, 256), id: randHex(8), closed: make(chan struct{})}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	go cc.writeLoop(ctx)
	cc.event("connect.challenge", map[string]any{"nonce": randHex(16), "ts": time.Now().UnixMilli()})
	connected := false
	defer func() {
		s.hub.mu.Lock()
		delete(s.hub.conns, cc)
		s.hub.mu.Unlock()
		cc.close()
	}()
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			return nil // closed, or the frame was too large (closed with 1009)
		}
		if typ != websocket.MessageText {
			cc.respond("", nil, ferr("invalid_request", "binary frames are not accepted"))
			continue
		}
		f, fe := DecodeFrame(data)
		if fe != nil {
			cc.respond(f.ID, nil, fe)
			continue
		}
		if !connected {
			if f.Method != "connect" {
				cc.refuse(ctx, f.ID, ferr("not_connected", "the first request must be connect"))
				return nil
			}
			payload, fe := s.hello(f.Params)
			if fe != nil {
				cc.refuse(ctx, f.ID, fe)
				return nil
			}
			cc.respond(f.ID, payload, nil)
			connected = true
			s.hub.mu.Lock()
			s.hub.conns[cc] = struct{}{}
			s.hub.mu.Unlock()
			go cc.ticks(ctx)
			continue
		}
		payload, fe := s.dispatch(ctx, f)
		cc.respond(f.ID, payload, fe)
	}
}

func (cc *chatConn) close() {
	cc.once.Do(func() { close(cc.closed) })
}

func (cc *chatConn) writeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-cc.closed:
			return
		case b := <-cc.out:
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := cc.ws.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				cc.close()
				return
			}
		}
	}
}

// send queues a frame; a client too slow to keep 256 frames queued is cut off.
func (cc *chatConn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	select {
	case cc.out <- b:
	case <-cc.closed:
	default:
		cc.ws.Close(websocket.StatusPolicyViolation, "client too slow")
		cc.close()
	}
}

// refuse answers a request with an error and closes the socket (1008),
// writing directly so the answer is not lost to the close.
func (cc *chatConn) refuse(ctx context.Context, id string, fe *FrameError) {
	b, _ := json.Marshal(map[string]any{"type": "res", "id": id, "ok": false, "error": fe})
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = cc.ws.Write(wctx, websocket.MessageText, b)
	cancel()
	cc.ws.Close(websocket.StatusPolicyViolation, fe.Message)
}

func (cc *chatConn) respond(id string, payload any, fe *FrameError) {
	if fe != nil {
		cc.send(map[string]any{"type": "res", "id": id, "ok": false, "error": fe})
		return
	}
	if payload == nil {
		payload = map[string]any{}
	}
	cc.send(map[string]any{"type": "res", "id": id, "ok": true, "payload": payload})
}

func (cc *chatConn) event(name string, payload any) {
	cc.send(map[string]any{"type": "event", "event": name, "payload": payload, "seq": cc.seq.Add(1)})
}

func (cc *chatConn) ticks(ctx context.Context) {
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-cc.closed:
			return
		case now := <-t.C:
			cc.event("tick", map[string]any{"ts": now.UnixMilli()})
		}
	}
}

// broadcast sends an event to every connected client.
func (s *Server) broadcast(name string, payload any) {
	if f := s.hub.observe; f != nil {
		f(name, payload)
	}
	s.hub.mu.Lock()
	conns := make([]*chatConn, 0, len(s.hub.conns))
	for c := range s.hub.conns {
		conns = append(conns, c)
	}
	s.hub.mu.Unlock()
	for _, c := range conns {
		c.event(name, payload)
	}
}

func (s *Server) hello(params json.RawMessage) (any, *FrameError) {
	var p struct {
		MinProtocol int `json:"minProtocol"`
		MaxProtocol int `json:"maxProtocol"`
		Client      struct {
			ID       string `json:"id"`
			Version  string `json:"version"`
			Platform string `json:"platform"`
			Mode     string `json:"mode"`
		} `json:"client"`
		Role   string   `json:"role"`
		Scopes []string `json:"scopes"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, ferr("invalid_request", "connect params malformed")
	}
	if p.MinProtocol > ProtocolVersion || p.MaxProtocol < ProtocolVersion {
		return nil, ferr("protocol_mismatch", "this server speaks protocol %d", ProtocolVersion)
	}
	return map[string]any{
		"type":     "hello-ok",
		"protocol": ProtocolVersion,
		"server":   map[string]any{"version": s.version, "connId": randHex(8)},
		"features": map[string]any{"methods": chatMethods, "events": chatEvents},
		"policy":   map[string]any{"tickIntervalMs": tickInterval.Milliseconds(), "maxPayload": MaxChatFrameBytes},
	}, nil
}

func (s *Server) dispatch(ctx context.Context, f Frame) (any, *FrameError) {
	switch f.Method {
	case "chat.send":
		return s.chatSend(f.Params)
	case "chat.history":
		return s.chatHistory(f.Params)
	case "chat.abort":
		return s.chatAbort(f.Params)
	case "sessions.list":
		return s.sessionsList()
	case "sessions.reset", "sessions.delete":
		return s.sessionsDelete(f.Params)
	case "connect":
		return nil, ferr("invalid_request", "already connected")
	}
	return nil, ferr("unknown_method", "unknown method")
}

var sessionKeyOK = func(k string) bool {
	if k == "" || len(k) > 200 || !utf8.ValidString(k) {
		return false
	}
	return !strings.ContainsAny(k, "\x00\r\n")
}

// unlocked returns a copy of the transcript key and the chat provider (nil
// when none is configured), or a vault_locked error. It counts as vault use.
func (s *Server) unlocked() (crypto.SubKey, *chatProvider, *FrameError) {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		if ae, ok := api.AsError(err); ok {
			return crypto.SubKey{}, nil, &FrameError{Code: ae.Code, Message: ae.Msg, UnlockURL: unlockURL(s.publicURL)}
		}
		return crypto.SubKey{}, nil, ferr("internal", "vault unavailable")
	}
	return *k.tkey, s.chatProviderLocked(), nil
}

func (s *Server) chatSend(params json.RawMessage) (any, *FrameError) {
	var p struct {
		SessionKey     string `json:"sessionKey"`
		Message        string `json:"message"`
		IdempotencyKey string `json:"idempotencyKey"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, ferr("invalid_request", "chat.send params malformed")
	}
	if !sessionKeyOK(p.SessionKey) {
		return nil, ferr("invalid_request", "sessionKey must be 1 to 200 characters")
	}
	if strings.TrimSpace(p.Message) == "" || utf8.RuneCountInString(p.Message) > MaxMessageRunes {
		return nil, ferr("invalid_request", "message must be 1 to %d characters", MaxMessageRunes)
	}
	if len(p.IdempotencyKey) > 128 {
		return nil, ferr("invalid_request", "idempotencyKey too long")
	}
	h := s.hub
	h.mu.Lock()
	now := time.Now()
	for k, e := range h.idem {
		if now.After(e.expires) {
			delete(h.idem, k)
		}
	}
	fp := idemFingerprint(p.SessionKey, p.Message)
	if p.IdempotencyKey != "" {
		if res, fe, ok := h.idemLookupLocked(p.IdempotencyKey, fp); ok {
			h.mu.Unlock()
			return res, fe
		}
	}
	if _, busy := h.bySess[p.SessionKey]; busy {
		h.mu.Unlock()
		return nil, ferr("busy", "a reply is still being written in this session; wait or abort it")
	}
	h.mu.Unlock()

	tkey, provider, fe := s.unlocked()
	if fe != nil {
		return nil, fe
	}
	if p.IdempotencyKey != "" { // the key may predate this process
		s.idemLoad(&tkey)
		h.mu.Lock()
		res, fe, ok := h.idemLookupLocked(p.IdempotencyKey, fp)
		h.mu.Unlock()
		if ok {
			clear(tkey[:])
			return res, fe
		}
	}
	if provider == nil {
		return nil, ferr("no_provider", "add a model provider API key first")
	}
	if provider.shared != nil {
		if msg := provider.shared.unusable(); msg != "" {
			clear(tkey[:])
			return nil, ferr("shared_provider_unavailable", "%s", msg)
		}
	}
	ctx, cancel := context.WithCancel(s.base)
	r := &run{id: "run_" + randHex(8), sessionKey: p.SessionKey, cancel: cancel}
	h.mu.Lock()
	if p.IdempotencyKey != "" { // a concurrent send with this key got here first
		if res, fe, ok := h.idemLookupLocked(p.IdempotencyKey, fp); ok {
			h.mu.Unlock()
			cancel()
			return res, fe
		}
	}
	if _, busy := h.bySess[p.SessionKey]; busy { // lost a race
		h.mu.Unlock()
		cancel()
		return nil, ferr("busy", "a reply is still being written in this session")
	}
	// Registered before the message is stored, so a send that loses a
	// race (same key, busy session) stores nothing.
	h.runs[r.id], h.bySess[p.SessionKey] = r, r.id
	if p.IdempotencyKey != "" {
		h.idem[p.IdempotencyKey] = idemEntry{runID: r.id, fp: fp, state: idemRunning, expires: now.Add(idempotencyTTL)}
		r.idemKey = p.IdempotencyKey
	}
	h.wg.Add(1)
	h.mu.Unlock()
	release := func() { // idempotent
		h.mu.Lock()
		delete(h.runs, r.id)
		delete(h.bySess, r.sessionKey)
		h.mu.Unlock()
	}
	if err := s.transcripts.Append(&tkey, p.SessionKey, Message{Role: "user", Text: p.Message, Timestamp: time.Now().UnixMilli()}); err != nil {
		s.log.Error("append transcript", "err", err)
		h.mu.Lock()
		if e, ok := h.idem[r.idemKey]; ok && e.runID == r.id {
			delete(h.idem, r.idemKey) // nothing was done; the key may be retried
		}
		h.mu.Unlock()
		release()
		cancel()
		h.wg.Done()
		clear(tkey[:])
		return nil, ferr("internal", "could not store your message")
	}
	if r.idemKey != "" { // before the model is asked, so a stop cannot lose it
		if err := s.idemSave(&tkey); err != nil {
			s.log.Error("save idempotency records", "err", err)
		}
	}
	// The run holds the container awake while it lasts (work.go).
	endWork := s.inflight.begin()
	go func() {
		defer h.wg.Done()
		defer endWork()
		defer cancel()
		defer release()
		s.runChat(ctx, r, tkey, provider, release)
	}()
	return map[string]any{"runId": r.id, "status": "started"}, nil
}

func assistantMessage(text string) map[string]any {
	return map[string]any{"role": "assistant", "content": []map[string]string{{"type": "text", "text": text}}, "timestamp": time.Now().UnixMilli()}
}

// runChat streams the model's reply for one run and persists it. On a
// shared provider key the reply is requested whole (see sharedprovider.go)
// and arrives as one delta. release frees the session; it is called before
// the terminal event (final, aborted, error), so a client may send its next
// message as soon as it sees that event.
func (s *Server) runChat(ctx context.Context, r *run, tkey crypto.SubKey, provider *chatProvider, release func()) {
	defer func() {
		for i := range tkey {
			tkey[i] = 0
		}
	}()
	var seq int64
	emitChat := func(state, text, errMsg string) {
		seq++
		p := map[string]any{"runId": r.id, "sessionKey": r.sessionKey, "seq": seq, "state": state, "message": assistantMessage(text)}
		if errMsg != "" {
			p["errorMessage"] = errMsg
		}
		if state != "delta" {
			if r.idemKey != "" {
				s.idemFinish(&tkey, r.idemKey, r.id, state)
			}
			release()
		}
		s.broadcast("chat", p)
	}
	history, err := s.transcripts.Read(&tkey, r.sessionKey)
	if err != nil {
		emitChat("error", "", "could not read this conversation")
		return
	}
	cfg := llm.Config{Provider: provider.name, APIKey: provider.key.Key, BaseURL: provider.key.BaseURL, Model: provider.key.Model, HTTPClient: s.providerHTTP}
	msgs := toLLM(history)
	if provider.shared != nil {
		cfg = s.sharedLLMConfig(provider.shared)
		msgs = fitHistory(msgs, sharedHistoryBytes)
	}
	client, err := llm.New(cfg)
	if err != nil {
		emitChat("error", "", "the model provider is not configured correctly")
		return
	}
	req := llm.Request{System: systemPrompt, Messages: msgs, Tools: s.toolSpecs(), MaxTokens: 4096}
	var text strings.Builder
	emit := func(ev llm.Event) error {
		if ev.TextDelta != "" {
			text.WriteString(ev.TextDelta)
			emitChat("delta", text.String(), "")
		}
		if ev.ToolResult != nil && text.Len() > 0 {
			text.WriteString("\n\n") // the next turn's text starts a new paragraph
		}
		if ev.ToolCall != nil {
			s.broadcast("agent", map[string]any{"runId": r.id, "sessionKey": r.sessionKey, "stream": "tool", "data": map[string]any{"name": ev.ToolCall.Name, "phase": "start"}})
		}
		return nil
	}
	added, err := llm.RunTools(ctx, client, req, s.toolFuncs(), emit, 5)
	now := time.Now().UnixMilli()
	for _, m := range added {
		if err := s.transcripts.Append(&tkey, r.sessionKey, fromLLM(m, now)); err != nil {
			s.log.Error("append transcript", "err", err)
		}
	}
	switch {
	case r.aborted.Load() || errors.Is(err, context.Canceled):
		if text.Len() > 0 && len(added) == 0 {
			_ = s.transcripts.Append(&tkey, r.sessionKey, Message{Role: "assistant", Text: text.String(), Aborted: true, Timestamp: now})
		}
		emitChat("aborted", text.String(), "")
	case err != nil && provider.shared != nil:
		emitChat("error", text.String(), sharedChatError(err, provider.shared))
	case err != nil:
		emitChat("error", text.String(), readableLLMError(err))
	default:
		emitChat("final", text.String(), "")
	}
}

const systemPrompt = "You are the user's personal agent, running in their own private container on ocmt. " +
	"Be concise and helpful. Use the ocmt_ tools when the user asks about their vault."

func readableLLMError(err error) string {
	var le *llm.Error
	if errors.As(err, &le) {
		return le.Message
	}
	return "the model provider failed; try again"
}

func toLLM(h []Message) []llm.Message {
	if len(h) > historyContext {
		h = h[len(h)-historyContext:]
		for len(h) > 0 && h[0].Role == "tool" { // never start with an orphan tool result
			h = h[1:]
		}
	}
	out := make([]llm.Message, 0, len(h))
	for _, m := range h {
		lm := llm.Message{Role: m.Role, Text: m.Text, ToolCallID: m.ToolCallID, ToolName: m.ToolName}
		if len(m.ToolCalls) > 0 {
			_ = json.Unmarshal(m.ToolCalls, &lm.ToolCalls)
		}
		out = append(out, lm)
	}
	return out
}

func fromLLM(m llm.Message, ts int64) Message {
	out := Message{Role: m.Role, Text: m.Text, ToolCallID: m.ToolCallID, ToolName: m.ToolName, Timestamp: ts}
	if len(m.ToolCalls) > 0 {
		out.ToolCalls, _ = json.Marshal(m.ToolCalls)
	}
	return out
}

func (s *Server) chatHistory(params json.RawMessage) (any, *FrameError) {
	var p struct {
		SessionKey string `json:"sessionKey"`
		Limit      int    `json:"limit"`
	}
	if err := json.Unmarshal(params, &p); err != nil || !sessionKeyOK(p.SessionKey) {
		return nil, ferr("invalid_request", "chat.history needs a sessionKey")
	}
	if p.Limit <= 0 || p.Limit > 1000 {
		p.Limit = 200
	}
	tkey, _, fe := s.unlocked()
	if fe != nil {
		return nil, fe
	}
	msgs, err := s.transcripts.Read(&tkey, p.SessionKey)
	clear(tkey[:])
	if err != nil {
		s.log.Error("read transcript", "err", err)
		return nil, ferr("internal", "could not read this conversation")
	}
	out := []map[string]any{}
	for _, m := range msgs {
		if (m.Role != "user" && m.Role != "assistant") || m.Text == "" {
			continue
		}
		out = append(out, map[string]any{"role": m.Role, "content": []map[string]string{{"type": "text", "text": m.Text}}, "timestamp": m.Timestamp})
	}
	if len(out) > p.Limit {
		out = out[len(out)-p.Limit:]
	}
	return map[string]any{"sessionKey": p.SessionKey, "messages": out}, nil
}

func (s *Server) chatAbort(params json.RawMessage) (any, *FrameError) {
	var p struct {
		SessionKey string `json:"sessionKey"`
		RunID      string `json:"runId"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, ferr("invalid_request", "chat.abort params malformed")
	}
	s.hub.mu.Lock()
	id := p.RunID
	if id == "" {
		id = s.hub.bySess[p.SessionKey]
	}
	r := s.hub.runs[id]
	s.hub.mu.Unlock()
	if r == nil || (p.SessionKey != "" && r.sessionKey != p.SessionKey) {
		return map[string]any{"aborted": false}, nil
	}
	r.aborted.Store(true)
	r.cancel()
	return map[string]any{"aborted": true, "runId": r.id}, nil
}

// abortAllRuns stops every run (the vault was locked).
func (s *Server) abortAllRuns() {
	s.hub.mu.Lock()
	for _, r := range s.hub.runs {
		r.aborted.Store(true)
		r.cancel()
	}
	s.hub.mu.Unlock()
}

func (s *Server) sessionsList() (any, *FrameError) {
	tkey, _, fe := s.unlocked()
	if fe != nil {
		return nil, fe
	}
	list, err := s.transcripts.List(&tkey)
	clear(tkey[:])
	if err != nil {
		return nil, ferr("internal", "could not list sessions")
	}
	if list == nil {
		list = []SessionInfo{}
	}
	return map[string]any{"sessions": list}, nil
}

func (s *Server) sessionsDelete(params json.RawMessage) (any, *FrameError) {
	var p struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(params, &p); err != nil || !sessionKeyOK(p.Key) {
		return nil, ferr("invalid_request", "needs a session key")
	}
	s.hub.mu.Lock()
	_, busy := s.hub.bySess[p.Key]
	s.hub.mu.Unlock()
	if busy {
		return nil, ferr("busy", "abort the running reply first")
	}
	tkey, _, fe := s.unlocked()
	if fe != nil {
		return nil, fe
	}
	err := s.transcripts.Delete(&tkey, p.Key)
	clear(tkey[:])
	if err != nil {
		return nil, ferr("internal", "could not delete the session")
	}
	return map[string]any{"ok": true, "key": p.Key}, nil
}
