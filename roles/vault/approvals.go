package vault

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
)

// Approvals (SPEC §5.4, §7.3 "human in the loop"). Giving access away is
// above the agent's ceiling, so the tool ocmt_issue_capability records a
// pending approval instead of issuing; the user decides in the Sharing tab.
// Below /vault:
//
//	GET  /approvals           → {"approvals":[approval...]} pending ones, newest first
//	POST /approvals/{id}/deny → 204, or 404 approval_not_found
//
// Approving is issuing: the browser sends POST /capabilities (which the
// management role completes with the subject's keys) with "approvalId" and
// the request as asked or narrower (see takeApprovalLocked). The approvals
// live in the sealed vault body (record "approvals", body.go); expired
// ones are dropped on the next change.

const (
	approvalKindIssue   = "issue_capability"
	approvalTTL         = 24 * time.Hour // how long a request waits for the user
	maxPendingApprovals = 20
	maxApprovalReason   = 500 // characters of the agent's free-text reason
)

// approvalRequest is the share the agent asked for. Its JSON form is the
// body of POST /capabilities minus the subject, so the UI can post it back.
type approvalRequest struct {
	Resource     string   `json:"resource"`
	SubjectEmail string   `json:"subjectEmail"` // lower case, trimmed
	Scope        []string `json:"scope"`
	ExpiresIn    int64    `json:"expiresIn"`          // seconds
	MaxCalls     int      `json:"maxCalls,omitempty"` // 0 = no budget asked
}

// approval is one pending request of the agent.
type approval struct {
	ID        string          `json:"id"` // 16 random bytes, base64url
	Kind      string          `json:"kind"`
	CreatedAt int64           `json:"createdAt"` // unix seconds
	ExpiresAt int64           `json:"expiresAt"` // unix seconds
	Request   approvalRequest `json:"request"`
	Reason    string          `json:"reason,omitempty"` // the agent's words, shown as such
}

func (s *Server) approvalRoutes(g *echo.Group) {
	g.GET("/approvals", s.listApprovals)
	g.POST("/approvals/:id/deny", s.denyApproval)
}

func errApprovalNotFound() error {
	return api.E(http.StatusNotFound, "approval_not_found", "no pending approval has this id: it was approved, denied or has expired")
}

// loadApprovalsLocked returns a copy of the stored approvals, expired
// ones included, or vault_state_unreadable. k.mu held, unlocked.
func (s *Server) loadApprovalsLocked() ([]*approval, error) {
	if err := s.keys.recordErrLocked(recApprovals); err != nil {
		return nil, err
	}
	var all []*approval
	if err := deepCopy(&all, &s.keys.sec.Approvals); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(a *approval) bool { return a == nil }), nil
}

// pendingLocked returns the approvals not expired at now (unix seconds) and
// whether any were dropped. k.mu held, unlocked.
func (s *Server) pendingLocked(now int64) ([]*approval, bool, error) {
	all, err := s.loadApprovalsLocked()
	if err != nil {
		return nil, false, err
	}
	live := slices.DeleteFunc(slices.Clone(all), func(a *approval) bool { return now >= a.ExpiresAt })
	return live, len(live) != len(all), nil
}

// saveApprovalsLocked stores list in the sealed vault. k.mu held, unlocked.
func (s *Server) saveApprovalsLocked(list []*approval) error {
	if list == nil {
		list = []*approval{}
	}
	return s.keys.updateLocked(func(sec *secrets) error { sec.Approvals = list; return nil })
}

// requestApproval records the agent's request for a share (already checked
// by the caller except for the resource) and returns it; an identical
// pending request is returned as it is (existing = true) rather than asked
// twice. Errors: vault_locked, unknown_resource, too_many_approvals.
func (s *Server) requestApproval(req approvalRequest, reason string) (a *approval, existing bool, err error) {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return nil, false, err
	}
	if _, ok := k.resourceLocked(req.Resource); !ok {
		return nil, false, errUnknownResource(req.Resource)
	}
	now := s.capNow()
	live, _, err := s.pendingLocked(now.Unix())
	if err != nil {
		return nil, false, err
	}
	for _, p := range live {
		if p.Kind == approvalKindIssue && p.Request.same(req) {
			return p, true, nil
		}
	}
	if len(live) >= maxPendingApprovals {
		return nil, false, api.Conflict("too_many_approvals",
			fmt.Sprintf("%d requests already wait for the user's approval; ask the user to approve or deny them in the Sharing tab first", len(live)))
	}
	a = &approval{ID: newRandomID(), Kind: approvalKindIssue, CreatedAt: now.Unix(), ExpiresAt: now.Add(approvalTTL).Unix(),
		Request: req, Reason: reason}
	if err := s.saveApprovalsLocked(append(live, a)); err != nil {
		return nil, false, err
	}
	s.log.Info("approval requested", "id", a.ID, "kind", a.Kind, "resource", req.Resource, "scope", req.Scope)
	return a, false, nil
}

