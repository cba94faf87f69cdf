package llm

import (
	"reflect"
	"testing"
)

func TestNormalize(t *testing.T) {
	call := func(ids ...string) Message {
		m := Message{Role: RoleAssistant}
		for _, id := range ids {
			m.ToolCalls = append(m.ToolCalls, ToolCall{ID: id, Name: "t"})
		}
		return m
	}
	res := func(id string) Message { return Message{Role: RoleTool, ToolCallID: id, Text: "r" + id} }
	user := Message{Role: RoleUser, Text: "u"}
	missing := func(id string) Message {
		return Message{Role: RoleTool, ToolCallID: id, ToolName: "t", Text: interruptedResult}
	}
	for _, tc := range []struct {
		name    string
		in, out []Message
	}{
		{"complete", []Message{user, call("a", "b"), res("a"), res("b")}, []Message{user, call("a", "b"), res("a"), res("b")}},
		{"orphan result first", []Message{res("x"), user}, []Message{user}},
		{"result for another call", []Message{call("a"), res("x"), user}, []Message{call("a"), missing("a"), user}},
		{"interrupted at the end", []Message{user, call("a", "b"), res("a")}, []Message{user, call("a", "b"), res("a"), missing("b")}},
		{"result after a user turn", []Message{call("a"), user, res("a")}, []Message{call("a"), missing("a"), user}},
	} {
		if got := normalize(tc.in); !reflect.DeepEqual(got, tc.out) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.out)
		}
	}
}
