package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/roles/vault/llm"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
)

// setupNoStream is setup with Config.NoStream.
func setupNoStream(t *testing.T, p provider) (*fakeprovider.Server, llm.Client) {
	t.Helper()
	fake := fakeprovider.New()
	t.Cleanup(fake.Close)
	fake.SetKey(testKey)
	cfg := p.config(fake.URL())
	cfg.NoStream = true
	c, err := llm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fake, c
}

// TestNoStreamText: the reply is requested without "stream": true and its
// whole text comes as one TextDelta, then Done.
func TestNoStreamText(t *testing.T) {
	const want = "The quick brown fox jumps over the lazy dog."
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setupNoStream(t, p)
			fake.Script(fakeprovider.Reply{Text: want})
			evs, err := collect(context.Background(), c, userReq("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 2 || evs[0].TextDelta != want || !evs[1].Done || evs[1].StopReason != llm.StopEndTurn {
				t.Fatalf("events %+v, want one TextDelta with the whole text and Done end_turn", evs)
			}
			reqs := fake.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			r := reqs[0]
			if r.Stream || strings.Contains(string(r.Body), `"stream":true`) {
				t.Errorf("asked for a stream: %s", r.Body)
			}
			if r.Path != p.wantPath || r.Model != p.model {
				t.Errorf("path %q model %q", r.Path, r.Model)
			}
			if got := p.keyOf(r.Headers); got != testKey {
				t.Errorf("credential = %q", got)
			}
			if !strings.Contains(string(r.Messages), `"hello"`) || !strings.Contains(string(r.Body), "You are a test.") {
				t.Errorf("request lacks the conversation: %s", r.Body)
			}
		})
	}
}

// TestNoStreamRunTools: a tool call in a whole reply is emitted like a
// streamed one, so RunTools runs the tool and sends its result back.
func TestNoStreamRunTools(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setupNoStream(t, p)
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
			var kinds []string
			msgs, err := llm.RunTools(context.Background(), c, req, tools, func(ev llm.Event) error {
				switch {
				case ev.TextDelta != "":
					kinds = append(kinds, "text")
				case ev.ToolCall != nil:
					kinds = append(kinds, "call:"+ev.ToolCall.Name)
				case ev.ToolResult != nil:
					kinds = append(kinds, "result")
				case ev.Done:
					kinds = append(kinds, "done:"+ev.StopReason)
				}
				return nil
			}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(kinds, ","), "text,call:ocmt_vault_status,result,text,done:end_turn"; got != want {
				t.Errorf("events %s, want %s", got, want)
			}
			if string(gotInput) != "{}" {
				t.Errorf("tool input = %s", gotInput)
			}
			if len(msgs) != 3 || msgs[0].Text != "Let me check." || len(msgs[0].ToolCalls) != 1 ||
				msgs[0].ToolCalls[0].ID != "call_or_toolu_1" || msgs[2].Text != "Your vault is unlocked." {
				t.Fatalf("messages %+v", msgs)
			}
			reqs := fake.Requests()
			if len(reqs) != 2 || reqs[0].Stream || reqs[1].Stream {
				t.Fatalf("requests %+v", reqs)
			}
			checkToolRoundTrip(t, p.name, reqs[1].Messages, `{"locked":false}`, false)
		})
	}
}

// TestNoStreamToolUseStop: a reply that only calls a tool ends with
// StopToolUse and no text event.
func TestNoStreamToolUseStop(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake, c := setupNoStream(t, p)
			fake.Script(fakeprovider.Reply{ToolCall: &fakeprovider.ToolCallReply{Name: "ocmt_vault_status", Input: map[string]any{"verbose": true}}})
			evs, err := collect(context.Background(), c, userReq("status?"))
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 2 || evs[0].ToolCall == nil || string(evs[0].ToolCall.Input) != `{"verbose":true}` || evs[0].ToolCall.ID == "" ||
				!evs[1].Done || evs[1].StopReason != llm.StopToolUse {
				t.Fatalf("events %+v", evs)
			}
		})
	}
}

// TestNoStreamErrors: provider errors of a whole-reply request are mapped
// like streamed ones.
func TestNoStreamErrors(t *testing.T) {
	for _, p := range providers {
		for _, tc := range []struct {
			name     string
			reply    fakeprovider.Reply
			key      string
			wantKind llm.Kind
		}{
			{"bad key", fakeprovider.Reply{}, "sk-wrong-key-that-must-not-leak", llm.KindAuth},
			{"rate limit", fakeprovider.Reply{ErrorType: fakeprovider.ErrRateLimit}, "", llm.KindRateLimit},
			{"overloaded", fakeprovider.Reply{ErrorType: fakeprovider.ErrOverloaded}, "", llm.KindUnreachable},
		} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				fake := fakeprovider.New()
				t.Cleanup(fake.Close)
				fake.SetKey(testKey)
				fake.Script(tc.reply)
				cfg := p.config(fake.URL())
				cfg.NoStream = true
				if tc.key != "" {
					cfg.APIKey = tc.key
				}
				c, err := llm.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				_, err = collect(context.Background(), c, userReq("hi"))
				var e *llm.Error
				if !errors.As(err, &e) || e.Kind != tc.wantKind {
					t.Fatalf("err = %v, want kind %s", err, tc.wantKind)
				}
				if strings.Contains(e.Message, cfg.APIKey) {
					t.Errorf("message leaks the key: %q", e.Message)
				}
			})
		}
	}
}