func (r approvalRequest) same(o approvalRequest) bool {
	return r.Resource == o.Resource && r.SubjectEmail == o.SubjectEmail && slices.Equal(r.Scope, o.Scope) &&
		r.ExpiresIn == o.ExpiresIn && r.MaxCalls == o.MaxCalls
}

// allows reports why issuing req under this approval would give more than
// was asked ("" = it gives the same or less): same resource and subject,
// scope a subset, expiry and call budget no larger (a budget may be added
// where none was asked).
func (r approvalRequest) allows(req issueReq) string {
	switch {
	case req.Resource != r.Resource:
		return "the resource differs from the one asked for"
	case normalizeEmail(req.SubjectEmail) != r.SubjectEmail:
		return "the person differs from the one asked for"
	case req.ExpiresIn > r.ExpiresIn:
		return "the duration is longer than asked"
	case r.MaxCalls > 0 && (req.MaxCalls == 0 || req.MaxCalls > r.MaxCalls):
		return "the call budget is larger than asked"
	}
	for _, op := range req.Scope {
		if !slices.Contains(r.Scope, op) {
			return fmt.Sprintf("the permission %q was not asked for", op)
		}
	}
	return ""
}

// normalizeEmail lower-cases and trims an address, as the management
// role's directory does.
func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// takeApprovalLocked checks that req may be issued under the pending
// approval req.ApprovalID and returns the approvals that stay pending once
// it is consumed (expired ones dropped); the caller stores them in the same
// sealed update as the capability. Errors: approval_not_found (404),
// approval_expired and approval_exceeded (409). k.mu held, unlocked.
func (s *Server) takeApprovalLocked(req issueReq) ([]*approval, error) {
	now := s.capNow().Unix()
	var found *approval
	var rest []*approval
	all, err := s.loadApprovalsLocked()
	if err != nil {
		return nil, err
	}
	for _, a := range all {
		switch {
		case a.ID == req.ApprovalID && a.Kind == approvalKindIssue:
			found = a
		case now < a.ExpiresAt:
			rest = append(rest, a)
		}
	}
	if found == nil {
		return nil, errApprovalNotFound()
	}
	if now >= found.ExpiresAt {
		return nil, api.Conflict("approval_expired", "this request of your assistant has expired; ask it again, or share from the Sharing tab")
	}
	if why := found.Request.allows(req); why != "" {
		return nil, api.Conflict("approval_exceeded", "an approval may only give what your assistant asked for, or less: "+why)
	}
	if rest == nil {
		rest = []*approval{}
	}
	return rest, nil
}

func (s *Server) listApprovals(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	live, dropped, err := s.pendingLocked(s.capNow().Unix())
	if err != nil {
		return err
	}
	if dropped {
		if err := s.saveApprovalsLocked(live); err != nil {
			return err
		}
	}
	sort.Slice(live, func(i, j int) bool {
		return live[i].CreatedAt > live[j].CreatedAt || live[i].CreatedAt == live[j].CreatedAt && live[i].ID < live[j].ID
	})
	if live == nil {
		live = []*approval{}
	}
	return c.JSON(http.StatusOK, map[string]any{"approvals": live})
}

func (s *Server) denyApproval(c echo.Context) error {
	id := c.Param("id")
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	live, _, err := s.pendingLocked(s.capNow().Unix())
	if err != nil {
		return err
	}
	i := slices.IndexFunc(live, func(a *approval) bool { return a.ID == id })
	if i < 0 {
		return errApprovalNotFound()
	}
	if err := s.saveApprovalsLocked(slices.Delete(live, i, i+1)); err != nil {
		return err
	}
	s.log.Info("approval denied", "id", id)
	return c.NoContent(http.StatusNoContent)
}
