package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/roles/agent/runtime"
)

// Defaults of Options.
const (
	DefaultNetwork = "ocmt-agents" // bridge network of the user containers
	DefaultVersion = "dev"         // version label when Options.Version is empty
	pingTimeout    = 3 * time.Second
)

// Labels the driver puts on the engine objects it manages, besides the
// runtime.Label* ones on containers.
const (
	LabelManaged = "ocmt.managed" // "true" on the network, volumes and images (images also get runtime.LabelDeployment)
	roleVault    = "vault"
)

// volumePrefix names the per-user volume: "ocmt-data-<userID>".
const volumePrefix = "ocmt-data-"

// vaultPort is runtime.VaultPort as an engine port key, "8080/tcp".
var vaultPort = network.MustParsePort(strconv.Itoa(runtime.VaultPort) + "/tcp")

// Options configures a Driver. The zero value of each field means its
// default.
type Options struct {
	// Binary is the path of the ocmt executable to put in the agent image.
	// Required unless Image is set.
	Binary string
	// Image is an operator-chosen image reference. If set, Prepare builds
	// nothing and uses it as is (pulling it if the engine lacks it).
	Image string
	// Network is the name of the bridge network for user containers;
	// "" means DefaultNetwork.
	Network string
	// Version labels containers and the image; "" means DefaultVersion.
	Version string
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
	// Deployment labels every container and volume (runtime.LabelDeployment)
	// and restricts List to them; "" lists every ocmt user container.
	Deployment string
}

// Driver is the docker runtime.Driver. It is safe for concurrent use.
type Driver struct {
	cli    *client.Client
	opts   Options
	log    *slog.Logger
	prepMu sync.Mutex // serialises Prepare (one image build at a time) and image pruning
	// current is the image reference the last Prepare returned, or "";
	// guarded by prepMu.
	current string
	netMu   sync.Mutex // guards netOK
	netOK   bool       // the network was seen or created; reset when Create finds it gone
}

var _ runtime.Driver = (*Driver)(nil)

// New connects to the engine named by the DOCKER_* environment variables
// (the local socket by default) and pings it within about 3 seconds. It
// returns an error wrapping the client's if no engine answers; callers use
// that to fall back to the process runtime.
func New(ctx context.Context, opts Options) (*Driver, error) {
	if opts.Binary == "" && opts.Image == "" {
		return nil, errors.New("docker driver: either Binary or Image is required")
	}
	if opts.Network == "" {
		opts.Network = DefaultNetwork
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	return &Driver{cli: cli, opts: opts, log: log.With("runtime", "docker")}, nil
}

// Ping reports the version of the engine named by the DOCKER_* environment
// variables (e.g. "20.10.24"), for `ocmt doctor`. It gives up after about 3
// seconds and returns an error if no engine answers.
func Ping(ctx context.Context) (serverVersion string, err error) {
	cli, err := connect(ctx)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	v, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", fmt.Errorf("docker engine version: %w", err)
	}
	return v.Version, nil
}

// connect makes a client from the environment and negotiates the API
// version with a bounded ping. When the socket refuses this user
// (IsPermission), the error ends with PermissionFix.
func connect(ctx context.Context) (*client.Client, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		if IsPermission(err) {
			return nil, fmt.Errorf("no docker engine answers at %s: %w; to fix: %s", cli.DaemonHost(), err, PermissionFix)
		}
		return nil, fmt.Errorf("no docker engine answers at %s: %w", cli.DaemonHost(), err)
	}
	return cli, nil
}

// Ping implements runtime.Driver: the engine answers /_ping within about 3
// seconds.
func (d *Driver) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := d.cli.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("docker engine ping: %w", err)
	}
	return nil
}

