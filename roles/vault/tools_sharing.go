package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/vault/llm"
	"github.com/ocmt/ocmt/roles/vault/tools"
)

// Sharing tools (SPEC §5.4, §7.1). They run the same code as the
// capabilities API (listCaps, callCap, revokeCap) under the agent's
// ceiling: the agent alone may only read/list and reduce access (revoke);
// giving access away (issuing) or writing/deleting through a shared
// resource needs a human, and approvals are not built yet, so those are
// refused with a pointer to the Sharing tab of the web UI.

// sharingURL is the web UI's Sharing tab.
func sharingURL(publicURL string) string { return publicURL + "/#sharing" }

// toolBodyMax is how many characters of a shared resource's answer the
// agent sees.
const toolBodyMax = 4000

func (s *Server) sharingTools() []tools.Tool {
	return []tools.Tool{
		{
			Spec: llm.Tool{Name: "ocmt_list_capabilities",
				Description: "List the user's sharing grants (capabilities): those the user issued to others (\"issued\") and those others " +
					"granted to the user (\"received\"), with jti, resource, scope, expiry (unix seconds), call counts and status " +
					"(active, revoked, expired, exhausted). Without direction, both lists are returned. No tokens or secrets are shown. " +
					"Use a received jti with ocmt_call_shared_resource, an issued jti with ocmt_revoke_capability.",
				InputSchema: json.RawMessage(`{"type":"object","properties":{"direction":{"type":"string","enum":["issued","received"],` +
					`"description":"issued or received; omit for both"}},"additionalProperties":false}`)},
			Func: s.toolListCapabilities,
		},
		{
			Spec: llm.Tool{Name: "ocmt_call_shared_resource",
				Description: "Call a resource another user shared with this user, through a received capability (jti from " +
					"ocmt_list_capabilities, direction received). The request goes through the relay to the owner's vault, which " +
					"checks the grant and calls its API with its own credential. Policy: the assistant may only read or list; " +
					"write and delete are refused here and must be done by the user from the web UI. " +
					"Returns {status, body} (body cut to the first 4000 characters) or the refusal code and message.",
				InputSchema: json.RawMessage(`{"type":"object","properties":{` +
					`"jti":{"type":"string","description":"the received capability's jti"},` +
					`"operation":{"type":"string","enum":["read","list"],"description":"read or list (sent as GET)"},` +
					`"path":{"type":"string","description":"absolute path with optional query on the shared API, e.g. /events?day=today"}},` +
					`"required":["jti","operation","path"],"additionalProperties":false}`)},
			Func: s.toolCallSharedResource,
		},
		{
			Spec: llm.Tool{Name: "ocmt_revoke_capability",
				Description: "Revoke a capability the user issued (jti from ocmt_list_capabilities, direction issued): it stops working " +
					"at once, here and at the relay. Revoking only removes access, so the assistant may do it when the user asks.",
				InputSchema: json.RawMessage(`{"type":"object","properties":{"jti":{"type":"string","description":"the issued capability's jti"}},` +
					`"required":["jti"],"additionalProperties":false}`)},
			Func: s.toolRevokeCapability,
		},
		{
			Spec: llm.Tool{Name: "ocmt_issue_capability",
				Description: "Request to share one of the user's integrations with another person. Current policy: this tool does NOT " +
					"issue anything. Giving access away is above the assistant's permissions and needs the user's own approval, " +
					"which is not available in chat yet; the tool returns a summary of the request (resource, subject email, scope, " +
					"days) and tells the user to create the share from the Sharing tab of the web UI.",
				InputSchema: json.RawMessage(`{"type":"object","properties":{` +
					`"resource":{"type":"string","description":"name of one of the user's integrations"},` +
					`"subjectEmail":{"type":"string","description":"email of the person to share with"},` +
					`"scope":{"type":"array","items":{"type":"string","enum":["read","list","write","delete"]}},` +
					`"days":{"type":"integer","minimum":1,"maximum":365}},` +
					`"required":["resource","subjectEmail"],"additionalProperties":false}`)},
			Func: s.toolIssueCapability,
		},
	}
}

// decodeToolInput decodes a tool's input object strictly.
func decodeToolInput(input json.RawMessage, v any) error {
	if len(bytes.TrimSpace(input)) == 0 || string(bytes.TrimSpace(input)) == "null" {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(input))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("invalid input: %v", err)
	}
	return nil
}

