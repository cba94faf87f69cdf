// Package docker is the Docker Engine driver of the agent role's container
// runtime (SPEC §4). It builds the agent image locally from the running ocmt
// binary (no registry is needed), keeps a dedicated bridge network with
// inter-container traffic disabled, and runs one hardened container per user
// with a per-user named volume for /data.
//
// It talks to the engine through github.com/moby/moby/client (API 1.41 or
// later). Tests run against the real engine and skip when none answers,
// unless CI=true.
package docker
