package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

// anthropicClient streams from the Anthropic Messages API
// (https://docs.anthropic.com/en/api/messages).
type anthropicClient struct {
	cfg      Config
	messages anthropic.MessageService
}

func newAnthropic(cfg Config) *anthropicClient {
	opts := []option.RequestOption{
		// Read nothing from the environment (ANTHROPIC_API_KEY,
		// ANTHROPIC_BASE_URL, profiles on disk): keys come from the vault.
		option.WithoutEnvironmentDefaults(),
		option.WithHTTPClient(cfg.HTTPClient),
		option.WithMaxRetries(0),
	}
	if cfg.APIKey != "" {
		opts = append(opts, option.WithAPIKey(cfg.APIKey))
	}
	if cfg.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(cfg.BaseURL))
	}
	c := anthropic.NewClient(opts...)
	return &anthropicClient{cfg: cfg, messages: c.Messages}
}

// Stream implements Client with a streaming Messages request. Text arrives as
// content_block_delta/text_delta events; a tool_use block's input arrives as
// input_json_delta partial_json strings that are joined and emitted as one
// ToolCall at its content_block_stop; message_delta carries the stop_reason
// and message_stop ends the reply
// (https://docs.anthropic.com/en/docs/build-with-claude/streaming).
func (c *anthropicClient) Stream(ctx context.Context, req Request, emit func(Event) error) error {
	params, err := c.params(req)
	if err != nil {
		return err
	}
	if c.cfg.NoStream {
		return c.once(ctx, params, emit)
	}
	stream := c.messages.NewStreaming(ctx, params)
	defer stream.Close()

	type block struct {
		isTool   bool
		id, name string
		input    strings.Builder
	}
	blocks := map[int64]*block{}
	stop := ""
	done := false
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "content_block_start":
			cb := ev.ContentBlock
			b := &block{isTool: cb.Type == "tool_use", id: cb.ID, name: cb.Name}
			blocks[ev.Index] = b
			if cb.Type == "text" && cb.Text != "" {
				if err := emit(Event{TextDelta: cb.Text}); err != nil {
					return err
				}
			}
		case "content_block_delta":
			switch ev.Delta.Type {
			case "text_delta":
				if ev.Delta.Text == "" {
					continue
				}
				if err := emit(Event{TextDelta: ev.Delta.Text}); err != nil {
					return err
				}
			case "input_json_delta":
				if b := blocks[ev.Index]; b != nil {
					b.input.WriteString(ev.Delta.PartialJSON)
				}
			}
		case "content_block_stop":
			b := blocks[ev.Index]
			delete(blocks, ev.Index)
			if b == nil || !b.isTool {
				continue
			}
			input := inputOrEmpty(json.RawMessage(b.input.String()))
			if !json.Valid(input) {
				return &Error{Kind: KindProvider, Err: fmt.Errorf("tool %q input is not JSON", b.name),
					Message: fmt.Sprintf("Anthropic sent tool input for %q that is not valid JSON", b.name)}
			}
			if err := emit(Event{ToolCall: &ToolCall{ID: b.id, Name: b.name, Input: input}}); err != nil {
				return err
			}
		case "message_delta":
			if r := string(ev.Delta.StopReason); r != "" {
				stop = r
			}
		case "message_stop":
			done = true
		}
	}
	if err := stream.Err(); err != nil {
		return c.mapError(ctx, err)
	}
	if ctx.Err() != nil {
		return transportError(ctx, "Anthropic", ctx.Err())
	}
	if !done {
		return truncatedError("Anthropic")
	}
	if stop == "" {
		stop = StopEndTurn
	}
	return emit(Event{Done: true, StopReason: stop})
}

// once runs a turn as one non-streaming Messages request (Config.NoStream)
// and emits what Stream would: the text of all text blocks joined as one
// TextDelta, then each tool_use block as a ToolCall, in order, then Done with
// the message's stop_reason
// (https://docs.anthropic.com/en/api/messages, response "content").
func (c *anthropicClient) once(ctx context.Context, params anthropic.MessageNewParams, emit func(Event) error) error {
	msg, err := c.messages.New(ctx, params)
	if err != nil {
		return c.mapError(ctx, err)
	}
	if ctx.Err() != nil {
		return transportError(ctx, "Anthropic", ctx.Err())
	}
	var text strings.Builder
	var calls []ToolCall
	for _, b := range msg.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			input := inputOrEmpty(b.Input)
			if !json.Valid(input) {
				return &Error{Kind: KindProvider, Err: fmt.Errorf("tool %q input is not JSON", b.Name),
					Message: fmt.Sprintf("Anthropic sent tool input for %q that is not valid JSON", b.Name)}
			}
			calls = append(calls, ToolCall{ID: b.ID, Name: b.Name, Input: input})
		}
	}
	stop := string(msg.StopReason)
	if stop == "" {
		stop = StopEndTurn
	}
	return emitWhole(text.String(), calls, stop, emit)
}

