package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/roles/vault/llm"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
)

const testKey = "sk-test-0123456789abcdef"

// provider describes how one provider is wired to the fake.
type provider struct {
	name     string
	model    string
	config   func(baseURL string) llm.Config
	keyOf    func(h http.Header) string // the credential the fake received
	wantPath string
}

var providers = []provider{
	{
		name:  llm.Anthropic,
		model: "claude-test",
		config: func(u string) llm.Config {
			return llm.Config{Provider: llm.Anthropic, APIKey: testKey, BaseURL: u, Model: "claude-test"}
		},
		keyOf: func(h http.Header) string {
			// anthropic-sdk-go v2 sends the key as a bearer token.
			if k := h.Get("X-Api-Key"); k != "" {
				return k
			}
			k, _ := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
			return k
		},
		wantPath: "/v1/messages",
	},
	{
		name:  llm.OpenAI,
		model: "gpt-test",
		config: func(u string) llm.Config {
			return llm.Config{Provider: llm.OpenAI, APIKey: testKey, BaseURL: u + "/v1", Model: "gpt-test"}
		},
		keyOf: func(h http.Header) string {
			k, _ := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
			return k
		},
		wantPath: "/v1/chat/completions",
	},
}

// setup starts a fake that accepts testKey and a client for p.
func setup(t *testing.T, p provider) (*fakeprovider.Server, llm.Client) {
	t.Helper()
	fake := fakeprovider.New()
	t.Cleanup(fake.Close)
	fake.SetKey(testKey)
	c, err := llm.New(p.config(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return fake, c
}

// collect runs Stream and returns its events.
func collect(ctx context.Context, c llm.Client, req llm.Request) ([]llm.Event, error) {
	var evs []llm.Event
	err := c.Stream(ctx, req, func(ev llm.Event) error {
		evs = append(evs, ev)
		return nil
	})
	return evs, err
}

func userReq(text string) llm.Request {
	return llm.Request{
		System:   "You are a test.",
		Messages: []llm.Message{{Role: llm.RoleUser, Text: text}},
	}
}

func TestStreamText(t *testing.T) {
	const want = "The quick brown fox jumps over the lazy dog."
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setup(t, p)
			fake.Script(fakeprovider.Reply{Text: want})
			evs, err := collect(context.Background(), c, userReq("hello"))
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			deltas := 0
			for i, ev := range evs {
				switch {
				case ev.TextDelta != "":
					deltas++
					got.WriteString(ev.TextDelta)
				case ev.Done:
					if i != len(evs)-1 {
						t.Errorf("Done at %d of %d events", i, len(evs))
					}
					if ev.StopReason != llm.StopEndTurn {
						t.Errorf("StopReason = %q, want %q", ev.StopReason, llm.StopEndTurn)
					}
				default:
					t.Errorf("unexpected event %+v", ev)
				}
			}
			if got.String() != want {
				t.Errorf("text = %q, want %q", got.String(), want)
			}
			if deltas != 9 {
				t.Errorf("%d deltas, want 9 (one per word)", deltas)
			}
			if !evs[len(evs)-1].Done {
				t.Error("no final Done event")
			}

			reqs := fake.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Path != p.wantPath || r.Model != p.model || !r.Stream {
				t.Errorf("request path=%q model=%q stream=%v", r.Path, r.Model, r.Stream)
			}
			if got := p.keyOf(r.Headers); got != testKey {
				t.Errorf("credential = %q, want the configured key", got)
			}
			if !strings.Contains(string(r.Messages), `"hello"`) {
				t.Errorf("messages %s lack the user text", r.Messages)
			}
			if !strings.Contains(string(r.Body), "You are a test.") {
				t.Errorf("body %s lacks the system prompt", r.Body)
			}
		})
	}
}

func TestStreamEcho(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			_, c := setup(t, p)
			evs, err := collect(context.Background(), c, userReq("ping pong"))
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			for _, ev := range evs {
				got.WriteString(ev.TextDelta)
			}
			if got.String() != "echo: ping pong" {
				t.Errorf("text = %q", got.String())
			}
		})
	}
}

func TestStreamEmitErrorStops(t *testing.T) {
	stop := errors.New("stop here")
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setup(t, p)
			fake.Script(fakeprovider.Reply{Text: "one two three four", ChunkDelay: 20 * time.Millisecond})
			n := 0
			err := c.Stream(context.Background(), userReq("x"), func(ev llm.Event) error {
				n++
				return stop
			})
			if !errors.Is(err, stop) || n != 1 {
				t.Errorf("err = %v after %d events, want the emit error after 1", err, n)
			}
		})
	}
}

