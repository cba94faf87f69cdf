package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"
)

// openAIBaseURL is the public API root; Chat Completions is at
// <base>chat/completions.
const openAIBaseURL = "https://api.openai.com/v1/"

// openAIClient streams from the OpenAI Chat Completions API
// (https://platform.openai.com/docs/api-reference/chat/create) or an
// OpenAI-compatible server.
type openAIClient struct {
	cfg  Config
	name string // display name in error messages
	chat openai.ChatCompletionService
}

func newOpenAI(cfg Config) *openAIClient {
	base := cfg.BaseURL
	name := "OpenAI"
	if base == "" {
		base = openAIBaseURL
	} else if u, err := url.Parse(base); err == nil && u.Host != "api.openai.com" {
		name = "the model server at " + u.Host
	}
	// The service is built directly rather than through openai.NewClient,
	// which would read OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID and
	// more from the environment; keys come from the vault.
	opts := []option.RequestOption{
		option.WithHTTPClient(cfg.HTTPClient),
		option.WithBaseURL(base),
		option.WithMaxRetries(0),
	}
	if cfg.APIKey != "" {
		opts = append(opts, option.WithAPIKey(cfg.APIKey))
	}
	return &openAIClient{cfg: cfg, name: name, chat: openai.NewChatCompletionService(opts...)}
}

// Stream implements Client with a streaming Chat Completions request. Text
// arrives in choices[0].delta.content; tool calls arrive as
// choices[0].delta.tool_calls fragments keyed by index (the first carrying id
// and function.name, later ones function.arguments pieces), which are joined
// and emitted, in index order, once finish_reason arrives
// (https://platform.openai.com/docs/api-reference/chat-streaming,
// https://platform.openai.com/docs/guides/function-calling).
func (c *openAIClient) Stream(ctx context.Context, req Request, emit func(Event) error) error {
	params, err := c.params(req)
	if err != nil {
		return err
	}
	if c.cfg.NoStream {
		return c.once(ctx, params, emit)
	}
	stream := c.chat.NewStreaming(ctx, params)
	defer stream.Close()

	type call struct {
		id, name string
		args     strings.Builder
	}
	calls := map[int64]*call{}
	finish := ""
	for stream.Next() {
		chunk := stream.Current()
		for _, ch := range chunk.Choices {
			if ch.Index != 0 {
				continue
			}
			if ch.Delta.Content != "" {
				if err := emit(Event{TextDelta: ch.Delta.Content}); err != nil {
					return err
				}
			}
			for _, tc := range ch.Delta.ToolCalls {
				cl := calls[tc.Index]
				if cl == nil {
					cl = &call{}
					calls[tc.Index] = cl
				}
				if tc.ID != "" {
					cl.id = tc.ID
				}
				if tc.Function.Name != "" {
					cl.name = tc.Function.Name
				}
				cl.args.WriteString(tc.Function.Arguments)
			}
			if ch.FinishReason != "" {
				finish = ch.FinishReason
			}
		}
	}
	if err := stream.Err(); err != nil {
		return c.mapError(ctx, err)
	}
	if ctx.Err() != nil {
		return transportError(ctx, c.name, ctx.Err())
	}
	if finish == "" {
		return truncatedError(c.name)
	}

	idx := make([]int64, 0, len(calls))
	for i := range calls {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	for _, i := range idx {
		cl := calls[i]
		input := inputOrEmpty(json.RawMessage(cl.args.String()))
		if !json.Valid(input) {
			return &Error{Kind: KindProvider, Err: fmt.Errorf("tool %q arguments are not JSON", cl.name),
				Message: fmt.Sprintf("%s sent tool arguments for %q that are not valid JSON", c.name, cl.name)}
		}
		if cl.id == "" {
			// Some compatible servers omit ids; any unique id round-trips.
			cl.id = fmt.Sprintf("call_%d", i)
		}
		if err := emit(Event{ToolCall: &ToolCall{ID: cl.id, Name: cl.name, Input: input}}); err != nil {
			return err
		}
	}
	return emit(Event{Done: true, StopReason: openAIStop(finish, len(calls) > 0)})
}

// openAIStop maps a finish_reason to a Stop* value.
func openAIStop(finish string, calledTools bool) string {
	stop := finish
	switch finish {
	case "stop":
		stop = StopEndTurn
	case "tool_calls", "function_call":
		stop = StopToolUse
	case "length":
		stop = StopMaxTokens
	}
	if calledTools && stop == StopEndTurn {
		// Some compatible servers end a tool-calling turn with "stop".
		stop = StopToolUse
	}
	return stop
}

// once runs a turn as one non-streaming Chat Completions request
// (Config.NoStream) and emits what Stream would: choices[0].message.content
// as one TextDelta, then each of its tool_calls (type "function") as a
// ToolCall, in order, then Done with the mapped finish_reason
// (https://platform.openai.com/docs/api-reference/chat/object).
func (c *openAIClient) once(ctx context.Context, params openai.ChatCompletionNewParams, emit func(Event) error) error {
	res, err := c.chat.New(ctx, params)
	if err != nil {
		return c.mapError(ctx, err)
	}
	if ctx.Err() != nil {
		return transportError(ctx, c.name, ctx.Err())
	}
	var choice *openai.ChatCompletionChoice
	for i := range res.Choices {
		if res.Choices[i].Index == 0 {
			choice = &res.Choices[i]
			break
		}
	}
	if choice == nil || choice.FinishReason == "" {
		return truncatedError(c.name)
	}
	var calls []ToolCall
	for i, tc := range choice.Message.ToolCalls {
		if tc.Type != "" && tc.Type != "function" {
			continue
		}
		input := inputOrEmpty(json.RawMessage(tc.Function.Arguments))
		if !json.Valid(input) {
			return &Error{Kind: KindProvider, Err: fmt.Errorf("tool %q arguments are not JSON", tc.Function.Name),
				Message: fmt.Sprintf("%s sent tool arguments for %q that are not valid JSON", c.name, tc.Function.Name)}
		}
		id := tc.ID
		if id == "" {
			id = fmt.Sprintf("call_%d", i)
		}
		calls = append(calls, ToolCall{ID: id, Name: tc.Function.Name, Input: input})
	}
	return emitWhole(choice.Message.Content, calls, openAIStop(choice.FinishReason, len(calls) > 0), emit)
}

// mapError turns an SDK error into an *Error, or ctx.Err().
func (c *openAIClient) mapError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return transportError(ctx, c.name, err)
	}
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		pe := providerError{status: apiErr.StatusCode, typ: apiErr.Type, code: apiErr.Code, message: apiErr.Message}
		if apiErr.Response != nil {
			pe.retry = apiErr.Response.Header.Get("Retry-After")
		}
		return classify(c.name, c.cfg.Model, c.cfg.APIKey, pe, err)
	}
	// An error inside a 200 stream: data: {"error":{...}}.
	var streamErr *ssestream.StreamError
	if errors.As(err, &streamErr) {
		var body struct {
			Error struct {
				Message string          `json:"message"`
				Type    string          `json:"type"`
				Code    json.RawMessage `json:"code"`
			} `json:"error"`
		}
		_ = json.Unmarshal(streamErr.Event.Data, &body)
		var code string
		_ = json.Unmarshal(body.Error.Code, &code)
		pe := providerError{status: 200, typ: body.Error.Type, code: code, message: body.Error.Message}
		if pe.typ == "" && pe.code == "" {
			pe.typ = "server_error"
		}
		return classify(c.name, c.cfg.Model, c.cfg.APIKey, pe, err)
	}
	return transportError(ctx, c.name, err)
}

