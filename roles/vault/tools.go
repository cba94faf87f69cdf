package vault

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/ocmt/ocmt/roles/vault/llm"
	"github.com/ocmt/ocmt/roles/vault/tools"
)

// agentTools are the tools the agent can call, also served over MCP.
func (s *Server) agentTools() []tools.Tool {
	empty := json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`)
	return append([]tools.Tool{
		{
			Spec: llm.Tool{Name: "ocmt_vault_status", InputSchema: empty,
				Description: "Report whether the user's vault is created and unlocked, and how many seconds remain until it locks itself."},
			Func: func(ctx context.Context, _ json.RawMessage) (string, error) {
				k := s.keys
				k.mu.Lock()
				k.expireLocked()
				st := map[string]any{"initialized": k.file != nil, "locked": k.dek == nil, "expiresInSeconds": int64(k.expiresIn().Seconds())}
				k.mu.Unlock()
				b, err := json.Marshal(st)
				return string(b), err
			},
		},
		{
			Spec: llm.Tool{Name: "ocmt_unlock_link", InputSchema: empty,
				Description: "Give the link where the user unlocks their vault (the password is typed in the browser, never in chat)."},
			Func: func(ctx context.Context, _ json.RawMessage) (string, error) {
				b, err := json.Marshal(map[string]string{"unlockUrl": unlockURL(s.publicURL)})
				return string(b), err
			},
		},
	}, s.sharingTools()...)
}

func (s *Server) toolSpecs() []llm.Tool              { return tools.Specs(s.agentTools()) }
func (s *Server) toolFuncs() map[string]llm.ToolFunc { return tools.Funcs(s.agentTools()) }

// mcpHandler serves the agent tools over MCP for outside agent runtimes.
func (s *Server) mcpHandler() http.Handler { return tools.MCPHandler(s.agentTools()) }

func baseURLOK(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != "" && p.User == nil && len(u) <= 2048
}