// Logs implements runtime.Driver: the container's last tail lines of
// stdout and stderr (interleaved as the engine stored them; user
// containers have no TTY, so the stream is demultiplexed with stdcopy).
func (d *Driver) Logs(ctx context.Context, id string, tail int) ([]string, error) {
	if tail <= 0 {
		return nil, nil
	}
	rc, err := d.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(tail)})
	if err != nil {
		return nil, engineErr("container logs", id, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	w := &limitWriter{w: &buf, n: 1 << 20}
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil && !errors.Is(err, errLimit) {
		return nil, fmt.Errorf("container logs %s: %w", shortID(id), err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil, nil
	}
	if len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	return lines, nil
}

// errLimit ends a log read that passed limitWriter's bound.
var errLimit = errors.New("log output over the limit")

// limitWriter passes at most n bytes to w, then fails with errLimit.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		l.w.Write(p[:l.n])
		l.n = 0
		return 0, errLimit
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// Name returns "docker".
func (d *Driver) Name() string { return "docker" }

// Client returns the engine client, for tests and diagnostics.
func (d *Driver) Client() *client.Client { return d.cli }

// Close releases the client's connections. Containers keep running.
func (d *Driver) Close() error { return d.cli.Close() }

// Fingerprint implements runtime.Driver: spec.Fingerprint with the
// driver's network and the init process ("init=docker-init", see Create),
// so containers created before the init was added are recreated.
func (d *Driver) Fingerprint(spec runtime.Spec) string {
	return spec.Fingerprint("network="+d.opts.Network, "init=docker-init")
}

// volumeName is the per-user data volume, "ocmt-data-<userID>".
func volumeName(userID string) string { return volumePrefix + userID }

// Create creates (but does not start) the hardened container of spec.UserID,
// named spec.Name, and returns it in state runtime.EngineStopped. It
// creates the user's volume "ocmt-data-<userID>" if missing (an existing
// one is reused as is) and mounts it at /data. The container runs as
// 65532:65532 with a read-only root filesystem, a 16 MiB noexec /tmp, all
// capabilities dropped and no-new-privileges; it is limited to
// spec.MemoryMiB MiB without swap, spec.NanoCPUs (1e9 = one CPU) and
// spec.PidsLimit processes, where 0 means no limit. Port 8080/tcp is
// published on 127.0.0.1 only, at a port the engine picks when it starts.
// spec.Secret goes into the environment as OCMT_VAULT_SECRET and is never
// logged. PID 1 is the engine's init (HostConfig.Init, docker-init, which
// is tini on most engines); it starts the vault role and reaps orphaned
// processes, which the vault as PID 1 did not (their zombies filled the
// PIDs limit, ocmt issue 8). An engine without an init binary fails at
// Start with an error that says so. The container is labelled with its
// configuration fingerprint
// (runtime.LabelConfig, see Fingerprint). spec.Image must come from
// Prepare; if it is the image built from the binary and it has vanished
// from the engine since, Create builds it again. A name already in use is
// an error matching cerrdefs.IsConflict.
func (d *Driver) Create(ctx context.Context, spec runtime.Spec) (runtime.Instance, error) {
	if spec.UserID == "" || spec.Name == "" || spec.Image == "" {
		return runtime.Instance{}, errors.New("create container: spec needs UserID, Name and Image")
	}
	version := spec.Version
	if version == "" {
		version = d.opts.Version
	}
	vol := volumeName(spec.UserID)
	if _, err := d.cli.VolumeCreate(ctx, client.VolumeCreateOptions{
		Name:   vol,
		Labels: d.labels(map[string]string{runtime.LabelUser: spec.UserID, LabelManaged: "true"}),
	}); err != nil { // creating an existing local volume returns it unchanged
		return runtime.Instance{}, fmt.Errorf("create volume %s: %w", vol, err)
	}
	if err := d.ensureNetwork(ctx); err != nil {
		return runtime.Instance{}, err
	}

	var pids *int64
	if spec.PidsLimit > 0 {
		pids = &spec.PidsLimit
	}
	mem := spec.MemoryMiB << 20
	fp := d.Fingerprint(spec)
	withInit := true // docker-init is PID 1 and reaps orphans; see the doc comment
	opts := client.ContainerCreateOptions{
		Name: spec.Name,
		Config: &container.Config{
			Image: spec.Image,
			User:  userSpec,
			Env:   spec.EnvList(),
			Labels: d.labels(map[string]string{
				runtime.LabelUser:    spec.UserID,
				runtime.LabelRole:    roleVault,
				runtime.LabelVersion: version,
				runtime.LabelConfig:  fp,
			}),
			ExposedPorts: network.PortSet{vaultPort: {}},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: container.NetworkMode(d.opts.Network),
			PortBindings: network.PortMap{
				vaultPort: {{HostIP: loopback}}, // HostPort "": the engine picks a free one
			},
			RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges:true"},
			ReadonlyRootfs: true,
			Init:           &withInit,
			Tmpfs:          map[string]string{"/tmp": "rw,noexec,nosuid,size=16m"},
			Resources: container.Resources{
				Memory:     mem,
				MemorySwap: mem, // equal to Memory: no swap
				NanoCPUs:   spec.NanoCPUs,
				PidsLimit:  pids,
			},
			Mounts: []mount.Mount{{
				Type:   mount.TypeVolume,
				Source: vol,
				Target: imageDataDir,
			}},
		},
		NetworkingConfig: &network.NetworkingConfig{
			EndpointsConfig: map[string]*network.EndpointSettings{d.opts.Network: {}},
		},
	}
	res, err := d.cli.ContainerCreate(ctx, opts)
	if err != nil && cerrdefs.IsNotFound(err) && d.rebuildImage(ctx, spec.Image) {
		// The image was removed behind our back (or pruned by another
		// deployment that built it first): rebuilt, retry once.
		res, err = d.cli.ContainerCreate(ctx, opts)
	}
	if err != nil && cerrdefs.IsNotFound(err) && d.forgetNetwork() {
		// The network may have been removed behind our back: recreate, retry once.
		if err := d.ensureNetwork(ctx); err != nil {
			return runtime.Instance{}, err
		}
		res, err = d.cli.ContainerCreate(ctx, opts)
	}
	if err != nil {
		return runtime.Instance{}, fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	for _, w := range res.Warnings {
		d.log.Warn("engine warning on create", "user", spec.UserID, "warning", w)
	}
	d.log.Info("container created", "user", spec.UserID, "container", shortID(res.ID), "image", spec.Image)
	return runtime.Instance{ID: res.ID, UserID: spec.UserID, State: runtime.EngineStopped, Image: spec.Image, Config: fp}, nil
}

// loopback is where container ports are published: 127.0.0.1 only.
var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// Start starts a created or stopped container (a running one is left as
// is) and returns its view; the published port, and so the endpoint, may
// differ from before a stop. An unknown id gives runtime.ErrNotFound.
func (d *Driver) Start(ctx context.Context, id string) (runtime.Instance, error) {
	if _, err := d.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		if strings.Contains(err.Error(), "docker-init") {
			// Without its init binary the engine cannot start containers
			// created with Init (Create); say what to install.
			return runtime.Instance{}, fmt.Errorf("start container %s: the Docker engine has no init binary (docker-init); user containers need it to reap orphaned processes: install the engine's docker-init (tini) package or set the daemon's \"init-path\": %w", shortID(id), err)
		}
		return runtime.Instance{}, engineErr("start container", id, err)
	}
	return d.Inspect(ctx, id)
}

// Pause freezes every process of a running container. An unknown id gives
// runtime.ErrNotFound.
func (d *Driver) Pause(ctx context.Context, id string) error {
	if _, err := d.cli.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err != nil {
		return engineErr("pause container", id, err)
	}
	return nil
}

// Unpause resumes a paused container. An unknown id gives
// runtime.ErrNotFound.
func (d *Driver) Unpause(ctx context.Context, id string) error {
	if _, err := d.cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil {
		return engineErr("unpause container", id, err)
	}
	return nil
}

// Stop sends SIGTERM and kills the container after timeout (rounded up to
// whole seconds; 0 kills at once). A paused container is stopped too; a
// stopped one is left as is. An unknown id gives runtime.ErrNotFound.
func (d *Driver) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int((timeout + time.Second - 1) / time.Second)
	if _, err := d.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		return engineErr("stop container", id, err)
	}
	return nil
}