// params builds the Chat Completions request. The output cap goes in
// max_completion_tokens for api.openai.com (newer models refuse max_tokens)
// and in max_tokens for compatible servers, most of which know only that.
func (c *openAIClient) params(req Request) (openai.ChatCompletionNewParams, error) {
	p := openai.ChatCompletionNewParams{Model: c.cfg.Model}
	if req.MaxTokens > 0 {
		if c.cfg.BaseURL == "" {
			p.MaxCompletionTokens = openai.Int(int64(req.MaxTokens))
		} else {
			p.MaxTokens = openai.Int(int64(req.MaxTokens))
		}
	}
	for _, t := range req.Tools {
		m, err := schemaMap(t)
		if err != nil {
			return p, err
		}
		fn := shared.FunctionDefinitionParam{Name: t.Name, Parameters: shared.FunctionParameters(m)}
		if t.Description != "" {
			fn.Description = openai.String(t.Description)
		}
		p.Tools = append(p.Tools, openai.ChatCompletionFunctionTool(fn))
	}
	if req.System != "" {
		p.Messages = append(p.Messages, openai.SystemMessage(req.System))
	}
	for _, m := range normalize(req.Messages) {
		switch m.Role {
		case RoleAssistant:
			var a openai.ChatCompletionAssistantMessageParam
			if m.Text != "" {
				a.Content.OfString = openai.String(m.Text)
			}
			for _, tc := range m.ToolCalls {
				a.ToolCalls = append(a.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
					OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
						ID: tc.ID,
						Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{
							Name: tc.Name, Arguments: string(inputOrEmpty(tc.Input)),
						},
					},
				})
			}
			if m.Text == "" && len(a.ToolCalls) == 0 {
				continue
			}
			p.Messages = append(p.Messages, openai.ChatCompletionMessageParamUnion{OfAssistant: &a})
		case RoleTool:
			p.Messages = append(p.Messages, openai.ToolMessage(m.Text, m.ToolCallID))
		default:
			p.Messages = append(p.Messages, openai.UserMessage(m.Text))
		}
	}
	return p, nil
}
