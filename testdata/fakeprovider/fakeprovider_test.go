package fakeprovider

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// post sends body to s at path with headers, returning the response.
func post(t *testing.T, s *Server, path, body string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

type sseEvent struct {
	name string
	data string
}

// readSSE parses a whole SSE body: "event:" and "data:" lines, events
// separated by blank lines.
func readSSE(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	if cur.data != "" {
		t.Fatalf("last event %+v not terminated by a blank line", cur)
	}
	return out
}

func TestAnthropicStreamFraming(t *testing.T) {
	s := New()
	defer s.Close()
	s.Script(Reply{Text: "Hi there", ToolCall: &ToolCallReply{Name: "ocmt_vault_status", Input: map[string]any{"verbose": true}}})
	res := post(t, s, "/v1/messages", `{"model":"m","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hello"}]}`)
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	evs := readSSE(t, res.Body)
	var names []string
	var text, input strings.Builder
	for _, ev := range evs {
		var d struct {
			Type  string `json:"type"`
			Delta struct {
				Type        string  `json:"type"`
				Text        string  `json:"text"`
				PartialJSON string  `json:"partial_json"`
				StopReason  *string `json:"stop_reason"`
			} `json:"delta"`
		}
		if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
			t.Fatalf("event %s data %q: %v", ev.name, ev.data, err)
		}
		if d.Type != ev.name {
			t.Errorf("event name %q but data type %q", ev.name, d.Type)
		}
		if len(names) == 0 || names[len(names)-1] != ev.name {
			names = append(names, ev.name)
		}
		switch d.Delta.Type {
		case "text_delta":
			text.WriteString(d.Delta.Text)
		case "input_json_delta":
			input.WriteString(d.Delta.PartialJSON)
		}
		if ev.name == "message_delta" && (d.Delta.StopReason == nil || *d.Delta.StopReason != "tool_use") {
			t.Errorf("message_delta %s", ev.data)
		}
	}
	want := "message_start,content_block_start,ping,content_block_delta,content_block_stop," +
		"content_block_start,content_block_delta,content_block_stop,message_delta,message_stop"
	if got := strings.Join(names, ","); got != want {
		t.Errorf("events\n %s\nwant\n %s", got, want)
	}
	if text.String() != "Hi there" || input.String() != `{"verbose":true}` {
		t.Errorf("text %q input %q", text.String(), input.String())
	}
}

func TestOpenAIStreamFraming(t *testing.T) {
	s := New()
	defer s.Close()
	s.Script(Reply{Text: "a b c", ToolCall: &ToolCallReply{ID: "call_1", Name: "t", Input: json.RawMessage(`{"x":1}`)}})
	res := post(t, s, "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hello"}]}`)
	evs := readSSE(t, res.Body)
	if len(evs) < 3 || evs[len(evs)-1].data != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %+v", evs)
	}
	var text, args strings.Builder
	finish := ""
	for _, ev := range evs[:len(evs)-1] {
		if ev.name != "" {
			t.Errorf("OpenAI chunks carry no event name, got %q", ev.name)
		}
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content   string `json:"content"`
					ToolCalls []struct {
						Index    int    `json:"index"`
						ID       string `json:"id"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(ev.data), &c); err != nil {
			t.Fatal(err)
		}
		if c.Object != "chat.completion.chunk" || len(c.Choices) != 1 {
			t.Fatalf("chunk %s", ev.data)
		}
		text.WriteString(c.Choices[0].Delta.Content)
		for _, tc := range c.Choices[0].Delta.ToolCalls {
			args.WriteString(tc.Function.Arguments)
		}
		if f := c.Choices[0].FinishReason; f != nil {
			finish = *f
		}
	}
	if text.String() != "a b c" || args.String() != `{"x":1}` || finish != "tool_calls" {
		t.Errorf("text %q args %q finish %q", text.String(), args.String(), finish)
	}
}