// Remove force-removes the container. Without keepData it also removes the
// user's data volume "ocmt-data-<userID>" (an already missing volume is
// not an error). If the container ran an older agent image than the
// current one, that image and others of this deployment that no container
// uses any more are removed (see Prepare). An unknown id gives
// runtime.ErrNotFound.
func (d *Driver) Remove(ctx context.Context, id string, keepData bool) error {
	ins, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return engineErr("remove container", id, err)
	}
	if _, err := d.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
		return engineErr("remove container", id, err)
	}
	userID := ""
	if ins.Container.Config != nil {
		userID = ins.Container.Config.Labels[runtime.LabelUser]
	}
	d.log.Info("container removed", "user", userID, "container", shortID(id), "keepData", keepData)
	d.pruneAfterRemove(ctx, ins.Container.Image)
	if keepData || userID == "" {
		return nil
	}
	vol := volumeName(userID)
	if _, err := d.cli.VolumeRemove(ctx, vol, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove volume %s: %w", vol, err)
	}
	return nil
}

// rebuildImage builds the agent image again if ref is the image Prepare
// builds from the binary and the engine no longer has it, and reports
// whether it did. An operator's image (Options.Image) is never rebuilt.
func (d *Driver) rebuildImage(ctx context.Context, ref string) bool {
	if d.opts.Image != "" {
		return false
	}
	if _, err := d.cli.ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) {
		return false
	}
	d.prepMu.Lock()
	defer d.prepMu.Unlock()
	tag, err := d.buildImage(ctx, func(string, int) {})
	if err != nil {
		d.log.Warn("agent image vanished and could not be rebuilt", "image", ref, "err", err)
		return false
	}
	d.log.Info("agent image vanished; rebuilt", "image", tag)
	return tag == ref
}

