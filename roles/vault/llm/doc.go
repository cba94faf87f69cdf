// Package llm streams chat replies, with tool calling, from model providers
// through their official Go SDKs (SPEC §5.4):
//
//   - Anthropic: the Messages API with "stream": true, through
//     github.com/anthropics/anthropic-sdk-go/v2. Server-sent events
//     message_start, content_block_start, content_block_delta (text_delta,
//     input_json_delta), content_block_stop, message_delta (stop_reason) and
//     message_stop; tool input arrives as partial JSON strings that are
//     concatenated until content_block_stop. Source:
//     https://docs.anthropic.com/en/docs/build-with-claude/streaming and
//     https://docs.anthropic.com/en/docs/build-with-claude/tool-use.
//   - OpenAI and every OpenAI-compatible server (Ollama, vLLM, LM Studio,
//     OpenRouter, LiteLLM) through a custom base URL: the Chat Completions
//     API with "stream": true, through github.com/openai/openai-go/v3.
//     "data:" lines carrying chat.completion.chunk objects whose
//     choices[0].delta holds content or tool_calls fragments keyed by index,
//     a final finish_reason, then "data: [DONE]". Source:
//     https://platform.openai.com/docs/api-reference/chat-streaming and
//     https://platform.openai.com/docs/guides/function-calling.
//
// With [Config].NoStream a turn is one non-streaming request instead
// (Anthropic Messages.New, OpenAI Chat.Completions.New) and the reply's text
// arrives whole, as one TextDelta, followed by its tool calls and Done: the
// same events, so [RunTools] works unchanged. A model provider key shared
// through the relay is used this way, since a stream of server-sent events
// does not fit the relay's bounded (64 KiB) envelopes.
//
// [Client.Stream] runs one model turn; [RunTools] is the agent loop that
// calls tools until the model answers in text. Provider failures come back as
// [*Error], whose Message is safe to show to the user.
//
// Clients never read credentials or base URLs from the environment
// (ANTHROPIC_API_KEY, OPENAI_API_KEY...): in a multi-tenant server every key
// comes from a user's vault through [Config].
package llm
