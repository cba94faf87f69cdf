package llm

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// DefaultMaxRounds is RunTools' round limit when maxRounds <= 0.
const DefaultMaxRounds = 5

// ErrTooManyRounds is returned by RunTools when the model still asks for
// tools after the last allowed round. The messages returned with it are
// complete and may be kept.
var ErrTooManyRounds = errors.New("llm: the model kept calling tools past the round limit")

// ToolFunc runs a tool. input is the model's JSON object (untrusted: validate
// it). The returned string goes back to the model as the tool result; an
// error goes back as "error: <err>", so its text must be fit for the model
// (and the user) to read.
type ToolFunc func(ctx context.Context, input json.RawMessage) (string, error)

// RunTools is the agent loop: it streams req; when the model asks for tools
// it runs them from tools, appends the assistant message and the tool
// results, and streams again, for at most maxRounds model turns (0 =
// DefaultMaxRounds).
//
// emit gets every TextDelta and ToolCall event, a ToolResult event for each
// tool run, and one Done event at the very end (the Done events of
// tool-calling turns are not forwarded). An unknown tool, or a tool error,
// becomes a result text "error: ...", never a RunTools error; tools run one
// after another, in the order the model asked.
//
// It returns the messages added during the loop, in order (assistant
// messages with their text and tool calls, then RoleTool results), so the
// caller can persist them, along with: nil; ErrTooManyRounds; the error emit
// returned; ctx.Err() on cancellation; or an *Error from the provider. On
// error the messages of finished steps are still returned; the text of a
// turn cut short is not.
func RunTools(ctx context.Context, client Client, req Request, tools map[string]ToolFunc, emit func(Event) error, maxRounds int) (final []Message, err error) {
	if maxRounds <= 0 {
		maxRounds = DefaultMaxRounds
	}
	history := slices.Clone(req.Messages)
	for range maxRounds {
		var text strings.Builder
		var calls []ToolCall
		var done Event
		turn := req
		turn.Messages = history
		err := client.Stream(ctx, turn, func(ev Event) error {
			switch {
			case ev.Done:
				done = ev
				return nil
			case ev.ToolCall != nil:
				calls = append(calls, *ev.ToolCall)
			default:
				text.WriteString(ev.TextDelta)
			}
			return emit(ev)
		})
		if err != nil {
			return final, err
		}
		msg := Message{Role: RoleAssistant, Text: text.String(), ToolCalls: calls}
		if msg.Text != "" || len(calls) > 0 {
			history = append(history, msg)
			final = append(final, msg)
		}
		if len(calls) == 0 {
			return final, emit(done)
		}
		for _, call := range calls {
			result := runTool(ctx, tools, call)
			if ctx.Err() != nil {
				return final, ctx.Err()
			}
			history = append(history, result)
			final = append(final, result)
			if err := emit(Event{ToolResult: &result}); err != nil {
				return final, err
			}
		}
	}
	return final, ErrTooManyRounds
}

// runTool runs one call and returns its RoleTool message.
func runTool(ctx context.Context, tools map[string]ToolFunc, call ToolCall) Message {
	res := Message{Role: RoleTool, ToolCallID: call.ID, ToolName: call.Name}
	fn := tools[call.Name]
	if fn == nil {
		res.Text = "error: unknown tool " + call.Name
		return res
	}
	out, err := fn(ctx, call.Input)
	if err != nil {
		res.Text = "error: " + err.Error()
		return res
	}
	res.Text = out
	return res
}
