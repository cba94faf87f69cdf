// Package runtime defines the container runtime drivers of the agent role:
// the interface the lifecycle manager drives, and the spec of one user's
// container. Drivers live in subpackages (docker, process).
package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sort"
	"time"

	"github.com/ocmt/ocmt/api"
)

// Labels put on every user container (SPEC §11).
const (
	LabelUser    = "ocmt.user"    // owner's user id
	LabelRole    = "ocmt.role"    // always "vault"
	LabelVersion = "ocmt.version" // ocmt version that created it
	// LabelDeployment names the ocmt deployment (one data directory) that
	// owns a container. A deployment only lists, adopts and removes its own.
	LabelDeployment = "ocmt.deployment"
	// LabelConfig holds the configuration fingerprint of a container (see
	// Spec.Fingerprint): a hash, never the values. The agent role recreates
	// a container whose label differs from the fingerprint of its current
	// spec; a container without the label counts as changed.
	LabelConfig = "ocmt.config"
)

// VaultPort is the port the vault role listens on inside a container.
const VaultPort = 8080

// SecretHeader carries the per-container secret from the proxy to the vault
// role (an alias of api.ContainerSecretHeader).
const SecretHeader = api.ContainerSecretHeader

// ErrNotFound is returned for an instance the engine does not know.
var ErrNotFound = errors.New("instance not found")

// Engine states reported by Inspect and List.
const (
	EngineRunning = "running"
	EnginePaused  = "paused"
	EngineStopped = "stopped" // created or exited
	EngineGone    = "gone"
)

// Spec describes one user's container.
type Spec struct {
	UserID    string
	Name      string // engine-unique name, "ocmt-<userID>"
	Secret    string // per-container secret, passed as OCMT_VAULT_SECRET; never logged
	Image     string // docker: image reference from Prepare
	Binary    string // process: the ocmt executable to run
	DataDir   string // process: the user's data directory
	MemoryMiB int64
	NanoCPUs  int64
	PidsLimit int64
	Version   string // ocmt version, for the version label
	// Env is extra OCMT_* settings for the vault role (e.g. OCMT_PUBLIC_URL),
	// never secrets other than Secret.
	Env map[string]string
}

// EnvList returns the container environment: OCMT_VAULT_SECRET and Env,
// sorted by name.
func (s Spec) EnvList() []string {
	out := []string{"OCMT_VAULT_SECRET=" + s.Secret}
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+s.Env[k])
	}
	return out
}

// Fingerprint returns the configuration fingerprint of s: the first 16
// bytes of SHA-256, in hex (32 characters), over a versioned encoding of
// Image, EnvList (OCMT_VAULT_SECRET included), MemoryMiB, NanoCPUs,
// PidsLimit and extra, each field length-prefixed. Drivers pass in extra
// their own settings that shape an instance (e.g. the docker network).
// UserID, Name and Version are not included. The result reveals none of
// the values, so it may go in a label (LabelConfig); equal fingerprints
// mean an instance needs no recreating.
func (s Spec) Fingerprint(extra ...string) string {
	h := sha256.New()
	field := func(v string) {
		h.Write(binary.AppendUvarint(nil, uint64(len(v))))
		h.Write([]byte(v))
	}
	field("ocmt container config v1")
	field(s.Image)
	env := s.EnvList()
	h.Write(binary.AppendUvarint(nil, uint64(len(env))))
	for _, kv := range env {
		field(kv)
	}
	for _, n := range []int64{s.MemoryMiB, s.NanoCPUs, s.PidsLimit} {
		h.Write(binary.AppendVarint(nil, n))
	}
	h.Write(binary.AppendUvarint(nil, uint64(len(extra))))
	for _, e := range extra {
		field(e)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Instance is an engine's view of a user's container.
type Instance struct {
	ID       string // engine id (docker container id, or "pid:<n>")
	UserID   string
	State    string // one of the Engine* states
	Endpoint string // base URL of the vault role, e.g. "http://127.0.0.1:49153"; "" unless running or paused
	Image    string
	// Config is the fingerprint the instance was created with (the
	// LabelConfig label; Driver.Fingerprint of its spec); "" = unknown, as
	// for containers created before fingerprints existed.
	Config string
}

// Stats is a point-in-time resource reading of an instance.
type Stats struct {
	MemoryBytes uint64 // resident memory in use
	Pids        uint64
}

// Driver runs user containers. Methods are safe for concurrent use on
// different instances; the manager serialises calls per user.
type Driver interface {
	// Name is "docker" or "process".
	Name() string
	// Prepare makes sure what Create needs exists (the agent image) and
	// returns the image reference ("" for process). It reports progress
	// through progress, which may be nil.
	Prepare(ctx context.Context, progress func(api.Progress)) (string, error)
	// Fingerprint returns the configuration fingerprint an instance
	// created from spec gets (Instance.Config): Spec.Fingerprint with the
	// driver's own settings that shape the instance.
	Fingerprint(spec Spec) string
	// Create creates (but does not start) the instance for spec, with its
	// persistent data (docker volume, directory) created or reused.
	Create(ctx context.Context, spec Spec) (Instance, error)
	// Start starts a created or stopped instance and returns its new view
	// (the endpoint may change across a stop/start).
	Start(ctx context.Context, id string) (Instance, error)
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	// Stop stops the instance gracefully, killing it after timeout.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Remove removes the instance; with keepData its persistent data stays
	// for the next Create of the same user.
	Remove(ctx context.Context, id string, keepData bool) error
	// Inspect returns the engine's view, or ErrNotFound.
	Inspect(ctx context.Context, id string) (Instance, error)
	// List returns every ocmt user instance the engine knows (for rebuilding
	// state after a restart).
	List(ctx context.Context) ([]Instance, error)
	// Stats reads current resource use.
	Stats(ctx context.Context, id string) (Stats, error)
	// Logs returns the last tail lines (at most) an instance wrote to
	// stdout and stderr, oldest first, without line ends; they may hold
	// anything the vault role logs (never secrets, by the vault's rules).
	// An unknown id gives ErrNotFound.
	Logs(ctx context.Context, id string, tail int) ([]string, error)
	// Ping reports whether the engine answers (readiness); the process
	// runtime always does.
	Ping(ctx context.Context) error
	// Close releases the driver (it does not stop instances).
	Close() error
}
