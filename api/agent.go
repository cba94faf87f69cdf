package api

import (
	"context"
	"net/http"
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
