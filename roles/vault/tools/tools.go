// Package tools is the registry of the tools a vault's agent can call
// (names prefixed "ocmt_", SPEC §5.4), handed to the model through
// [llm.RunTools] and served to outside agent runtimes over MCP.
package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/ocmt/ocmt/roles/vault/llm"
	"github.com/ocmt/ocmt/version"
)

// Tool is one tool: what the model sees and the function that runs it.
type Tool struct {
	// Spec is the name, description and JSON Schema input shown to models
	// and MCP clients.
	Spec llm.Tool
	// Func runs the tool. Its error text is shown to the model and the user.
	Func llm.ToolFunc
}

// Specs returns the specs of tools, in order, for llm.Request.Tools.
func Specs(tools []Tool) []llm.Tool {
	out := make([]llm.Tool, len(tools))
	for i, t := range tools {
		out[i] = t.Spec
	}
	return out
}

// Funcs returns tools by name, for llm.RunTools.
func Funcs(tools []Tool) map[string]llm.ToolFunc {
	out := make(map[string]llm.ToolFunc, len(tools))
	for _, t := range tools {
		out[t.Spec.Name] = t.Func
	}
	return out
}

// MCPHandler serves tools over the MCP streamable HTTP transport
// (https://modelcontextprotocol.io/specification/2025-06-18/basic/transports#streamable-http)
// with the official Go SDK, statelessly: every POST is a whole JSON-RPC
// exchange, no Mcp-Session-Id is kept, and GET answers 405. tools/list
// returns each Spec (a nil InputSchema becomes {"type":"object"});
// tools/call runs Func with the call's arguments ({} when absent) and
// answers one text content item, with isError set when Func fails.
//
// The handler authenticates nobody: mount it behind the vault's own
// authentication. It keeps the SDK's DNS-rebinding guard (a request reaching
// a loopback address with a non-loopback Host header gets 403).
//
// It panics when a Spec's InputSchema is not a JSON object or has a "type"
// other than "object", a programming error.
func MCPHandler(tools []Tool) http.Handler {
	srv := mcp.NewServer(&mcp.Implementation{Name: "ocmt-vault", Version: version.String()}, nil)
	for _, t := range tools {
		srv.AddTool(&mcp.Tool{
			Name:        t.Spec.Name,
			Description: t.Spec.Description,
			InputSchema: objectSchema(t.Spec),
		}, handler(t.Func))
	}
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{Stateless: true})
}

// handler adapts fn to an MCP tool handler.
func handler(fn llm.ToolFunc) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		args := json.RawMessage("{}")
		if req.Params != nil && len(req.Params.Arguments) > 0 && string(req.Params.Arguments) != "null" {
			args = req.Params.Arguments
		}
		out, err := fn(ctx, args)
		if err != nil {
			return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}, nil
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: out}}}, nil
	}
}

// objectSchema returns t's input schema with "type":"object" filled in.
func objectSchema(t llm.Tool) json.RawMessage {
	m := map[string]any{}
	if len(t.InputSchema) > 0 {
		if err := json.Unmarshal(t.InputSchema, &m); err != nil || m == nil {
			panic(fmt.Sprintf("tools: %s: input schema is not a JSON object", t.Name))
		}
	}
	if _, ok := m["type"]; !ok {
		m["type"] = "object"
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("tools: %s: %v", t.Name, err))
	}
	return b
}
