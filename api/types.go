package api

import "time"

// Health is GET /healthz.
type Health struct {
	Status  string   `json:"status"` // "ok"
	Roles   []string `json:"roles"`
	Version string   `json:"version"`
}

// Probe is the body of GET /livez and GET /readyz (each role).
//
//	{"status":"ok","checks":{"database":"ok","engine":"failing"}}
//
// Status is ProbeOK (HTTP 200) or ProbeFailing (HTTP 503). Checks names
// each readiness check (none for /livez) with ProbeOK or ProbeFailing; the
// cause is logged by the server, never sent.
type Probe struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// Probe statuses.
const (
	ProbeOK      = "ok"
	ProbeFailing = "failing"
)

// User is GET /api/v1/me and an element of GET /api/v1/admin/users.
type User struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"createdAt"`
}

// Agent states (SPEC §11).
const (
	StateNone         = "none" // no container yet
	StateProvisioning = "provisioning"
	StateRunning      = "running"
	StatePaused       = "paused"
	StateStopped      = "stopped"
	StateError        = "error"
)

// Progress phases of provisioning, in order.
const (
	PhaseImage  = "image"  // building or checking the agent image
	PhaseCreate = "create" // creating the container
	PhaseStart  = "start"  // starting it
	PhaseReady  = "ready"  // waiting for /healthz
	PhaseDone   = "done"
)

// Progress is what the agent role is doing for a container right now.
type Progress struct {
	Phase   string `json:"phase"`
	Message string `json:"message"`
	Percent int    `json:"percent"` // 0–100 over the whole provisioning
}

// AgentStatus is GET /api/v1/me/agent and an element of the admin list.
type AgentStatus struct {
	UserID         string    `json:"userId"`
	State          string    `json:"state"`
	Runtime        string    `json:"runtime"`
	Image          string    `json:"image,omitempty"`
	Progress       *Progress `json:"progress,omitempty"`
	Error          string    `json:"error,omitempty"` // readable cause when State is "error"
	LastActivityAt time.Time `json:"lastActivityAt,omitzero"`
	StateSince     time.Time `json:"stateSince,omitzero"`
	CreatedAt      time.Time `json:"createdAt,omitzero"`
}

// AdminContainer is an element of GET /api/v1/admin/containers.
type AdminContainer struct {
	AgentStatus
	Email string `json:"email"`
}

// AdminMail is GET /api/v1/admin/mail: the mail outbox as the admin sees
// it, newest first (at most 200 rows), and the count of rows by state.
// Bodies and links (sign-in credentials) are never shown.
type AdminMail struct {
	Mail   []AdminMailItem `json:"mail"`
	Counts MailCounts      `json:"counts"`
}

// MailCounts counts outbox rows by state.
type MailCounts struct {
	Queued int `json:"queued"`
	Sent   int `json:"sent"`   // within the last week
	Failed int `json:"failed"` // within the last week
}

// AdminMailItem is one outbox row: State is "queued", "sent" or "failed"
// (for good); LastError is the last failure (an SMTP reply or network
// error), "" when none.
type AdminMailItem struct {
	ID            string    `json:"id"`
	To            string    `json:"to"`
	Subject       string    `json:"subject"`
	Kind          string    `json:"kind"` // signin, invite, share
	State         string    `json:"state"`
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"lastError,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
	NextAttemptAt time.Time `json:"nextAttemptAt,omitzero"` // queued only
}

// AuditEvent is an element of GET /api/v1/audit.
type AuditEvent struct {
	Seq    int64             `json:"seq"`
	TS     time.Time         `json:"ts"`
	Actor  string            `json:"actor"`
	Action string            `json:"action"`
	Target string            `json:"target"`
	Detail map[string]string `json:"detail,omitempty"`
}

// MagicLinkRequest is POST /api/v1/auth/magic-link.
type MagicLinkRequest struct {
	Email string `json:"email"`
}

// InviteRequest is POST /api/v1/admin/users.
type InviteRequest struct {
	Email string `json:"email"`
}
