package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
)

type chatClient struct {
	t    *testing.T
	ws   *websocket.Conn
	ctx  context.Context
	n    int
	seen []map[string]any // frames read but not yet consumed
}

func (v *tv) dialChat() *chatClient {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	v.t.Cleanup(cancel)
	ws, _, err := websocket.Dial(ctx, strings.Replace(v.srv.URL, "http", "ws", 1)+"/chat",
		&websocket.DialOptions{HTTPHeader: http.Header{api.ContainerSecretHeader: {testSecret}}})
	if err != nil {
		v.t.Fatal(err)
	}
	v.t.Cleanup(func() { ws.CloseNow() })
	ws.SetReadLimit(4 << 20)
	return &chatClient{t: v.t, ws: ws, ctx: ctx}
}

func (c *chatClient) read() map[string]any {
	c.t.Helper()
	if len(c.seen) > 0 {
		f := c.seen[0]
		c.seen = c.seen[1:]
		return f
	}
	_, b, err := c.ws.Read(c.ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("server sent non-JSON: %q", b)
	}
	return f
}

func (c *chatClient) writeRaw(s string) {
	c.t.Helper()
	if err := c.ws.Write(c.ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// call sends a request and returns its response, keeping events for later.
func (c *chatClient) call(method string, params any) map[string]any {
	c.t.Helper()
	c.n++
	id := "r" + string(rune('a'+c.n%26)) + strings.Repeat("x", c.n/26)
	b, _ := json.Marshal(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	c.writeRaw(string(b))
	var kept []map[string]any
	for {
		f := c.read()
		if f["type"] == "res" && f["id"] == id {
			c.seen = append(kept, c.seen...)
			return f
		}
		kept = append(kept, f)
	}
}

func (c *chatClient) connect() {
	c.t.Helper()
	if f := c.read(); f["event"] != "connect.challenge" {
		c.t.Fatalf("first frame %v", f)
	}
	res := c.call("connect", map[string]any{"minProtocol": 3, "maxProtocol": 3,
		"client": map[string]any{"id": "test", "version": "1", "platform": "go", "mode": "test"}, "role": "operator", "scopes": []string{}})
	if res["ok"] != true || res["payload"].(map[string]any)["type"] != "hello-ok" {
		c.t.Fatalf("connect: %v", res)
	}
}

// events reads chat events of runID until a terminal state.
func (c *chatClient) events(runID string) []map[string]any {
	c.t.Helper()
	var out []map[string]any
	for {
		f := c.read()
		if f["type"] != "event" || f["event"] != "chat" {
			continue
		}
		p := f["payload"].(map[string]any)
		if p["runId"] != runID {
			continue
		}
		out = append(out, p)
		switch p["state"] {
		case "final", "aborted", "error":
			return out
		}
	}
}

func text(p map[string]any) string {
	m, _ := p["message"].(map[string]any)
	cs, _ := m["content"].([]any)
	if len(cs) == 0 {
		return ""
	}
	return cs[0].(map[string]any)["text"].(string)
}

func setupChat(t *testing.T) (*tv, *fakeprovider.Server) {
	v := newTestVault(t, "")
	v.create("correct horse battery staple")
	fp := fakeprovider.New()
	t.Cleanup(fp.Close)
	fp.SetKey("sk-ant-test")
	if st, b := v.do("PUT", "/vault/apikeys/anthropic", map[string]string{"key": "sk-ant-test", "baseUrl": fp.URL()}); st != 200 {
		t.Fatalf("put key: %d %v", st, b)
	}
	return v, fp
}

func TestChatStreamsAndPersists(t *testing.T) {
	v, fp := setupChat(t)
	fp.Script(fakeprovider.Reply{Text: "Hello there, how can I help you today?"})
	c := v.dialChat()
	c.connect()
	res := c.call("chat.send", map[string]any{"sessionKey": "main", "message": "hi", "idempotencyKey": "k1"})
	if res["ok"] != true {
		t.Fatalf("chat.send: %v", res)
	}
	runID := res["payload"].(map[string]any)["runId"].(string)
	evs := c.events(runID)
	last := evs[len(evs)-1]
	if last["state"] != "final" || text(last) != "Hello there, how can I help you today?" {
		t.Fatalf("final: %v", last)
	}
	if len(evs) < 3 {
		t.Fatalf("expected several deltas, got %d events", len(evs))
	}
	prev := ""
	for _, e := range evs[:len(evs)-1] {
		if e["state"] != "delta" || !strings.HasPrefix(text(e), prev) {
			t.Fatalf("deltas must be cumulative: %q then %v", prev, e)
		}
		prev = text(e)
	}
	// Same idempotency key → same run, no second model call.
	dup := c.call("chat.send", map[string]any{"sessionKey": "main", "message": "hi", "idempotencyKey": "k1"})
	if dup["payload"].(map[string]any)["runId"] != runID || len(fp.Requests()) != 1 {
		t.Fatalf("idempotency: %v, %d requests", dup, len(fp.Requests()))
	}
	// History survives a restart of the vault (sealed on disk).
	v.do("POST", "/vault/lock", nil)
	v2 := newTestVault(t, v.dir)
	v2.unlockWith(v2.derive("correct horse battery staple"))
	c2 := v2.dialChat()
	c2.connect()
	h := c2.call("chat.history", map[string]any{"sessionKey": "main"})
	msgs := h["payload"].(map[string]any)["messages"].([]any)
	if len(msgs) != 2 || text(map[string]any{"message": msgs[1]}) != "Hello there, how can I help you today?" {
		t.Fatalf("history: %v", h)
	}
	l := c2.call("sessions.list", map[string]any{})
	if !strings.Contains(mustJSON(l), `"key":"main"`) || !strings.Contains(mustJSON(l), `"title":"hi"`) {
		t.Fatalf("sessions.list: %v", l)
	}
	assertNoPlaintext(t, v.dir, "Hello there, how can I help", "sk-ant-test")
}

func TestChatAbortAndToolsAndErrors(t *testing.T) {
	v, fp := setupChat(t)
	c := v.dialChat()
	c.connect()

	// Abort stops a slow stream.
	fp.Script(fakeprovider.Reply{Text: strings.Repeat("word ", 200), ChunkDelay: 20 * time.Millisecond})
	res := c.call("chat.send", map[string]any{"sessionKey": "s1", "message": "long please", "idempotencyKey": "a1"})
	runID := res["payload"].(map[string]any)["runId"].(string)
	// wait for the first delta, then abort
	for {
		f := c.read()
		if f["event"] == "chat" && f["payload"].(map[string]any)["state"] == "delta" {
			break
		}
	}
	ab := c.call("chat.abort", map[string]any{"sessionKey": "s1", "runId": runID})
	if ab["payload"].(map[string]any)["aborted"] != true {
		t.Fatalf("abort: %v", ab)
	}
	evs := c.events(runID)
	if evs[len(evs)-1]["state"] != "aborted" {
		t.Fatalf("after abort: %v", evs[len(evs)-1])
	}
	deadline := time.Now().Add(5 * time.Second)
	for fp.Aborted() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if fp.Aborted() == 0 {
		t.Fatal("the provider stream was not cut")
	}

	// A tool call round trip: the model asks for the vault status.
	fp.Script(fakeprovider.Reply{ToolCall: &fakeprovider.ToolCallReply{Name: "ocmt_vault_status", Input: map[string]any{}}},
		fakeprovider.Reply{Text: "Your vault is unlocked."})
	res = c.call("chat.send", map[string]any{"sessionKey": "s2", "message": "is my vault open?", "idempotencyKey": "t1"})
	evs = c.events(res["payload"].(map[string]any)["runId"].(string))
	if last := evs[len(evs)-1]; last["state"] != "final" || !strings.Contains(text(last), "unlocked") {
		t.Fatalf("tool run: %v", last)
	}
	reqs := fp.Requests()
	if !strings.Contains(string(reqs[len(reqs)-1].Messages), `\"locked\":false`) && !strings.Contains(string(reqs[len(reqs)-1].Messages), `"locked":false`) {
		t.Fatalf("tool result did not reach the model: %s", reqs[len(reqs)-1].Messages)
	}

	// A rejected key reaches the user as readable text.
	fp.Script(fakeprovider.Reply{Status: 401})
	res = c.call("chat.send", map[string]any{"sessionKey": "s3", "message": "hello", "idempotencyKey": "e1"})
	evs = c.events(res["payload"].(map[string]any)["runId"].(string))
	last := evs[len(evs)-1]
	if last["state"] != "error" || !strings.Contains(strings.ToLower(last["errorMessage"].(string)), "key") {
		t.Fatalf("provider error: %v", last)
	}

	// Locked vault → vault_locked with an unlock link.
	v.do("POST", "/vault/lock", nil)
	res = c.call("chat.send", map[string]any{"sessionKey": "s1", "message": "hello", "idempotencyKey": "l1"})
	e, _ := res["error"].(map[string]any)
	if res["ok"] != false || e["code"] != "vault_locked" || e["unlockUrl"] == "" {
		t.Fatalf("locked: %v", res)
	}
}

func TestChatMalformedFrames(t *testing.T) {
	v, _ := setupChat(t)
	c := v.dialChat()
	// Requests before connect are refused and the socket closed.
	c.read()
	r := c.call("chat.send", map[string]any{"sessionKey": "x", "message": "hi"})
	if r["ok"] != false {
		t.Fatalf("before connect: %v", r)
	}
	c = v.dialChat()
	c.connect()
	for _, raw := range []string{`not json`, `{"type":"res","id":"1"}`, `{"type":"req","method":"chat.send"}`, `[]`, `{"type":"req","id":"z","method":"nope"}`,
		`{"type":"req","id":"y","method":"chat.send","params":{"sessionKey":"","message":"x"}}`,
		`{"type":"req","id":"w","method":"chat.send","params":"oops"}`} {
		c.writeRaw(raw)
		f := c.read()
		if f["type"] != "res" || f["ok"] != false {
			t.Fatalf("malformed %s: %v", raw, f)
		}
	}
	// Still alive.
	if r := c.call("sessions.list", map[string]any{}); r["ok"] != true {
		t.Fatalf("after malformed frames: %v", r)
	}
	// An oversized frame closes the socket with 1009.
	c.writeRaw(`{"type":"req","id":"big","method":"chat.send","params":{"message":"` + strings.Repeat("a", MaxChatFrameBytes) + `"}}`)
	_, _, err := c.ws.Read(c.ctx)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("oversized frame: %v", err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{`{"type":"req","id":"1","method":"connect","params":{}}`, `{}`, `[]`, `null`, `{"type":"req","id":"","method":""}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, fe := DecodeFrame(b)
		if fe == nil && (fr.Type != "req" || fr.ID == "" || fr.Method == "" || len(fr.Params) == 0) {
			t.Fatalf("accepted invalid frame %q: %+v", b, fr)
		}
	})
}

// TestTerminalEventFreesSession: when a client sees final, error or
// aborted, the session is already free, so its next chat.send is not
// refused as busy (the session used to be released after the event).
func TestTerminalEventFreesSession(t *testing.T) {
	v, fp := setupChat(t)
	var mu sync.Mutex
	var busyAtEnd []string
	v.s.hub.observe = func(name string, payload any) {
		p, _ := payload.(map[string]any)
		if name != "chat" || p["state"] == "delta" {
			return
		}
		v.s.hub.mu.Lock()
		_, busy := v.s.hub.bySess[p["sessionKey"].(string)]
		v.s.hub.mu.Unlock()
		if busy {
			mu.Lock()
			busyAtEnd = append(busyAtEnd, p["state"].(string))
			mu.Unlock()
		}
	}
	c := v.dialChat()
	c.connect()
	send := func(key string) string {
		res := c.call("chat.send", map[string]any{"sessionKey": "main", "message": "hi", "idempotencyKey": key})
		if res["ok"] != true {
			t.Fatalf("chat.send %s: %v", key, res)
		}
		return res["payload"].(map[string]any)["runId"].(string)
	}
	fp.Script(fakeprovider.Reply{Text: "one"})
	c.events(send("k1"))
	fp.Script(fakeprovider.Reply{Status: 401})
	c.events(send("k2")) // error
	fp.Script(fakeprovider.Reply{Text: strings.Repeat("word ", 200), ChunkDelay: 20 * time.Millisecond})
	run := send("k3")
	c.call("chat.abort", map[string]any{"sessionKey": "main", "runId": run})
	c.events(run)
	fp.Script(fakeprovider.Reply{Text: "two"})
	if evs := c.events(send("k4")); evs[len(evs)-1]["state"] != "final" {
		t.Fatalf("last turn: %v", evs[len(evs)-1])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(busyAtEnd) > 0 {
		t.Fatalf("session still busy when these events went out: %v", busyAtEnd)
	}
}

// TestChatIdempotencyConflict: ocmt issue 8 item 7. The same idempotency
// key with the same payload returns the original run (no second model
// call); with another message or another session it is refused with
// idempotency_conflict instead of being answered as a duplicate of a run
// that did something else. A fresh key still works.
func TestChatIdempotencyConflict(t *testing.T) {
	v, fp := setupChat(t)
	fp.Script(fakeprovider.Reply{Text: "first answer"})
	c := v.dialChat()
	c.connect()
	res := c.call("chat.send", map[string]any{"sessionKey": "main", "message": "what is 2+2?", "idempotencyKey": "idem-1"})
	if res["ok"] != true {
		t.Fatalf("chat.send: %v", res)
	}
	runID := res["payload"].(map[string]any)["runId"].(string)
	c.events(runID)

	dup := c.call("chat.send", map[string]any{"sessionKey": "main", "message": "what is 2+2?", "idempotencyKey": "idem-1"})
	if dup["ok"] != true || dup["payload"].(map[string]any)["runId"] != runID {
		t.Fatalf("same key, same payload: %v", dup)
	}
	for name, params := range map[string]map[string]any{
		"other message": {"sessionKey": "main", "message": "delete all my files", "idempotencyKey": "idem-1"},
		"other session": {"sessionKey": "other", "message": "what is 2+2?", "idempotencyKey": "idem-1"},
		"split moved":   {"sessionKey": "mai", "message": "nwhat is 2+2?", "idempotencyKey": "idem-1"},
	} {
		r := c.call("chat.send", params)
		e, _ := r["error"].(map[string]any)
		if r["ok"] != false || e["code"] != "idempotency_conflict" {
			t.Errorf("%s: %v, want idempotency_conflict", name, r)
		}
	}
	if n := len(fp.Requests()); n != 1 {
		t.Fatalf("%d model calls, want 1", n)
	}
	// Refused sends stored nothing.
	h := c.call("chat.history", map[string]any{"sessionKey": "main"})
	if msgs := h["payload"].(map[string]any)["messages"].([]any); len(msgs) != 2 {
		t.Fatalf("history has %d messages, want 2: %v", len(msgs), msgs)
	}
	fp.Script(fakeprovider.Reply{Text: "second answer"})
	r := c.call("chat.send", map[string]any{"sessionKey": "main", "message": "delete all my files", "idempotencyKey": "idem-2"})
	if r["ok"] != true || r["payload"].(map[string]any)["runId"] == runID {
		t.Fatalf("fresh key: %v", r)
	}
}

// TestChatIdempotencySurvivesRestart: an idempotency key outlives a stop
// of the container (a new vault server on the same data directory) and a
// relock→unlock within its window: the same payload is answered as a
// duplicate of the original run with no second model call, another
// payload with idempotency_conflict.
func TestChatIdempotencySurvivesRestart(t *testing.T) {
	v, fp := setupChat(t)
	fp.Script(fakeprovider.Reply{Text: "race A answer"})
	c := v.dialChat()
	c.connect()
	send := map[string]any{"sessionKey": "main", "message": "race A", "idempotencyKey": "K"}
	res := c.call("chat.send", send)
	if res["ok"] != true {
		t.Fatalf("chat.send: %v", res)
	}
	runID := res["payload"].(map[string]any)["runId"].(string)
	c.events(runID)

	v.do("POST", "/vault/lock", nil)
	w := v.restart()
	w.unlockWith(w.derive("correct horse battery staple"))
	check := func(w *tv) {
		t.Helper()
		c := w.dialChat()
		c.connect()
		dup := c.call("chat.send", send)
		p, _ := dup["payload"].(map[string]any)
		if dup["ok"] != true || p["runId"] != runID || p["duplicate"] != true || p["state"] != "final" {
			t.Fatalf("same key, same payload after restart: %v (want runId %s, duplicate, state final)", dup, runID)
		}
		r := c.call("chat.send", map[string]any{"sessionKey": "main", "message": "race B", "idempotencyKey": "K"})
		if e, _ := r["error"].(map[string]any); r["ok"] != false || e["code"] != "idempotency_conflict" {
			t.Fatalf("other payload after restart: %v, want idempotency_conflict", r)
		}
		if n := len(fp.Requests()); n != 1 {
			t.Fatalf("%d model calls, want 1", n)
		}
		h := c.call("chat.history", map[string]any{"sessionKey": "main"})
		if msgs := h["payload"].(map[string]any)["messages"].([]any); len(msgs) != 2 {
			t.Fatalf("history has %d messages, want 2: %v", len(msgs), msgs)
		}
	}
	check(w)
	// Relock → unlock on the same server, then another restart.
	w.do("POST", "/vault/lock", nil)
	w.unlockWith(w.derive("correct horse battery staple"))
	check(w)
	w.do("POST", "/vault/lock", nil)
	x := w.restart()
	x.unlockWith(x.derive("correct horse battery staple"))
	check(x)
	// No key text or run id lies in the data directory in the clear.
	filepath.WalkDir(v.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(runID)) || bytes.Contains(b, []byte("race A")) {
				t.Errorf("%s holds the run id or message in the clear", p)
			}
		}
		return nil
	})
}

// TestChatIdempotencyInterruptedRun: a run the vault did not see end (the
// container crashed mid-reply; simulated by putting back the records file
// as it was during the run) is answered after the restart as a duplicate
// with state "interrupted" and not run again.
func TestChatIdempotencyInterruptedRun(t *testing.T) {
	v, fp := setupChat(t)
	fp.Script(fakeprovider.Reply{Text: strings.Repeat("word ", 50), ChunkDelay: 5 * time.Millisecond})
	c := v.dialChat()
	c.connect()
	send := map[string]any{"sessionKey": "main", "message": "long please", "idempotencyKey": "K2"}
	res := c.call("chat.send", send)
	runID := res["payload"].(map[string]any)["runId"].(string)
	mid, err := os.ReadFile(filepath.Join(v.dir, idemFileName))
	if err != nil {
		t.Fatal(err)
	}
	if dup := c.call("chat.send", send); dup["payload"].(map[string]any)["state"] != "running" {
		t.Fatalf("duplicate of a live run: %v", dup)
	}
	c.events(runID)
	v.do("POST", "/vault/lock", nil)
	if err := os.WriteFile(filepath.Join(v.dir, idemFileName), mid, 0o600); err != nil {
		t.Fatal(err)
	}
	w := v.restart()
	w.unlockWith(w.derive("correct horse battery staple"))
	c2 := w.dialChat()
	c2.connect()
	dup := c2.call("chat.send", send)
	p, _ := dup["payload"].(map[string]any)
	if p["runId"] != runID || p["duplicate"] != true || p["state"] != "interrupted" {
		t.Fatalf("duplicate of an interrupted run: %v", dup)
	}
	if n := len(fp.Requests()); n != 1 {
		t.Fatalf("%d model calls, want 1", n)
	}
}

// TestChatConcurrentSendsStoreOneMessage: sends that lose a race (the same
// idempotency key, or the same session while it is busy) are refused or
// answered as duplicates without storing their message: the transcript
// has the user message once and the model is asked once.
func TestChatConcurrentSendsStoreOneMessage(t *testing.T) {
	v, fp := setupChat(t)
	for round, sameKey := range []bool{true, false} {
		fp.Script(fakeprovider.Reply{Text: "ok"})
		session := fmt.Sprintf("s%d", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		runs := map[string]bool{}
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := "same"
				if !sameKey {
					key = fmt.Sprint("k", i)
				}
				b, _ := json.Marshal(map[string]any{"sessionKey": session, "message": "hi", "idempotencyKey": fmt.Sprint(round, key)})
				res, fe := v.s.chatSend(b)
				if fe != nil {
					if fe.Code != "busy" || sameKey {
						t.Errorf("round %d: %v", round, fe)
					}
					return
				}
				mu.Lock()
				runs[res.(map[string]any)["runId"].(string)] = true
				mu.Unlock()
			}()
		}
		wg.Wait()
		v.s.hub.wg.Wait()
		if len(runs) != 1 {
			t.Fatalf("round %d: %d runs started, want 1", round, len(runs))
		}
		tkey, _, fe := v.s.unlocked()
		if fe != nil {
			t.Fatal(fe)
		}
		msgs, err := v.s.transcripts.Read(&tkey, session)
		if err != nil {
			t.Fatal(err)
		}
		users := 0
		for _, m := range msgs {
			if m.Role == "user" {
				users++
			}
		}
		if users != 1 {
			t.Fatalf("round %d (same key %v): %d user messages stored, want 1", round, sameKey, users)
		}
	}
	if n := len(fp.Requests()); n != 2 {
		t.Fatalf("%d model calls, want 2", n)
	}
}
