package api

import (
	"context"
	"net/http"
	"time"
)

// ContainerSecretHeader carries the per-container secret from the agent
// role's proxy to the vault role in the container. The browser never sees
// it: the proxy strips any incoming copy and injects its own.
const ContainerSecretHeader = "X-Ocmt-Container-Secret"

// LifecycleHeader also carries the per-container secret, on the agent
// role's own lifecycle calls to the vault (POST /internal/hibernate and
// /internal/resume). The agent role's proxy strips it from every proxied
// request, so only the agent role itself can send it.
const LifecycleHeader = "X-Ocmt-Lifecycle"

// VaultWork is the vault's answer to GET /internal/work (LifecycleHeader
// required): the work under way in the container, which the agent role's
// hibernation sweep asks about before it pauses an idle container. Work is
// a chat run (its model and tool calls included) or a capability call
// being executed for a peer (a shared model key too).
type VaultWork struct {
	InFlight   int   `json:"inFlight"`   // pieces of work under way
	YoungestMs int64 `json:"youngestMs"` // milliseconds since the youngest started; 0 when none
}

// VaultStatsPath is the vault's route for VaultStats (GET, container
// secret in ContainerSecretHeader and LifecycleHeader, like the other
// /internal/ routes: only the agent role can call it).
const VaultStatsPath = "/internal/stats"

// VaultStats is the vault's answer to GET VaultStatsPath: its counters
// since its process started, which the agent role reads from each running
// container and adds to its own metrics (the vault itself is not scraped).
//
// JSON: {"instance":"5f0c…","capabilityCalls":{"ok":12,"revoked":1}}.
type VaultStats struct {
	// Instance identifies the vault process: random, chosen at its start
	// (32 hex digits). Another value than last time means the counters
	// started again from 0.
	Instance string `json:"instance"`
	// CapabilityCalls counts the capability calls this vault answered for
	// other users, by result: the label values of
	// ocmt_capability_calls_total (metrics.CapabilityResult: "ok",
	// "dropped", "error" or the error code sent back). Absent = 0.
	CapabilityCalls map[string]uint64 `json:"capabilityCalls"`
}

// CloseAgentAsleep is the WebSocket close code with which the agent
// role's proxy closes a browser's socket when ocmt stopped the container
// behind it for hibernation. A client should not redial by itself (the
// redial would start the container again); its next request, or the user,
// reconnects and wakes it.
const CloseAgentAsleep = 4100

// MaxWorkHold bounds how long one piece of work keeps a container awake
// (SPEC §4): work that started longer ago than this no longer counts, so a
// run stuck forever cannot hold a container awake forever. The container
// is then paused after the usual idle time.
const MaxWorkHold = time.Hour

// Container actions accepted by Agent.Do and
// POST /api/v1/admin/containers/{userID}/{action}.
const (
	ActionPause  = "pause"
	ActionStop   = "stop"
	ActionWake   = "wake"
	ActionRepair = "repair"
	ActionRemove = "remove"
)

// Agent is what the management role needs from the agent role. The agent
// role's *Server satisfies it in-process ("all" mode); agentclient satisfies
// it over HTTP when the roles run apart. Errors are *Error where the caller
// should see them (404 not_found for an unknown user's container).
type Agent interface {
	// Provision creates the user's container if it has none and wakes it
	// otherwise. It returns at once; progress shows in Status.
	Provision(ctx context.Context, userID string) error
	// Status reports the user's container (State "none" if there is none).
	Status(ctx context.Context, userID string) (AgentStatus, error)
	// List reports every container.
	List(ctx context.Context) ([]AgentStatus, error)
	// Do runs a lifecycle action (ActionPause ... ActionRemove) and waits for it.
	Do(ctx context.Context, userID, action string) error
	// Proxy returns a handler that forwards a request to the user's container,
	// waking it first. The request's URL.Path must already be the path inside
	// the container (e.g. "/healthz"). It handles WebSocket upgrades.
	Proxy(userID string) http.Handler
}