// pruneAfterRemove removes old agent images once a removed container,
// which ran image (an image id), no longer holds one: after an upgrade,
// recreating containers frees the old image. Failures are only logged.
func (d *Driver) pruneAfterRemove(ctx context.Context, image string) {
	if !d.prepMu.TryLock() {
		return // a Prepare is under way; it prunes once its image is ready
	}
	defer d.prepMu.Unlock()
	if d.current == "" || image == "" || image == d.current {
		return
	}
	if res, err := d.cli.ImageInspect(ctx, d.current); err == nil && res.ID == image {
		return
	}
	if _, err := d.pruneImages(ctx); err != nil {
		d.log.Warn("cannot remove old agent images", "err", err)
	}
}

// labels adds the deployment label, if any, to l.
func (d *Driver) labels(l map[string]string) map[string]string {
	if d.opts.Deployment != "" {
		l[runtime.LabelDeployment] = d.opts.Deployment
	}
	return l
}

// Inspect returns the engine's view of the container: running and
// restarting map to runtime.EngineRunning, paused to EnginePaused,
// created/exited/dead to EngineStopped, removing to EngineGone. Endpoint is
// "http://127.0.0.1:<published port>" while running or paused. An unknown
// id gives runtime.ErrNotFound.
func (d *Driver) Inspect(ctx context.Context, id string) (runtime.Instance, error) {
	res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return runtime.Instance{}, engineErr("inspect container", id, err)
	}
	c := res.Container
	inst := runtime.Instance{ID: c.ID}
	if c.Config != nil {
		inst.UserID = c.Config.Labels[runtime.LabelUser]
		inst.Image = c.Config.Image
		inst.Config = c.Config.Labels[runtime.LabelConfig]
	}
	if c.State != nil {
		inst.State = mapState(c.State.Status)
	}
	if (inst.State == runtime.EngineRunning || inst.State == runtime.EnginePaused) && c.NetworkSettings != nil {
		for _, b := range c.NetworkSettings.Ports[vaultPort] {
			if b.HostIP == loopback && b.HostPort != "" {
				inst.Endpoint = "http://127.0.0.1:" + b.HostPort
				break
			}
		}
	}
	return inst, nil
}

// List returns every container labelled ocmt.role=vault, in any state.
func (d *Driver) List(ctx context.Context) ([]runtime.Instance, error) {
	filters := make(client.Filters).Add("label", runtime.LabelRole+"="+roleVault)
	if d.opts.Deployment != "" {
		filters = filters.Add("label", runtime.LabelDeployment+"="+d.opts.Deployment)
	}
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]runtime.Instance, 0, len(res.Items))
	for _, c := range res.Items {
		inst := runtime.Instance{
			ID:     c.ID,
			UserID: c.Labels[runtime.LabelUser],
			State:  mapState(c.State),
			Image:  c.Image,
			Config: c.Labels[runtime.LabelConfig],
		}
		if inst.State == runtime.EngineRunning || inst.State == runtime.EnginePaused {
			for _, p := range c.Ports {
				if p.PrivatePort == runtime.VaultPort && p.Type == "tcp" && p.IP == loopback && p.PublicPort != 0 {
					inst.Endpoint = "http://127.0.0.1:" + strconv.Itoa(int(p.PublicPort))
					break
				}
			}
		}
		out = append(out, inst)
	}
	return out, nil
}

// ContainerIP returns the container's IPv4 address on the ocmt network
// (e.g. "172.18.0.2"), for an agent role that itself runs on that network.
// It returns an error if the container is not attached or not running.
func (d *Driver) ContainerIP(ctx context.Context, id string) (string, error) {
	res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return "", engineErr("inspect container", id, err)
	}
	if ns := res.Container.NetworkSettings; ns != nil {
		if ep := ns.Networks[d.opts.Network]; ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("container %s has no address on network %s", shortID(id), d.opts.Network)
}

// mapState maps an engine container state to a runtime.Engine* state.
func mapState(s container.ContainerState) string {
	switch s {
	case container.StateRunning, container.StateRestarting:
		return runtime.EngineRunning
	case container.StatePaused:
		return runtime.EnginePaused
	case container.StateRemoving:
		return runtime.EngineGone
	default: // created, exited, dead
		return runtime.EngineStopped
	}
}

// engineErr wraps an engine error about container id with op, turning the
// engine's not-found into runtime.ErrNotFound (the engine's error stays in
// the chain).
func engineErr(op, id string, err error) error {
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%s %s: %w: %w", op, shortID(id), runtime.ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", op, shortID(id), err)
}

// shortID shortens a 64-hex container id to 12 characters for messages;
// names pass through.
func shortID(id string) string {
	if len(id) == 64 {
		return id[:12]
	}
	return id
}