var vaultStatusTool = llm.Tool{
	Name:        "ocmt_vault_status",
	Description: "Reports whether the vault is locked.",
	InputSchema: json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`),
}

func TestRunToolsRoundTrip(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setup(t, p)
			fake.Script(
				fakeprovider.Reply{Text: "Let me check.", ToolCall: &fakeprovider.ToolCallReply{
					ID: "call_or_toolu_1", Name: "ocmt_vault_status", Input: map[string]any{},
				}},
				fakeprovider.Reply{Text: "Your vault is unlocked."},
			)
			var gotInput json.RawMessage
			tools := map[string]llm.ToolFunc{
				"ocmt_vault_status": func(ctx context.Context, input json.RawMessage) (string, error) {
					gotInput = input
					return `{"locked":false}`, nil
				},
			}
			req := userReq("is my vault locked?")
			req.Tools = []llm.Tool{vaultStatusTool}
			var evs []llm.Event
			msgs, err := llm.RunTools(context.Background(), c, req, tools, func(ev llm.Event) error {
				evs = append(evs, ev)
				return nil
			}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if string(gotInput) != "{}" {
				t.Errorf("tool input = %s, want {}", gotInput)
			}

			// New messages: assistant (text + call), tool result, assistant.
			if len(msgs) != 3 {
				t.Fatalf("got %d messages, want 3: %+v", len(msgs), msgs)
			}
			if m := msgs[0]; m.Role != llm.RoleAssistant || m.Text != "Let me check." || len(m.ToolCalls) != 1 ||
				m.ToolCalls[0].Name != "ocmt_vault_status" || m.ToolCalls[0].ID != "call_or_toolu_1" {
				t.Errorf("msgs[0] = %+v", m)
			}
			if m := msgs[1]; m.Role != llm.RoleTool || m.ToolCallID != "call_or_toolu_1" ||
				m.ToolName != "ocmt_vault_status" || m.Text != `{"locked":false}` {
				t.Errorf("msgs[1] = %+v", m)
			}
			if m := msgs[2]; m.Role != llm.RoleAssistant || m.Text != "Your vault is unlocked." || len(m.ToolCalls) != 0 {
				t.Errorf("msgs[2] = %+v", m)
			}

			// Events: text, tool call, tool result, text, one Done at the end.
			var kinds []string
			for _, ev := range evs {
				switch {
				case ev.TextDelta != "":
					if len(kinds) == 0 || kinds[len(kinds)-1] != "text" {
						kinds = append(kinds, "text")
					}
				case ev.ToolCall != nil:
					kinds = append(kinds, "call")
				case ev.ToolResult != nil:
					kinds = append(kinds, "result")
				case ev.Done:
					kinds = append(kinds, "done:"+ev.StopReason)
				}
			}
			if got, want := strings.Join(kinds, ","), "text,call,result,text,done:end_turn"; got != want {
				t.Errorf("events %s, want %s", got, want)
			}

			reqs := fake.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			if !strings.Contains(string(reqs[0].Tools), `"ocmt_vault_status"`) {
				t.Errorf("tools not sent: %s", reqs[0].Tools)
			}
			checkToolRoundTrip(t, p.name, reqs[1].Messages, `{"locked":false}`, false)
		})
	}
}

func TestRunToolsToolError(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setup(t, p)
			fake.Script(
				fakeprovider.Reply{ToolCall: &fakeprovider.ToolCallReply{ID: "c1", Name: "ocmt_vault_status"}},
				fakeprovider.Reply{ToolCall: &fakeprovider.ToolCallReply{ID: "c2", Name: "ocmt_nope"}},
				fakeprovider.Reply{Text: "Sorry."},
			)
			tools := map[string]llm.ToolFunc{
				"ocmt_vault_status": func(context.Context, json.RawMessage) (string, error) {
					return "", errors.New("vault is locked")
				},
			}
			req := userReq("status?")
			req.Tools = []llm.Tool{vaultStatusTool}
			msgs, err := llm.RunTools(context.Background(), c, req, tools, func(llm.Event) error { return nil }, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 5 {
				t.Fatalf("got %d messages, want 5: %+v", len(msgs), msgs)
			}
			if msgs[1].Text != "error: vault is locked" {
				t.Errorf("tool error result = %q", msgs[1].Text)
			}
			if msgs[3].Text != "error: unknown tool ocmt_nope" {
				t.Errorf("unknown tool result = %q", msgs[3].Text)
			}
			reqs := fake.Requests()
			checkToolRoundTrip(t, p.name, reqs[1].Messages, "error: vault is locked", true)
		})
	}
}

func TestRunToolsRoundLimit(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setup(t, p)
			call := fakeprovider.Reply{ToolCall: &fakeprovider.ToolCallReply{Name: "ocmt_vault_status"}}
			fake.Script(call, call, call)
			tools := map[string]llm.ToolFunc{
				"ocmt_vault_status": func(context.Context, json.RawMessage) (string, error) { return "ok", nil },
			}
			msgs, err := llm.RunTools(context.Background(), c, userReq("loop"), tools, func(llm.Event) error { return nil }, 2)
			if !errors.Is(err, llm.ErrTooManyRounds) {
				t.Fatalf("err = %v, want ErrTooManyRounds", err)
			}
			if len(msgs) != 4 || len(fake.Requests()) != 2 {
				t.Errorf("%d messages, %d requests; want 4 and 2", len(msgs), len(fake.Requests()))
			}
		})
	}
}

// checkToolRoundTrip asserts that the raw messages of the request after a
// tool call carry the assistant's call and the tool result in the provider's
// exact shape.
func checkToolRoundTrip(t *testing.T, prov string, raw json.RawMessage, wantResult string, wantError bool) {
	t.Helper()
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		t.Fatalf("messages: %v", err)
	}
	str := func(m map[string]json.RawMessage, k string) string {
		var s string
		_ = json.Unmarshal(m[k], &s)
		return s
	}
	switch prov {
	case llm.Anthropic:
		// [user, assistant{text?, tool_use}, user{tool_result}]
		if len(msgs) != 3 || str(msgs[1], "role") != "assistant" || str(msgs[2], "role") != "user" {
			t.Fatalf("anthropic messages: %s", raw)
		}
		var asst []map[string]json.RawMessage
		_ = json.Unmarshal(msgs[1]["content"], &asst)
		last := asst[len(asst)-1]
		if str(last, "type") != "tool_use" || str(last, "name") != "ocmt_vault_status" || string(last["input"]) != "{}" {
			t.Errorf("assistant tool_use block: %s", msgs[1]["content"])
		}
		id := str(last, "id")
		var user []struct {
			Type      string `json:"type"`
			ToolUseID string `json:"tool_use_id"`
			IsError   bool   `json:"is_error"`
			Content   []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		}
		_ = json.Unmarshal(msgs[2]["content"], &user)
		if len(user) != 1 || user[0].Type != "tool_result" || user[0].ToolUseID != id ||
			len(user[0].Content) != 1 || user[0].Content[0].Type != "text" || user[0].Content[0].Text != wantResult ||
			user[0].IsError != wantError {
			t.Errorf("tool_result message: %s", msgs[2]["content"])
		}
	case llm.OpenAI:
		// [system, user, assistant{tool_calls}, tool]
		if len(msgs) != 4 || str(msgs[0], "role") != "system" || str(msgs[2], "role") != "assistant" || str(msgs[3], "role") != "tool" {
			t.Fatalf("openai messages: %s", raw)
		}
		var calls []struct {
			ID       string `json:"id"`
			Type     string `json:"type"`
			Function struct {
				Name      string `json:"name"`
				Arguments string `json:"arguments"`
			} `json:"function"`
		}
		_ = json.Unmarshal(msgs[2]["tool_calls"], &calls)
		if len(calls) != 1 || calls[0].Type != "function" || calls[0].Function.Name != "ocmt_vault_status" ||
			calls[0].Function.Arguments != "{}" {
			t.Errorf("assistant tool_calls: %s", msgs[2]["tool_calls"])
		}
		if str(msgs[3], "tool_call_id") != calls[0].ID || str(msgs[3], "content") != wantResult {
			t.Errorf("tool message: %v", msgs[3])
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name       string
		setup      func(*fakeprovider.Server)
		key        string
		wantKind   llm.Kind
		wantStatus map[string]int // by provider
		wantText   string
	}{
		{
			name:       "bad key",
			key:        "sk-wrong-key-that-must-not-leak",
			wantKind:   llm.KindAuth,
			wantStatus: map[string]int{llm.Anthropic: 401, llm.OpenAI: 401},
			wantText:   "rejected the API key",
		},
		{
			name:       "rate limit",
			setup:      func(s *fakeprovider.Server) { s.Script(fakeprovider.Reply{ErrorType: fakeprovider.ErrRateLimit}) },
			wantKind:   llm.KindRateLimit,
			wantStatus: map[string]int{llm.Anthropic: 429, llm.OpenAI: 429},
			wantText:   "rate limiting",
		},
		{
			name:       "unknown model",
			setup:      func(s *fakeprovider.Server) { s.KnownModels("some-other-model") },
			wantKind:   llm.KindModelNotFound,
			wantStatus: map[string]int{llm.Anthropic: 404, llm.OpenAI: 404},
			wantText:   "does not offer the model",
		},
		{
			name:       "server error",
			setup:      func(s *fakeprovider.Server) { s.Script(fakeprovider.Reply{ErrorType: fakeprovider.ErrServer}) },
			wantKind:   llm.KindUnreachable,
			wantStatus: map[string]int{llm.Anthropic: 500, llm.OpenAI: 500},
			wantText:   "server error",
		},
		{
			name:       "overloaded",
			setup:      func(s *fakeprovider.Server) { s.Script(fakeprovider.Reply{ErrorType: fakeprovider.ErrOverloaded}) },
			wantKind:   llm.KindUnreachable,
			wantStatus: map[string]int{llm.Anthropic: 529, llm.OpenAI: 503},
			wantText:   "overloaded",
		},
		{
			name: "overloaded mid-stream",
			setup: func(s *fakeprovider.Server) {
				s.Script(fakeprovider.Reply{Text: "partial answer", ErrorType: fakeprovider.ErrOverloaded, MidStream: true})
			},
			wantKind:   llm.KindUnreachable,
			wantStatus: map[string]int{llm.Anthropic: 0, llm.OpenAI: 0},
			wantText:   "overloaded",
		},
		{
			name:       "bad request",
			setup:      func(s *fakeprovider.Server) { s.Script(fakeprovider.Reply{ErrorType: fakeprovider.ErrBadRequest}) },
			wantKind:   llm.KindBadRequest,
			wantStatus: map[string]int{llm.Anthropic: 400, llm.OpenAI: 400},
			wantText:   "refused the request (HTTP 400): ",
		},
		{
			name:       "connection refused",
			setup:      func(s *fakeprovider.Server) { s.Close() },
			wantKind:   llm.KindUnreachable,
			wantStatus: map[string]int{llm.Anthropic: 0, llm.OpenAI: 0},
			wantText:   "connection refused",
		},
	}
	for _, p := range providers {
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				fake := fakeprovider.New()
				t.Cleanup(fake.Close)
				fake.SetKey(testKey)
				cfg := p.config(fake.URL())
				if tc.key != "" {
					cfg.APIKey = tc.key
				}
				c, err := llm.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if tc.setup != nil {
					tc.setup(fake)
				}
				start := time.Now()
				_, err = collect(context.Background(), c, userReq("hi"))
				var e *llm.Error
				if !errors.As(err, &e) {
					t.Fatalf("err = %T %v, want *llm.Error", err, err)
				}
				if e.Kind != tc.wantKind || e.Status != tc.wantStatus[p.name] {
					t.Errorf("Kind=%q Status=%d, want %q %d (%s)", e.Kind, e.Status, tc.wantKind, tc.wantStatus[p.name], e.Message)
				}
				if !strings.Contains(e.Message, tc.wantText) {
					t.Errorf("Message %q lacks %q", e.Message, tc.wantText)
				}
				if strings.Contains(e.Message, cfg.APIKey) || strings.Contains(err.Error(), cfg.APIKey) {
					t.Errorf("message leaks the key: %q", e.Message)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("took %v: retries are not disabled?", d)
				}
			})
		}
	}
}

func TestCancelMidStream(t *testing.T) {
	long := strings.Repeat("word ", 40)
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setup(t, p)
			fake.Script(fakeprovider.Reply{Text: long, ChunkDelay: 50 * time.Millisecond})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			deltas := 0
			var cancelled time.Time
			err := c.Stream(ctx, userReq("go"), func(ev llm.Event) error {
				deltas++
				if deltas == 2 {
					cancelled = time.Now()
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if d := time.Since(cancelled); d > 500*time.Millisecond {
				t.Errorf("Stream returned %v after cancel", d)
			}
			if deltas > 3 {
				t.Errorf("%d deltas after cancel", deltas)
			}
			deadline := time.Now().Add(3 * time.Second)
			for fake.Aborted() != 1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := fake.Aborted(); n != 1 {
				t.Errorf("fake counted %d aborts, want 1", n)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setup(t, p)
			fake.Script(fakeprovider.Reply{Text: strings.Repeat("slow ", 20), ChunkDelay: 100 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			_, err := collect(ctx, c, userReq("go"))
			var e *llm.Error
			if !errors.As(err, &e) || e.Kind != llm.KindUnreachable || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want KindUnreachable wrapping DeadlineExceeded", err)
			}
		})
	}
}

func TestOpenAICompatibleBaseURL(t *testing.T) {
	for _, tc := range []struct{ suffix, wantPath string }{
		{"/v1", "/v1/chat/completions"},
		{"/v1/", "/v1/chat/completions"},
		{"", "/chat/completions"},
	} {
		t.Run("base"+tc.suffix, func(t *testing.T) {
			fake := fakeprovider.New()
			t.Cleanup(fake.Close)
			c, err := llm.New(llm.Config{Provider: llm.OpenAI, BaseURL: fake.URL() + tc.suffix, Model: "llama3.2"})
			if err != nil {
				t.Fatal(err)
			}
			req := userReq("local")
			req.MaxTokens = 100
			evs, err := collect(context.Background(), c, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) < 2 {
				t.Fatalf("events: %+v", evs)
			}
			r := fake.Requests()[0]
			if r.Path != tc.wantPath || r.Model != "llama3.2" {
				t.Errorf("path %q model %q", r.Path, r.Model)
			}
			if h := r.Headers.Get("Authorization"); h != "" {
				t.Errorf("Authorization %q sent without a key", h)
			}
			var body map[string]any
			_ = json.Unmarshal(r.Body, &body)
			if body["max_tokens"] != float64(100) || body["max_completion_tokens"] != nil {
				t.Errorf("a compatible server gets max_tokens: %s", r.Body)
			}
		})
	}
}

func TestIgnoresEnvironment(t *testing.T) {
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
	t.Setenv("ANTHROPIC_AUTH_TOKEN", "tok-from-env")
	t.Setenv("OPENAI_API_KEY", "sk-openai-from-env")
	t.Setenv("OPENAI_ORG_ID", "org-from-env")
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake := fakeprovider.New()
			t.Cleanup(fake.Close)
			cfg := p.config(fake.URL())
			cfg.APIKey = ""
			c, err := llm.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := collect(context.Background(), c, userReq("x")); err != nil {
				t.Fatal(err)
			}
			h := fake.Requests()[0].Headers
			for _, name := range []string{"X-Api-Key", "Authorization", "Openai-Organization"} {
				if v := h.Get(name); v != "" {
					t.Errorf("%s = %q taken from the environment", name, v)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	if _, err := llm.New(llm.Config{Provider: "gemini"}); err == nil {
		t.Error("unknown provider accepted")
	}
	if _, err := llm.New(llm.Config{Provider: llm.OpenAI, BaseURL: "localhost:11434"}); err == nil {
		t.Error("base URL without scheme accepted")
	}
	for _, p := range []string{llm.Anthropic, llm.OpenAI} {
		if _, err := llm.New(llm.Config{Provider: p}); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestDefaultModels(t *testing.T) {
	for _, tc := range []struct {
		provider, suffix, want string
	}{
		{llm.Anthropic, "", llm.DefaultAnthropicModel},
		{llm.OpenAI, "/v1", llm.DefaultOpenAIModel},
	} {
		fake := fakeprovider.New()
		c, err := llm.New(llm.Config{Provider: tc.provider, BaseURL: fake.URL() + tc.suffix})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := collect(context.Background(), c, userReq("x")); err != nil {
			t.Fatal(err)
		}
		if got := fake.Requests()[0].Model; got != tc.want {
			t.Errorf("%s default model %q, want %q", tc.provider, got, tc.want)
		}
		fake.Close()
	}
}

func TestServerGoneMidStream(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setup(t, p)
			fake.Script(fakeprovider.Reply{Text: strings.Repeat("word ", 20), ChunkDelay: 30 * time.Millisecond})
			n := 0
			err := c.Stream(context.Background(), userReq("go"), func(ev llm.Event) error {
				if n++; n == 1 {
					go fake.Close()
				}
				return nil
			})
			var e *llm.Error
			if !errors.As(err, &e) || e.Kind != llm.KindUnreachable {
				t.Fatalf("err = %v, want KindUnreachable", err)
			}
		})
	}
}