func TestNonStreaming(t *testing.T) {
	s := New()
	defer s.Close()
	res := post(t, s, "/v1/messages", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"yo"}]}]}`)
	var m struct {
		Type    string `json:"type"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		StopReason string `json:"stop_reason"`
	}
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "message" || len(m.Content) != 1 || m.Content[0].Text != "echo: yo" || m.StopReason != "end_turn" {
		t.Errorf("anthropic message %+v", m)
	}

	res = post(t, s, "/chat/completions", `{"model":"m","messages":[{"role":"user","content":"yo"}]}`)
	var c struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Object != "chat.completion" || c.Choices[0].Message.Content != "echo: yo" || c.Choices[0].FinishReason != "stop" {
		t.Errorf("openai completion %+v", c)
	}
}

func TestAuthErrorShapes(t *testing.T) {
	s := New()
	defer s.Close()
	s.SetKey("sk-test")
	res := post(t, s, "/v1/messages", `{"model":"m","messages":[]}`, "X-Api-Key", "sk-bad")
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 401 || !strings.Contains(string(b), `"error":{"message":"invalid x-api-key","type":"authentication_error"}`) ||
		!strings.Contains(string(b), `"type":"error"`) {
		t.Errorf("anthropic 401: %d %s", res.StatusCode, b)
	}
	res = post(t, s, "/v1/messages", `{"model":"m","messages":[{"role":"user","content":"a"}]}`, "X-Api-Key", "sk-test")
	if res.StatusCode != 200 {
		t.Errorf("anthropic with the right key: %d", res.StatusCode)
	}
	res = post(t, s, "/v1/chat/completions", `{"model":"m","messages":[]}`, "Authorization", "Bearer sk-bad")
	b, _ = io.ReadAll(res.Body)
	if res.StatusCode != 401 || !strings.Contains(string(b), `"code":"invalid_api_key"`) ||
		!strings.Contains(string(b), `"message":"Incorrect API key provided"`) {
		t.Errorf("openai 401: %d %s", res.StatusCode, b)
	}
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[0].Headers.Get("X-Api-Key") != "sk-bad" || reqs[2].Headers.Get("Authorization") != "Bearer sk-bad" {
		t.Errorf("requests not recorded with their credentials: %+v", reqs)
	}
	if s.Pending() != 0 {
		t.Error("pending replies")
	}
}

func TestUnknownModel(t *testing.T) {
	s := New()
	defer s.Close()
	s.KnownModels("good")
	s.Script(Reply{Text: "kept"})
	res := post(t, s, "/v1/messages", `{"model":"bad","messages":[]}`)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 404 || !strings.Contains(string(b), `"type":"not_found_error"`) || !strings.Contains(string(b), "model: bad") {
		t.Errorf("anthropic: %d %s", res.StatusCode, b)
	}
	res = post(t, s, "/v1/chat/completions", `{"model":"bad","messages":[]}`)
	b, _ = io.ReadAll(res.Body)
	if res.StatusCode != 404 || !strings.Contains(string(b), `"code":"model_not_found"`) {
		t.Errorf("openai: %d %s", res.StatusCode, b)
	}
	if s.Pending() != 1 {
		t.Error("a rejected request consumed a scripted reply")
	}
}

func TestAbortCounted(t *testing.T) {
	s := New()
	defer s.Close()
	s.Script(Reply{Text: strings.Repeat("x ", 50), ChunkDelay: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL()+"/v1/messages",
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"a"}]}`))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = res.Body.Read(make([]byte, 100))
	cancel()
	res.Body.Close()
	deadline := time.Now().Add(2 * time.Second)
	for s.Aborted() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.Aborted() != 1 {
		t.Errorf("Aborted() = %d", s.Aborted())
	}
}

func TestNewOn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewOn(l)
	defer s.Close()
	if s.URL() != "http://"+l.Addr().String() {
		t.Errorf("URL %q, listener %s", s.URL(), l.Addr())
	}
	res := post(t, s, "/chat/completions", `{"model":"m","messages":[{"role":"user","content":"a"}]}`)
	if res.StatusCode != 200 {
		t.Errorf("status %d", res.StatusCode)
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		text string
		n    int
		want int
	}{
		{"one two  three\nfour", 0, 4},
		{"  lead", 0, 1},
		{"héllo wörld", 3, 3},
		{"ab", 5, 2},
		{"", 0, 0},
	} {
		got := split(tc.text, tc.n)
		if len(got) != tc.want || strings.Join(got, "") != tc.text {
			t.Errorf("split(%q, %d) = %q", tc.text, tc.n, got)
		}
	}
}
