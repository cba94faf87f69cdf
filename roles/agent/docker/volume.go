package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/roles/agent/runtime"
)

// Reading and writing user volumes for `ocmt backup` and `ocmt restore`.
// The engine is the only way in: a helper container is created (never
// started) from a local agent image with the volume mounted at /data, and
// the engine's archive API copies /data out of it or into it. The helper
// has no network and is removed afterwards.

// LabelHelper marks the throwaway containers of ExportVolume and
// ImportVolume ("backup" or "restore"); they never carry runtime.LabelRole,
// so List and the agent role never adopt them.
const LabelHelper = "ocmt.helper"

// VolumeUIDGID is the owner of every file in a user volume: the uid and gid
// the vault role runs as.
const VolumeUIDGID = containerUID

// VolumeName returns the data volume of userID, "ocmt-data-<userID>".
func VolumeName(userID string) string { return volumeName(userID) }

// VolumeUsers returns the user ids of the data volumes labelled with this
// driver's deployment (Options.Deployment; every ocmt data volume when it
// is ""), sorted as the engine lists them.
func (d *Driver) VolumeUsers(ctx context.Context) ([]string, error) {
	f := make(client.Filters).Add("label", LabelManaged+"=true").Add("label", runtime.LabelUser)
	if d.opts.Deployment != "" {
		f = f.Add("label", runtime.LabelDeployment+"="+d.opts.Deployment)
	}
	res, err := d.cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []string
	for _, v := range res.Items {
		uid := v.Labels[runtime.LabelUser]
		if uid != "" && v.Name == volumeName(uid) {
			out = append(out, uid)
		}
	}
	return out, nil
}

// VolumeExists reports whether userID's data volume exists.
func (d *Driver) VolumeExists(ctx context.Context, userID string) (bool, error) {
	_, err := d.cli.VolumeInspect(ctx, volumeName(userID), client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect volume %s: %w", volumeName(userID), err)
	}
	return true, nil
}

// ExportVolume returns the content of userID's data volume as the engine's
// tar stream of /data: entries "data/", "data/vault.ocv", … with their
// owners and modes, file content as it is (ciphertext). The volume is
// mounted read-only, so the export writes nothing to it; a container using
// it may still change files while the stream is read (the vault replaces
// files by rename, so each file is whole). The caller must Close the
// stream, which removes the helper container. A missing volume is an error
// matching runtime.ErrNotFound.
func (d *Driver) ExportVolume(ctx context.Context, userID string) (io.ReadCloser, error) {
	if ok, err := d.VolumeExists(ctx, userID); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("export volume %s: %w", volumeName(userID), runtime.ErrNotFound)
	}
	id, err := d.createHelper(ctx, "backup", userID, true)
	if err != nil {
		return nil, err
	}
	res, err := d.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: imageDataDir})
	if err != nil {
		d.removeHelper(id)
		return nil, fmt.Errorf("export volume %s: %w", volumeName(userID), err)
	}
	return &helperStream{ReadCloser: res.Content, done: func() { d.removeHelper(id) }}, nil
}

type helperStream struct {
	io.ReadCloser
	done func()
}

func (h *helperStream) Close() error {
	err := h.ReadCloser.Close()
	h.done()
	return err
}

// ImportVolume creates userID's data volume, labelled as Create labels it
// (user, managed, deployment), and extracts content into it. content is a
// tar stream whose entries are "data/" and paths under it; owners and modes
// are kept as the headers give them, so callers set uid and gid
// VolumeUIDGID.
// An existing volume is an error matching cerrdefs.IsConflict unless
// replace is set: then the containers of userID in this deployment are
// removed (they are recreated, keeping the new volume, at their next start)
// and the volume with them, before the new one is made. A failed copy
// leaves the new volume in place, partly written.
func (d *Driver) ImportVolume(ctx context.Context, userID string, content io.Reader, replace bool) error {
	vol := volumeName(userID)
	exists, err := d.VolumeExists(ctx, userID)
	if err != nil {
		return err
	}
	if exists {
		if !replace {
			return fmt.Errorf("import volume %s: %w", vol, cerrdefs.ErrConflict.WithMessage("volume exists"))
		}
		if err := d.removeUserContainers(ctx, userID); err != nil {
			return err
		}
		if _, err := d.cli.VolumeRemove(ctx, vol, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove volume %s: %w", vol, err)
		}
	}
	if _, err := d.cli.VolumeCreate(ctx, client.VolumeCreateOptions{
		Name:   vol,
		Labels: d.labels(map[string]string{runtime.LabelUser: userID, LabelManaged: "true"}),
	}); err != nil {
		return fmt.Errorf("create volume %s: %w", vol, err)
	}
	id, err := d.createHelper(ctx, "restore", userID, false)
	if err != nil {
		return err
	}
	defer d.removeHelper(id)
	if _, err := d.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{
		DestinationPath: "/",
		Content:         content,
		// Not CopyUIDGID: that chowns everything to the container's
		// user, looked up in its /etc/passwd (the agent image has none).
		// Without it the engine keeps each tar header's uid and gid.
	}); err != nil {
		return fmt.Errorf("import volume %s: %w", vol, err)
	}
	return nil
}

