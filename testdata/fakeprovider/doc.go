// Package fakeprovider is a fake model provider for tests: an HTTP server
// that speaks the real wire formats of the Anthropic Messages API and the
// OpenAI Chat Completions API, streaming included, so code under test can use
// the official SDKs unchanged by pointing their base URL at [Server.URL].
//
// Endpoints:
//
//   - POST /v1/messages: Anthropic Messages. With "stream": true it answers
//     with server-sent events in the documented order (message_start,
//     content_block_start, ping, content_block_delta with text_delta or
//     input_json_delta, content_block_stop, message_delta carrying
//     stop_reason, message_stop); without it, one Message JSON object.
//     Source: https://docs.anthropic.com/en/docs/build-with-claude/streaming
//     and https://docs.anthropic.com/en/api/messages.
//   - POST /v1/chat/completions, and POST /chat/completions for clients whose
//     base URL already ends in /v1: OpenAI Chat Completions. With
//     "stream": true it answers with "data: {chat.completion.chunk}" lines
//     whose choices[0].delta carries content or tool_calls (by index), the
//     last chunk carrying finish_reason, then "data: [DONE]". Source:
//     https://platform.openai.com/docs/api-reference/chat-streaming and
//     https://platform.openai.com/docs/guides/function-calling.
//
// Errors use each provider's documented JSON error shape and status codes
// (https://docs.anthropic.com/en/api/errors,
// https://platform.openai.com/docs/guides/error-codes).
//
// Authentication ([Server.SetKey]): Anthropic takes the key as x-api-key or
// as "Authorization: Bearer" (anthropic-sdk-go v2 sends the latter); OpenAI
// as "Authorization: Bearer".
//
// Replies are scripted with [Server.Script]; with nothing queued the server
// echoes "echo: <last user text>". Everything is deterministic: ids come from
// a counter and timestamps are fixed.
package fakeprovider
