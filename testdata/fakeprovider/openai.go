package fakeprovider

import (
	"encoding/json"
	"net/http"
	"strings"
)

// serveOpenAI answers POST /v1/chat/completions (and /chat/completions) like
// the OpenAI Chat Completions API
// (https://platform.openai.com/docs/api-reference/chat/create, streaming as
// in https://platform.openai.com/docs/api-reference/chat-streaming).
func (s *Server) serveOpenAI(w http.ResponseWriter, r *http.Request) {
	req, ok := s.record(r)
	if !ok {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request.")
		return
	}
	key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch s.admit(key, req.Model) {
	case ErrAuth:
		status, typ, code, msg := openAIErrorFor(ErrAuth, req.Model)
		openAIError(w, status, typ, code, msg)
		return
	case ErrNotFoundModel:
		status, typ, code, msg := openAIErrorFor(ErrNotFoundModel, req.Model)
		openAIError(w, status, typ, code, msg)
		return
	}
	rp := s.next(func() string { return lastOpenAIUserText(req.Messages) })
	etype, isErr := rp.errorType()
	if isErr && !(rp.MidStream && req.Stream) {
		status, typ, code, msg := openAIErrorFor(etype, req.Model)
		if rp.Status >= 400 {
			status = rp.Status
		}
		openAIError(w, status, typ, code, msg)
		return
	}

	id := s.nextID("chatcmpl-fake")
	var callID string
	if rp.ToolCall != nil {
		callID = rp.ToolCall.ID
		if callID == "" {
			callID = s.nextID("call_fake_")
		}
	}
	finish := "stop"
	if rp.ToolCall != nil {
		finish = "tool_calls"
	}

	if !req.Stream {
		msg := map[string]any{"role": "assistant", "content": nil, "refusal": nil}
		if rp.Text != "" {
			msg["content"] = rp.Text
		}
		if rp.ToolCall != nil {
			msg["tool_calls"] = []any{map[string]any{
				"id": callID, "type": "function",
				"function": map[string]any{"name": rp.ToolCall.Name, "arguments": rp.ToolCall.toolInput()},
			}}
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": fixedCreated, "model": req.Model,
			"choices": []any{map[string]any{
				"index": 0, "message": msg, "logprobs": nil, "finish_reason": finish,
			}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
		})
		return
	}

	sw := newSSE(w, r, rp.ChunkDelay)
	chunk := func(delta map[string]any, finishReason any) bool {
		return sw.event("", map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": fixedCreated, "model": req.Model,
			"system_fingerprint": "fp_fake",
			"choices": []any{map[string]any{
				"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finishReason,
			}},
		})
	}
	complete := func() bool {
		if !chunk(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil) {
			return false
		}
		for _, piece := range split(rp.Text, rp.Chunks) {
			if !sw.pace() || !chunk(map[string]any{"content": piece}, nil) {
				return false
			}
		}
		if isErr {
			_, typ, code, msg := openAIErrorFor(etype, req.Model)
			return sw.event("", map[string]any{"error": openAIErrorBody(typ, code, msg)})
		}
		if rp.ToolCall != nil {
			if !chunk(map[string]any{"tool_calls": []any{map[string]any{
				"index": 0, "id": callID, "type": "function",
				"function": map[string]any{"name": rp.ToolCall.Name, "arguments": ""},
			}}}, nil) {
				return false
			}
			for _, piece := range splitJSON(rp.ToolCall.toolInput()) {
				if !sw.pace() || !chunk(map[string]any{"tool_calls": []any{map[string]any{
					"index": 0, "function": map[string]any{"arguments": piece},
				}}}, nil) {
					return false
				}
			}
		}
		return chunk(map[string]any{}, finish) && sw.event("", "[DONE]")
	}()
	if !complete {
		s.countAbort()
	}
}

// openAIErrorFor returns the status, type, code and message the real API
// uses for one of the Err* kinds
// (https://platform.openai.com/docs/guides/error-codes).
func openAIErrorFor(kind, model string) (status int, typ, code, msg string) {
	switch kind {
	case ErrAuth:
		return http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided"
	case ErrRateLimit:
		return http.StatusTooManyRequests, "requests", "rate_limit_exceeded",
			"Rate limit reached for requests. Please try again in 20s."
	case ErrOverloaded:
		return http.StatusServiceUnavailable, "server_error", "",
			"The engine is currently overloaded, please try again later"
	case ErrNotFoundModel:
		return http.StatusNotFound, "invalid_request_error", "model_not_found",
			"The model `" + model + "` does not exist or you do not have access to it."
	case ErrBadRequest:
		return http.StatusBadRequest, "invalid_request_error", "",
			"Invalid 'messages': empty array. Expected an array with minimum length 1."
	default:
		return http.StatusInternalServerError, "server_error", "",
			"The server had an error while processing your request. Sorry about that!"
	}
}

// openAIErrorBody is the object under "error": {message, type, param, code},
// code null when empty.
func openAIErrorBody(typ, code, msg string) map[string]any {
	var c any
	if code != "" {
		c = code
	}
	return map[string]any{"message": msg, "type": typ, "param": nil, "code": c}
}

// openAIError writes {"error":{"message","type","param","code"}}.
func openAIError(w http.ResponseWriter, status int, typ, code, msg string) {
	writeJSON(w, status, map[string]any{"error": openAIErrorBody(typ, code, msg)})
}

// lastOpenAIUserText returns the text of the last user message that has any.
func lastOpenAIUserText(raw json.RawMessage) string {
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
