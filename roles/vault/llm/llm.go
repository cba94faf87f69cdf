package llm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// Provider names, as stored with a user's API key.
const (
	// Anthropic is the Anthropic Messages API.
	Anthropic = "anthropic"
	// OpenAI is the OpenAI Chat Completions API, and with a BaseURL any
	// OpenAI-compatible server: Ollama, vLLM, LM Studio, OpenRouter, LiteLLM.
	OpenAI = "openai"
)

// Default models, used when Config.Model is "". Both are current,
// non-deprecated models as of the SDK versions in go.mod
// (anthropic-sdk-go v2.15.0 marks claude-sonnet-4-5 deprecated in favour of
// claude-sonnet-5-5; openai-go v3.99.0 marks gpt-4o-mini deprecated).
const (
	DefaultAnthropicModel = anthropic.ModelClaudeSonnet5_5 // "claude-sonnet-5-5"
	DefaultOpenAIModel    = "gpt-5.4-mini"
)

// DefaultMaxTokens is the output token cap sent when Request.MaxTokens is 0
// to Anthropic, which requires one. OpenAI requests omit the cap then.
const DefaultMaxTokens = 4096

// Roles of a Message.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Stop reasons in Event.StopReason. Anthropic's values pass through
// unchanged (others, such as "pause_turn" or "refusal", may appear); OpenAI
// finish reasons are mapped: "stop" → StopEndTurn, "tool_calls" (and the
// legacy "function_call") → StopToolUse, "length" → StopMaxTokens,
// "content_filter" → StopContentFilter.
const (
	StopEndTurn       = "end_turn"
	StopToolUse       = "tool_use"
	StopMaxTokens     = "max_tokens"
	StopSequence      = "stop_sequence"
	StopContentFilter = "content_filter"
)

// Config selects a provider and its credentials.
type Config struct {
	// Provider is Anthropic or OpenAI.
	Provider string
	// APIKey is the provider key, sent as "Authorization: Bearer <key>" (by
	// both SDKs: anthropic-sdk-go v2 no longer uses x-api-key); "" sends
	// none (fine for a local Ollama). It never appears in errors.
	APIKey string
	// BaseURL, or "" for the provider's public API, is the API root:
	// Anthropic appends "v1/messages", OpenAI appends "chat/completions", so
	// an OpenAI-compatible server is usually given as "http://host:port/v1".
	BaseURL string
	// Model is the model name; "" = DefaultAnthropicModel or
	// DefaultOpenAIModel.
	Model string
	// HTTPClient, or nil for a plain client, carries the requests. Put no
	// Timeout on it: streams are long; bound a call with its context.
	HTTPClient *http.Client
	// NoStream asks the provider for each turn's reply as one JSON object
	// instead of a server-sent-event stream (Anthropic Messages.New, OpenAI
	// Chat.Completions.New). Stream then emits the same events, but the
	// whole text arrives as one TextDelta once the model has finished, not
	// token by token. It is for transports that carry one bounded answer
	// rather than a stream: a model provider key shared through the relay
	// (whose envelopes hold at most 64 KiB) is used this way.
	NoStream bool
}

// Message is one entry of a conversation.
type Message struct {
	// Role is RoleUser, RoleAssistant or RoleTool.
	Role string
	// Text is the message text; for RoleTool, the tool's result.
	Text string
	// ToolCalls are the tools an assistant message asked for, in order.
	ToolCalls []ToolCall
	// ToolCallID is the ToolCall.ID a RoleTool message answers.
	ToolCallID string
	// ToolName is the name of the tool a RoleTool message answers (kept for
	// display and history; the providers only need ToolCallID).
	ToolName string
}

// ToolCall is a complete tool call the model made.
type ToolCall struct {
	// ID is the provider's call id ("toolu_..." or "call_...").
	ID string
	// Name is the tool name.
	Name string
	// Input is the tool input, a JSON object; never empty ({} when the model
	// sent nothing).
	Input json.RawMessage
}

// Tool describes a tool the model may call.
type Tool struct {
	// Name is the tool name (^[a-zA-Z0-9_-]{1,64}$ for both providers).
	Name string
	// Description tells the model what the tool does and when to use it.
	Description string
	// InputSchema is a JSON Schema object ({"type":"object",...}) for the
	// input; nil = an object with no properties.
	InputSchema json.RawMessage
}

// Request is one model turn.
type Request struct {
	// System is the system prompt, or "".
	System string
	// Messages is the conversation so far, oldest first. Consecutive
	// RoleTool messages answer the ToolCalls of the assistant message before
	// them. Since providers refuse anything else, a RoleTool message that is
	// not right after its call is dropped, and a call left without a result
	// (a run interrupted between the two) gets the result
	// "error: no result: the run was interrupted".
	Messages []Message
	// Tools the model may call, or nil.
	Tools []Tool
	// MaxTokens caps the output tokens; 0 = DefaultMaxTokens for Anthropic
	// and no cap for OpenAI.
	MaxTokens int
}

