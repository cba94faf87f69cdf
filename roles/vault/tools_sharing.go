package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/vault/llm"
	"github.com/ocmt/ocmt/roles/vault/tools"
	"github.com/ocmt/ocmt/roles/web"
)

// Sharing tools (SPEC §5.4, §7.1). They run the same code as the
// capabilities API (listCaps, callCap, revokeCap) under the agent's
// ceiling: the agent alone may only read/list and reduce access (revoke).
// Giving access away needs a human: ocmt_issue_capability only records a
// pending approval (approvals.go) that the user approves or denies in the
// Sharing tab; writing/deleting through a shared resource is refused with a
// pointer to the web UI.

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
				Description: "Ask the user to share one of their resources with another person: an integration (by name) or a model " +
					"provider key (provider:anthropic, provider:openai). This tool does NOT share anything by itself: giving access away " +
					"is above the assistant's permissions, so the request becomes a pending approval that the user approves (possibly " +
					"narrowing it) or denies in the Sharing tab of the web UI; requests not decided within 24 hours lapse. " +
					"Defaults: scope [read], 7 days, no call budget. Returns the approval id and a message to relay to the user.",
				InputSchema: json.RawMessage(`{"type":"object","properties":{` +
					`"resource":{"type":"string","description":"name of one of the user's integrations, or provider:<name> for a model provider key"},` +
					`"subjectEmail":{"type":"string","description":"email of the person to share with"},` +
					`"scope":{"type":"array","items":{"type":"string","enum":["read","list","write","delete"]},"description":"default [read]"},` +
					`"days":{"type":"integer","minimum":1,"maximum":365,"description":"default 7"},` +
					`"maxCalls":{"type":"integer","minimum":1,"maximum":1000000,"description":"optional call budget"},` +
					`"reason":{"type":"string","maxLength":500,"description":"optional: why, in a sentence the user will see"}},` +
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

// toolIssueCapability checks the request like POST /capabilities would and
// records it as a pending approval; it never issues.
func (s *Server) toolIssueCapability(ctx context.Context, input json.RawMessage) (string, error) {
	var in struct {
		Resource     string   `json:"resource"`
		SubjectEmail string   `json:"subjectEmail"`
		Scope        []string `json:"scope"`
		Days         *int     `json:"days"`
		MaxCalls     *int     `json:"maxCalls"`
		Reason       string   `json:"reason"`
	}
	if err := decodeToolInput(input, &in); err != nil {
		return "", err
	}
	if err := s.toolNeedUnlocked(); err != nil {
		return "", err
	}
	email := normalizeEmail(in.SubjectEmail)
	if !web.ValidEmail(email) {
		return "", errors.New("invalid_email: subjectEmail must be one exact email address")
	}
	if len(in.Scope) == 0 {
		in.Scope = []string{"read"}
		if strings.HasPrefix(in.Resource, providerResourcePrefix) {
			in.Scope = []string{"write"} // the only use of a model key
		}
	}
	if _, err := parseScopeFor(in.Resource, in.Scope); err != nil {
		return "", s.toolError(err)
	}
	days := 7
	if in.Days != nil {
		days = *in.Days
	}
	if days < 1 || days > 365 {
		return "", errors.New("invalid_expiry: days must be 1 to 365")
	}
	maxCalls := 0
	if in.MaxCalls != nil {
		if maxCalls = *in.MaxCalls; maxCalls < 1 {
			return "", errors.New("invalid_max_calls: maxCalls must be 1 to 1000000, or absent")
		}
	}
	req := approvalRequest{Resource: in.Resource, SubjectEmail: email, Scope: in.Scope, ExpiresIn: int64(days) * 24 * 3600, MaxCalls: maxCalls}
	if err := checkShareLimits(req.ExpiresIn, req.MaxCalls); err != nil {
		return "", s.toolError(err)
	}
	reason := strings.TrimSpace(in.Reason)
	if utf8.RuneCountInString(reason) > maxApprovalReason {
		return "", fmt.Errorf("invalid_reason: reason must be at most %d characters", maxApprovalReason)
	}
	a, existing, err := s.requestApproval(req, reason)
	if err != nil {
		return "", s.toolError(err)
	}
	budget := ""
	if maxCalls > 0 {
		budget = fmt.Sprintf(", at most %d call%s", maxCalls, map[bool]string{true: "", false: "s"}[maxCalls == 1])
	}
	summary := fmt.Sprintf("share %q with %s (%s, %d days%s)", in.Resource, email, strings.Join(in.Scope, ", "), days, budget)
	already := ""
	if existing {
		already = " (this same request was already waiting)"
	}
	return toolJSON(map[string]any{
		"issued":     false,
		"status":     "pending_approval",
		"approvalId": a.ID,
		"expiresAt":  a.ExpiresAt,
		"request":    map[string]any{"resource": in.Resource, "subjectEmail": email, "scope": in.Scope, "days": days, "maxCalls": maxCalls},
		"message": "Nothing is shared yet. The request to " + summary + " waits for the user's approval" + already +
			": the user can approve it (or narrow it) or deny it under \"Waiting for your approval\" in the Sharing tab at " +
			sharingURL(s.publicURL) + " (approval " + a.ID + "). It lapses if not decided within 24 hours.",
	})
}