// toolError turns an error of the capability code into text fit for the
// model and the user: code and message, the unlock link when locked, never
// internal details.
func (s *Server) toolError(err error) error {
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		if ae.Code == "vault_locked" {
			return fmt.Errorf("vault_locked: the vault is locked; ask the user to unlock it at %s and try again", unlockURL(s.publicURL))
		}
		return fmt.Errorf("%s: %s", ae.Code, ae.Msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	s.log.Error("sharing tool failed", "err", err)
	return errors.New("internal: the vault could not complete this; try again later")
}

// toolNeedUnlocked reports the vault locked (with the unlock link) or not
// created; it extends auto-lock like any use.
func (s *Server) toolNeedUnlocked() error {
	k := s.keys
	k.mu.Lock()
	err := k.useLocked(s.publicURL)
	k.mu.Unlock()
	if err != nil {
		return s.toolError(err)
	}
	return nil
}

func toolJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func (s *Server) toolListCapabilities(ctx context.Context, input json.RawMessage) (string, error) {
	var in struct {
		Direction string `json:"direction"`
	}
	if err := decodeToolInput(input, &in); err != nil {
		return "", err
	}
	dirs := []string{"issued", "received"}
	switch in.Direction {
	case "":
	case "issued", "received":
		dirs = []string{in.Direction}
	default:
		return "", errors.New("invalid_direction: direction must be issued or received, or omitted for both")
	}
	out := map[string][]capJSON{}
	for _, d := range dirs {
		l, err := s.listCaps(d)
		if err != nil {
			return "", s.toolError(err)
		}
		out[d] = l
	}
	return toolJSON(out)
}

func (s *Server) toolCallSharedResource(ctx context.Context, input json.RawMessage) (string, error) {
	var in struct {
		JTI       string `json:"jti"`
		Operation string `json:"operation"`
		Path      string `json:"path"`
	}
	if err := decodeToolInput(input, &in); err != nil {
		return "", err
	}
	if err := s.toolNeedUnlocked(); err != nil {
		return "", err
	}
	switch in.Operation {
	case "read", "list":
	case "write", "delete":
		return "", fmt.Errorf("refused: the assistant may only read or list through a shared resource; a %s must be done by the user "+
			"themselves from the web UI at %s (nothing was sent)", in.Operation, s.publicURL)
	default:
		return "", errors.New("invalid_operation: operation must be read or list")
	}
	if in.JTI == "" || in.Path == "" {
		return "", errors.New("invalid input: jti and path are required")
	}
	// Method left empty: callCap sends GET for read and list.
	res, err := s.callCap(ctx, in.JTI, callReq{Operation: in.Operation, Path: in.Path})
	if err != nil {
		return "", s.toolError(err)
	}
	out := map[string]any{"status": res["status"]}
	body, _ := res["body"].(string)
	if r := []rune(body); len(r) > toolBodyMax {
		out["body"], out["truncated"] = string(r[:toolBodyMax]), true
	} else {
		out["body"] = body
	}
	if h, ok := res["headers"]; ok {
		out["headers"] = h
	}
	return toolJSON(out)
}

func (s *Server) toolRevokeCapability(ctx context.Context, input json.RawMessage) (string, error) {
	var in struct {
		JTI string `json:"jti"`
	}
	if err := decodeToolInput(input, &in); err != nil {
		return "", err
	}
	if err := s.toolNeedUnlocked(); err != nil {
		return "", err
	}
	if in.JTI == "" {
		return "", errors.New("invalid input: jti is required")
	}
	if err := s.revokeCap(ctx, in.JTI); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == "not_found" {
			return "", errors.New("not_found: no capability issued by this user has this jti (only issued capabilities can be revoked)")
		}
		return "", s.toolError(err)
	}
	return toolJSON(map[string]any{"jti": in.JTI, "status": "revoked"})
}

func (s *Server) toolIssueCapability(ctx context.Context, input json.RawMessage) (string, error) {
	var in struct {
		Resource     string   `json:"resource"`
		SubjectEmail string   `json:"subjectEmail"`
		Scope        []string `json:"scope"`
		Days         int      `json:"days"`
	}
	if err := decodeToolInput(input, &in); err != nil {
		return "", err
	}
	if err := s.toolNeedUnlocked(); err != nil {
		return "", err
	}
	if len(in.Scope) == 0 {
		in.Scope = []string{"read"}
	}
	days := "no duration given"
	if in.Days > 0 {
		days = fmt.Sprintf("%d days", in.Days)
	}
	summary := fmt.Sprintf("share %q with %s (%s, %s)", in.Resource, in.SubjectEmail, strings.Join(in.Scope, ", "), days)
	return toolJSON(map[string]any{
		"issued":  false,
		"policy":  "sharing gives access away, which needs the user's own approval; the assistant cannot issue capabilities",
		"request": map[string]any{"resource": in.Resource, "subjectEmail": in.SubjectEmail, "scope": in.Scope, "days": in.Days},
		"message": "Nothing was shared. To " + summary + ", open the Sharing tab of the web UI at " + sharingURL(s.publicURL) +
			" and create the share there.",
	})
}