// removeUserContainers force-removes the user containers of userID in
// this deployment (keeping volumes).
func (d *Driver) removeUserContainers(ctx context.Context, userID string) error {
	f := make(client.Filters).Add("label", runtime.LabelRole+"="+roleVault).Add("label", runtime.LabelUser+"="+userID)
	if d.opts.Deployment != "" {
		f = f.Add("label", runtime.LabelDeployment+"="+d.opts.Deployment)
	}
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range res.Items {
		if _, err := d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return engineErr("remove container", c.ID, err)
		}
		d.log.Info("container removed to replace its volume", "user", userID, "container", shortID(c.ID))
	}
	return nil
}

// LiveContainers returns the containers of userIDs that are running,
// paused or restarting, in any deployment (volume names are engine-wide):
// those labelled runtime.LabelUser=<id> or named "ocmt-<id>". Each is
// "<name> (<state>)", sorted.
func (d *Driver) LiveContainers(ctx context.Context, userIDs []string) ([]string, error) {
	want := map[string]bool{}
	for _, id := range userIDs {
		want[id] = true
	}
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("status", "running", "paused", "restarting")})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []string
	for _, c := range res.Items {
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		byName, ok := strings.CutPrefix(name, "ocmt-")
		if want[c.Labels[runtime.LabelUser]] || ok && want[byName] {
			out = append(out, name+" ("+string(c.State)+")")
		}
	}
	sort.Strings(out)
	return out, nil
}

// createHelper creates (does not start) a throwaway container with
// userID's volume at /data, read-only for an export. It has no network and
// runs nothing; only the engine's archive API touches it.
func (d *Driver) createHelper(ctx context.Context, kind, userID string, readOnly bool) (string, error) {
	image, err := d.helperImage(ctx)
	if err != nil {
		return "", err
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "ocmt-" + kind + "-" + userID + "-" + hex.EncodeToString(rnd[:])
	res, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:  image,
			User:   userSpec,
			Labels: d.labels(map[string]string{LabelHelper: kind, LabelManaged: "true", runtime.LabelUser: userID}),
		},
		HostConfig: &container.HostConfig{
			NetworkMode: "none",
			Mounts: []mount.Mount{{
				Type:          mount.TypeVolume,
				Source:        volumeName(userID),
				Target:        imageDataDir,
				ReadOnly:      readOnly,
				VolumeOptions: &mount.VolumeOptions{NoCopy: true},
			}},
		},
	})
	if err != nil {
		return "", fmt.Errorf("create %s helper container for %s: %w", kind, volumeName(userID), err)
	}
	return res.ID, nil
}

// removeHelper removes a helper container, logging (not returning) a
// failure: it never ran and holds nothing.
func (d *Driver) removeHelper(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout*10)
	defer cancel()
	if _, err := d.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		d.log.Warn("cannot remove helper container; remove it with docker rm", "container", shortID(id), "err", err)
	}
}

// helperImage returns a local image for helper containers, never pulling
// one: Options.Image if the engine has it, else the image of a user
// container of this deployment, else the agent image built from
// Options.Binary (built now if missing; no registry is involved).
func (d *Driver) helperImage(ctx context.Context) (string, error) {
	if d.opts.Image != "" {
		if _, err := d.cli.ImageInspect(ctx, d.opts.Image); err == nil {
			return d.opts.Image, nil
		}
	}
	insts, err := d.List(ctx)
	if err != nil {
		return "", err
	}
	for _, in := range insts {
		if in.Image == "" {
			continue
		}
		if _, err := d.cli.ImageInspect(ctx, in.Image); err == nil {
			return in.Image, nil
		}
	}
	if d.opts.Binary == "" {
		return "", errors.New("no local agent image for a helper container: give --agent-binary (an ocmt executable) to build one")
	}
	d.prepMu.Lock()
	defer d.prepMu.Unlock()
	return d.buildImage(ctx, func(string, int) {})
}