// mapError turns an SDK error into an *Error, or ctx.Err().
func (c *anthropicClient) mapError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return transportError(ctx, "Anthropic", err)
	}
	var apiErr *anthropic.Error
	if errors.As(err, &apiErr) {
		pe := providerError{status: apiErr.StatusCode, typ: string(apiErr.Type()), message: apiErr.Message}
		if apiErr.Response != nil {
			pe.retry = apiErr.Response.Header.Get("Retry-After")
		}
		return classify("Anthropic", c.cfg.Model, c.cfg.APIKey, pe, err)
	}
	return transportError(ctx, "Anthropic", err)
}

// params builds the Messages request. Consecutive messages that map to the
// same Anthropic role are merged, since tool results travel as tool_result
// blocks in a user message and must lead that message's content.
func (c *anthropicClient) params(req Request) (anthropic.MessageNewParams, error) {
	maxTokens := req.MaxTokens
	if maxTokens <= 0 {
		maxTokens = DefaultMaxTokens
	}
	p := anthropic.MessageNewParams{
		Model:     c.cfg.Model,
		MaxTokens: int64(maxTokens),
	}
	if req.System != "" {
		p.System = []anthropic.TextBlockParam{{Text: req.System}}
	}
	for _, t := range req.Tools {
		m, err := schemaMap(t)
		if err != nil {
			return p, err
		}
		schema := anthropic.ToolInputSchemaParam{Properties: m["properties"], ExtraFields: map[string]any{}}
		if req, ok := m["required"].([]any); ok {
			for _, r := range req {
				if s, ok := r.(string); ok {
					schema.Required = append(schema.Required, s)
				}
			}
		}
		for k, v := range m {
			if k != "type" && k != "properties" && k != "required" {
				schema.ExtraFields[k] = v
			}
		}
		tool := anthropic.ToolParam{Name: t.Name, InputSchema: schema}
		if t.Description != "" {
			tool.Description = anthropic.String(t.Description)
		}
		p.Tools = append(p.Tools, anthropic.ToolUnionParam{OfTool: &tool})
	}

	var role string
	var blocks []anthropic.ContentBlockParamUnion
	flush := func() {
		if len(blocks) == 0 {
			return
		}
		if role == RoleAssistant {
			p.Messages = append(p.Messages, anthropic.NewAssistantMessage(blocks...))
		} else {
			p.Messages = append(p.Messages, anthropic.NewUserMessage(blocks...))
		}
		blocks = nil
	}
	for _, m := range normalize(req.Messages) {
		r := RoleUser
		if m.Role == RoleAssistant {
			r = RoleAssistant
		}
		if r != role {
			flush()
			role = r
		}
		switch m.Role {
		case RoleTool:
			// tool_result blocks go before any text in the same user message.
			n := 0
			for n < len(blocks) && blocks[n].OfToolResult != nil {
				n++
			}
			// A result that starts "error: " (RunTools' convention for a
			// failed tool) is flagged is_error. Empty text blocks are
			// refused by the API.
			text := m.Text
			if text == "" {
				text = "(no output)"
			}
			isErr := strings.HasPrefix(text, "error: ")
			blocks = append(blocks[:n], append([]anthropic.ContentBlockParamUnion{
				anthropic.NewToolResultBlock(m.ToolCallID, text, isErr),
			}, blocks[n:]...)...)
		case RoleAssistant:
			if m.Text != "" {
				blocks = append(blocks, anthropic.NewTextBlock(m.Text))
			}
			for _, tc := range m.ToolCalls {
				blocks = append(blocks, anthropic.NewToolUseBlock(tc.ID, inputOrEmpty(tc.Input), tc.Name))
			}
		default:
			if m.Text != "" {
				blocks = append(blocks, anthropic.NewTextBlock(m.Text))
			}
		}
	}
	flush()
	return p, nil
}