// Event is one streamed piece of a reply: exactly one of TextDelta,
// ToolCall, ToolResult or Done is set.
type Event struct {
	// TextDelta is the next piece of the reply text.
	TextDelta string
	// ToolCall is a completed tool call, emitted once its input is whole.
	ToolCall *ToolCall
	// ToolResult is set only by RunTools: the RoleTool message it produced
	// by running a tool, just before sending it back to the model.
	ToolResult *Message
	// Done marks the end of the reply; StopReason says why.
	Done bool
	// StopReason is one of the Stop* values (with Done).
	StopReason string
}

// Client streams model replies. Implementations are safe for concurrent use.
type Client interface {
	// Stream sends req and calls emit for each event in order, ending with
	// one Done event when the reply completes (with Config.NoStream the
	// reply is requested whole and its text comes as one TextDelta). It returns nil after the Done
	// event; the error emit returns (and stops); ctx.Err() when ctx is
	// cancelled (errors.Is(err, context.Canceled) holds); or an *Error for a
	// provider failure, which may come after some events were emitted.
	Stream(ctx context.Context, req Request, emit func(Event) error) error
}

// New returns a Client for cfg. It fails when the provider is unknown or the
// base URL is not an absolute http(s) URL; it does not contact the provider.
func New(cfg Config) (Client, error) {
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("llm: base URL must be an absolute http(s) URL")
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	switch strings.ToLower(cfg.Provider) {
	case Anthropic:
		if cfg.Model == "" {
			cfg.Model = DefaultAnthropicModel
		}
		return newAnthropic(cfg), nil
	case OpenAI:
		if cfg.Model == "" {
			cfg.Model = DefaultOpenAIModel
		}
		return newOpenAI(cfg), nil
	default:
		return nil, fmt.Errorf("llm: unknown provider %q (want %q or %q)", cfg.Provider, Anthropic, OpenAI)
	}
}

// emitWhole emits a complete reply as Stream does: text (if any) as one
// TextDelta, each call as a ToolCall, then Done with stop.
func emitWhole(text string, calls []ToolCall, stop string, emit func(Event) error) error {
	if text != "" {
		if err := emit(Event{TextDelta: text}); err != nil {
			return err
		}
	}
	for i := range calls {
		if err := emit(Event{ToolCall: &calls[i]}); err != nil {
			return err
		}
	}
	return emit(Event{Done: true, StopReason: stop})
}

// inputOrEmpty returns in, or {} when in is empty or JSON null.
func inputOrEmpty(in json.RawMessage) json.RawMessage {
	s := strings.TrimSpace(string(in))
	if s == "" || s == "null" {
		return json.RawMessage("{}")
	}
	return in
}

// schemaMap decodes a tool's JSON Schema, defaulting to an empty object
// schema. It fails when the schema is not a JSON object.
func schemaMap(t Tool) (map[string]any, error) {
	m := map[string]any{}
	if len(strings.TrimSpace(string(t.InputSchema))) > 0 {
		if err := json.Unmarshal(t.InputSchema, &m); err != nil || m == nil {
			return nil, fmt.Errorf("llm: tool %q: input schema is not a JSON object", t.Name)
		}
	}
	if _, ok := m["type"]; !ok {
		m["type"] = "object"
	}
	if _, ok := m["properties"]; !ok {
		m["properties"] = map[string]any{}
	}
	return m, nil
}

// interruptedResult is the result text given to a tool call that has none in
// the history (the run stopped between the call and its result).
const interruptedResult = "error: no result: the run was interrupted"

// normalize makes a history acceptable to both providers, which refuse an
// assistant tool call without a result right after it, and a tool result
// that answers no call: it drops orphan RoleTool messages and adds an
// interruptedResult for each unanswered call, after the results present.
func normalize(msgs []Message) []Message {
	out := make([]Message, 0, len(msgs))
	for i := 0; i < len(msgs); i++ {
		m := msgs[i]
		if m.Role == RoleTool {
			continue // orphan: not right after its call
		}
		out = append(out, m)
		if m.Role != RoleAssistant || len(m.ToolCalls) == 0 {
			continue
		}
		pending := map[string]bool{}
		for _, tc := range m.ToolCalls {
			pending[tc.ID] = true
		}
		for i+1 < len(msgs) && msgs[i+1].Role == RoleTool {
			i++
			if pending[msgs[i].ToolCallID] {
				delete(pending, msgs[i].ToolCallID)
				out = append(out, msgs[i])
			}
		}
		for _, tc := range m.ToolCalls {
			if pending[tc.ID] {
				delete(pending, tc.ID)
				out = append(out, Message{Role: RoleTool, ToolCallID: tc.ID, ToolName: tc.Name, Text: interruptedResult})
			}
		}
	}
	return out
}
