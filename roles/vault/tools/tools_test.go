package tools_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/ocmt/ocmt/roles/vault/llm"
	"github.com/ocmt/ocmt/roles/vault/tools"
)

func testTools() []tools.Tool {
	return []tools.Tool{
		{
			Spec: llm.Tool{Name: "ocmt_vault_status", Description: "Reports whether the vault is locked."},
			Func: func(context.Context, json.RawMessage) (string, error) { return `{"locked":false}`, nil },
		},
		{
			Spec: llm.Tool{
				Name:        "ocmt_echo",
				Description: "Echoes its input.",
				InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`),
			},
			Func: func(_ context.Context, in json.RawMessage) (string, error) {
				var v struct{ Text string }
				if err := json.Unmarshal(in, &v); err != nil {
					return "", err
				}
				if v.Text == "" {
					return "", errors.New("text is required")
				}
				return v.Text, nil
			},
		},
	}
}

func TestMCPHandler(t *testing.T) {
	ts := httptest.NewServer(tools.MCPHandler(testTools()))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "v0"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: ts.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]*mcp.Tool{}
	for _, tl := range list.Tools {
		names[tl.Name] = tl
	}
	if len(names) != 2 || names["ocmt_vault_status"] == nil || names["ocmt_echo"] == nil {
		t.Fatalf("tools/list = %v", names)
	}
	if names["ocmt_echo"].Description != "Echoes its input." {
		t.Errorf("description %q", names["ocmt_echo"].Description)
	}
	schema, _ := json.Marshal(names["ocmt_vault_status"].InputSchema)
	if string(schema) != `{"type":"object"}` {
		t.Errorf("default schema %s", schema)
	}

	for _, tc := range []struct {
		name    string
		args    any
		want    string
		wantErr bool
	}{
		{"ocmt_vault_status", nil, `{"locked":false}`, false},
		{"ocmt_echo", map[string]any{"text": "hi"}, "hi", false},
		{"ocmt_echo", map[string]any{}, "text is required", true},
	} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tc.name, Arguments: tc.args})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.IsError != tc.wantErr || len(res.Content) != 1 {
			t.Fatalf("%s: IsError=%v content=%v", tc.name, res.IsError, res.Content)
		}
		text, ok := res.Content[0].(*mcp.TextContent)
		if !ok || text.Text != tc.want {
			t.Errorf("%s: content %#v, want %q", tc.name, res.Content[0], tc.want)
		}
	}
}

func TestSpecsAndFuncs(t *testing.T) {
	tl := testTools()
	specs := tools.Specs(tl)
	funcs := tools.Funcs(tl)
	if len(specs) != 2 || specs[1].Name != "ocmt_echo" || len(funcs) != 2 || funcs["ocmt_vault_status"] == nil {
		t.Errorf("specs %v funcs %v", specs, funcs)
	}
}
