package fakeprovider

import (
	"encoding/json"
	"net/http"
	"strings"
)

// serveAnthropic answers POST /v1/messages like the Anthropic Messages API
// (https://docs.anthropic.com/en/api/messages, streaming as in
// https://docs.anthropic.com/en/docs/build-with-claude/streaming).
func (s *Server) serveAnthropic(w http.ResponseWriter, r *http.Request) {
	req, ok := s.record(r)
	if !ok {
		anthropicError(w, http.StatusBadRequest, "invalid_request_error", "invalid JSON body")
		return
	}
	// The API takes the key as x-api-key; anthropic-sdk-go v2 sends it as
	// "Authorization: Bearer <key>", which the API also accepts.
	key := r.Header.Get("X-Api-Key")
	if key == "" {
		key, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	switch s.admit(key, req.Model) {
	case ErrAuth:
		anthropicError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return
	case ErrNotFoundModel:
		anthropicError(w, http.StatusNotFound, "not_found_error", "model: "+req.Model)
		return
	}
	rp := s.next(func() string { return lastAnthropicUserText(req.Messages) })
	etype, isErr := rp.errorType()
	if isErr && !(rp.MidStream && req.Stream) {
		status, typ, msg := anthropicErrorFor(etype, req.Model)
		if rp.Status >= 400 {
			status = rp.Status
		}
		anthropicError(w, status, typ, msg)
		return
	}

	msgID := s.nextID("msg_fake_")
	var toolID string
	if rp.ToolCall != nil {
		toolID = rp.ToolCall.ID
		if toolID == "" {
			toolID = s.nextID("toolu_fake_")
		}
	}
	stop := "end_turn"
	if rp.ToolCall != nil {
		stop = "tool_use"
	}
	usage := map[string]any{"input_tokens": 10, "output_tokens": 1}

	if !req.Stream {
		content := []any{}
		if rp.Text != "" {
			content = append(content, map[string]any{"type": "text", "text": rp.Text})
		}
		if rp.ToolCall != nil {
			content = append(content, map[string]any{
				"type": "tool_use", "id": toolID, "name": rp.ToolCall.Name,
				"input": json.RawMessage(rp.ToolCall.toolInput()),
			})
		}
		w.Header().Set("Request-Id", "req_fake")
		writeJSON(w, http.StatusOK, map[string]any{
			"id": msgID, "type": "message", "role": "assistant", "model": req.Model,
			"content": content, "stop_reason": stop, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": 10, "output_tokens": len(strings.Fields(rp.Text)) + 1},
		})
		return
	}

	w.Header().Set("Request-Id", "req_fake")
	sw := newSSE(w, r, rp.ChunkDelay)
	complete := s.streamAnthropic(sw, rp, req.Model, msgID, toolID, stop, usage, etype, isErr)
	if !complete {
		s.countAbort()
	}
}

// streamAnthropic writes the event sequence of one reply. It reports false
// when the client went away first.
func (s *Server) streamAnthropic(sw *sseWriter, rp Reply, model, msgID, toolID, stop string, usage map[string]any, etype string, isErr bool) bool {
	ok := sw.event("message_start", map[string]any{
		"type": "message_start",
		"message": map[string]any{
			"id": msgID, "type": "message", "role": "assistant", "model": model,
			"content": []any{}, "stop_reason": nil, "stop_sequence": nil, "usage": usage,
		},
	})
	index := 0
	if ok && rp.Text != "" {
		ok = sw.event("content_block_start", map[string]any{
			"type": "content_block_start", "index": index,
			"content_block": map[string]any{"type": "text", "text": ""},
		}) && sw.event("ping", map[string]any{"type": "ping"})
		for _, piece := range split(rp.Text, rp.Chunks) {
			if !ok || !sw.pace() {
				return false
			}
			ok = sw.event("content_block_delta", map[string]any{
				"type": "content_block_delta", "index": index,
				"delta": map[string]any{"type": "text_delta", "text": piece},
			})
		}
		ok = ok && sw.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	if ok && isErr {
		_, typ, msg := anthropicErrorFor(etype, model)
		return sw.event("error", map[string]any{
			"type": "error", "error": map[string]any{"type": typ, "message": msg},
		})
	}
	if ok && rp.ToolCall != nil {
		ok = sw.event("content_block_start", map[string]any{
			"type": "content_block_start", "index": index,
			"content_block": map[string]any{
				"type": "tool_use", "id": toolID, "name": rp.ToolCall.Name, "input": map[string]any{},
			},
		})
		for _, piece := range splitJSON(rp.ToolCall.toolInput()) {
			if !ok || !sw.pace() {
				return false
			}
			ok = sw.event("content_block_delta", map[string]any{
				"type": "content_block_delta", "index": index,
				"delta": map[string]any{"type": "input_json_delta", "partial_json": piece},
			})
		}
		ok = ok && sw.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
	}
	return ok &&
		sw.event("message_delta", map[string]any{
			"type":  "message_delta",
			"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": len(strings.Fields(rp.Text)) + 1},
		}) &&
		sw.event("message_stop", map[string]any{"type": "message_stop"})
}

// anthropicErrorFor returns the status, error type and message the real API
// uses for one of the Err* kinds (https://docs.anthropic.com/en/api/errors).
func anthropicErrorFor(kind, model string) (status int, typ, msg string) {
	switch kind {
	case ErrAuth:
		return http.StatusUnauthorized, "authentication_error", "invalid x-api-key"
	case ErrRateLimit:
		return http.StatusTooManyRequests, "rate_limit_error",
			"This request would exceed the rate limit for your organization of 50 requests per minute."
	case ErrOverloaded:
		return 529, "overloaded_error", "Overloaded"
	case ErrNotFoundModel:
		return http.StatusNotFound, "not_found_error", "model: " + model
	case ErrBadRequest:
		return http.StatusBadRequest, "invalid_request_error", "messages: at least one message is required"
	default:
		return http.StatusInternalServerError, "api_error", "Internal server error"
	}
}

// anthropicError writes {"type":"error","error":{"type","message"},"request_id"}.
func anthropicError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Request-Id", "req_fake")
	writeJSON(w, status, map[string]any{
		"type":       "error",
		"error":      map[string]any{"type": typ, "message": msg},
		"request_id": "req_fake",
	})
}

// lastAnthropicUserText returns the text of the last user message that has
// any: its string content or the concatenation of its text blocks.
func lastAnthropicUserText(raw json.RawMessage) string {
	var msgs []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &msgs) != nil {
		return ""
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role != "user" {
			continue
		}
		if t := contentText(msgs[i].Content); t != "" {
			return t
		}
	}
	return ""
}

// contentText returns a content field's text: the string itself, or the
// concatenated "text" of its parts of type "text".
func contentText(raw json.RawMessage) string {
	var str string
	if json.Unmarshal(raw, &str) == nil {
		return str
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}
