package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent/runtime"
)

// ImageRepo is the repository of locally built agent images; the tag is
// the first 12 hex digits of the binary's SHA-256.
const ImageRepo = "ocmt-agent"

// Progress percentages of the image phase (0–40 of provisioning).
const (
	pctCheck      = 0
	pctBuildStart = 5
	pctImageReady = 40
)

// Prepare makes sure the agent image and the network exist and returns the
// image reference for Spec.Image.
//
// With Options.Image set it checks that image, pulling it if the engine
// lacks it. Otherwise it builds "ocmt-agent:<sha256(binary)[:12]>" from
// Options.Binary, unless an image of that tag exists already (so a new
// binary gets a new image and an unchanged one reuses it). Progress goes
// to progress (which may be nil) in phase api.PhaseImage with Percent from
// 0 to 40. Build errors from the engine come back as Go errors. Concurrent
// calls are serialised.
//
// Once the image is ready, Prepare removes this deployment's older agent
// images that no container uses (see pruneImages); Remove does so too when
// the container it removes ran an older image. A failure there is only
// logged.
func (d *Driver) Prepare(ctx context.Context, progress func(api.Progress)) (string, error) {
	d.prepMu.Lock()
	defer d.prepMu.Unlock()
	report := func(msg string, pct int) {
		if progress != nil {
			progress(api.Progress{Phase: api.PhaseImage, Message: msg, Percent: pct})
		}
	}
	if err := d.ensureNetwork(ctx); err != nil {
		return "", err
	}
	var ref string
	var err error
	if d.opts.Image != "" {
		ref, err = d.operatorImage(ctx, d.opts.Image, report)
	} else {
		ref, err = d.buildImage(ctx, report)
	}
	if err != nil {
		return "", err
	}
	d.current = ref
	if _, err := d.pruneImages(ctx); err != nil {
		d.log.Warn("cannot remove old agent images", "err", err)
	}
	report("The agent software is ready.", pctImageReady)
	return ref, nil
}

// ImageTag returns the tag Prepare gives the image built from the binary
// at path for version: "ocmt-agent:" and the first 12 hex digits of
// SHA-256(binary ‖ 0x00 ‖ version), so a new binary, or the same binary
// labelled with another version, gets its own image.
func ImageTag(path, version string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash binary %s: %w", path, err)
	}
	h.Write([]byte{0})
	h.Write([]byte(version))
	return ImageRepo + ":" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// operatorImage checks that ref exists in the engine, pulling it if not.
func (d *Driver) operatorImage(ctx context.Context, ref string, report func(string, int)) (string, error) {
	report("Checking the agent software…", pctCheck)
	_, err := d.cli.ImageInspect(ctx, ref)
	if err == nil {
		return ref, nil
	}
	if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	report("Downloading the agent software…", pctBuildStart)
	d.log.Info("pulling image", "image", ref)
	resp, err := d.cli.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return "", fmt.Errorf("image %s is not in the engine and pulling it failed: %w", ref, err)
	}
	defer resp.Close()
	err = readJSONStream(resp, func(m jsonstream.Message) {
		if m.Status != "" && m.Progress == nil {
			report("Downloading the agent software…", pctBuildStart)
		}
	})
	if err != nil {
		return "", fmt.Errorf("image %s is not in the engine and pulling it failed: %w", ref, err)
	}
	if _, err := d.cli.ImageInspect(ctx, ref); err != nil {
		return "", fmt.Errorf("inspect image %s after pull: %w", ref, err)
	}
	return ref, nil
}

// buildImage builds the agent image from Options.Binary unless its tag
// exists already, and returns the tag.
func (d *Driver) buildImage(ctx context.Context, report func(string, int)) (string, error) {
	report("Checking the agent software…", pctCheck)
	tag, err := ImageTag(d.opts.Binary, d.opts.Version)
	if err != nil {
		return "", err
	}
	if _, err := d.cli.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect image %s: %w", tag, err)
	}

	plan, err := planRootfs(d.opts.Binary)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", tag, err)
	}
	size := contextSize(plan)
	mib := max(1, (size+(1<<19))>>20)
	report(fmt.Sprintf("Preparing the agent software for this server (first time only; %d MiB)…", mib), pctBuildStart)
	d.log.Info("building image", "image", tag, "static", plan.Static, "libraries", len(plan.Libraries), "contextBytes", size)

	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		err := writeBuildContext(pw, plan)
		pw.CloseWithError(err) // nil: EOF for the reader
		writeErr <- err
	}()
	res, err := d.cli.ImageBuild(ctx, pr, client.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  ctxDockerfile,
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1, // BuildKit would need a session; the context has all
		Labels: d.labels(map[string]string{
			runtime.LabelVersion: d.opts.Version,
			LabelManaged:         "true",
		}),
	})
	if err != nil {
		pr.CloseWithError(err) // unblock the writer
		<-writeErr
		return "", fmt.Errorf("build image %s: %w", tag, err)
	}
	streamErr := readJSONStream(res.Body, func(m jsonstream.Message) {
		if step, n, _, ok := parseStep(m.Stream); ok {
			pct := pctBuildStart + (pctImageReady-pctBuildStart)*step/(n+1)
			report(fmt.Sprintf("Preparing the agent software for this server (first time only): part %d of %d…", step, n), pct)
		}
	})
	res.Body.Close()
	pr.CloseWithError(errBuildDone) // unblock the writer if the engine stopped reading
	if err := <-writeErr; err != nil && !errors.Is(err, errBuildDone) && streamErr == nil {
		streamErr = err
	}
	if streamErr != nil {
		return "", fmt.Errorf("build image %s: %w", tag, streamErr)
	}
	if _, err := d.cli.ImageInspect(ctx, tag); err != nil {
		return "", fmt.Errorf("inspect image %s after build: %w", tag, err)
	}
	d.log.Info("image built", "image", tag)
	return tag, nil
}

// errBuildDone closes the context pipe once the build stream has ended.
var errBuildDone = errors.New("build finished")

// readJSONStream decodes the engine's JSON message stream (build or pull
// output) from r, calling fn for each message, and returns the first
// errorDetail as an error (a *jsonstream.Error in the chain).
func readJSONStream(r io.Reader, fn func(jsonstream.Message)) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read engine output: %w", err)
		}
		if m.Error != nil {
			return fmt.Errorf("engine: %w", m.Error)
		}
		fn(m)
	}
}

// stepRe matches the legacy builder's "Step 2/6 : COPY rootfs/ /" lines.
var stepRe = regexp.MustCompile(`^Step (\d+)/(\d+) : (.*)`)

// parseStep summarises a build stream line "Step i/n : INSTRUCTION args"
// into (i, n, "INSTRUCTION", true); other lines give ok false.
func parseStep(s string) (step, n int, instruction string, ok bool) {
	m := stepRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, 0, "", false
	}
	step, err1 := strconv.Atoi(m[1])
	n, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil || n <= 0 || step > n {
		return 0, 0, "", false
	}
	instruction, _, _ = strings.Cut(m[3], " ")
	return step, n, instruction, true
}

// firstLine returns s up to its first newline, trimmed.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

// pruneImages removes the agent images of this deployment that no
// container uses, and returns their references. An image is this
// deployment's when it carries LabelManaged "true" and LabelDeployment
// equal to Options.Deployment: Prepare labels the images it builds so.
// (Two deployments running the same binary share its tag, and the image
// carries the label of the one that built it; should that one prune it
// while the other still means to use it, the other's Create rebuilds it.)
// Without a deployment nothing is removed. It keeps the current image (the last
// Prepare's), the operator's Options.Image, and every image that any
// container references, running or stopped, of this deployment or any
// other. Only tags in ImageRepo ("ocmt-agent:…") are removed, by name and
// without force: a tag given elsewhere (an operator's copy of one of
// ours) keeps the image, and the engine still refuses an image that a
// container started to use meanwhile (logged and skipped). An untagged
// image of ours is removed by id.
func (d *Driver) pruneImages(ctx context.Context) ([]string, error) {
	if d.opts.Deployment == "" || d.current == "" {
		return nil, nil
	}
	imgs, err := d.cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).
		Add("label", LabelManaged+"=true").
		Add("label", runtime.LabelDeployment+"="+d.opts.Deployment)})
	if err != nil {
		return nil, fmt.Errorf("list agent images: %w", err)
	}
	if len(imgs.Items) == 0 {
		return nil, nil
	}
	keep := map[string]bool{}
	for _, ref := range []string{d.current, d.opts.Image} {
		if ref == "" {
			continue
		}
		res, err := d.cli.ImageInspect(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("inspect image %s: %w", ref, err)
		}
		keep[res.ID] = true
	}
	ctrs, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs.Items {
		keep[c.ImageID] = true
	}
	var removed []string
	for _, img := range imgs.Items {
		if keep[img.ID] || img.Labels[runtime.LabelDeployment] != d.opts.Deployment {
			continue
		}
		var refs []string // our tags only: another name keeps the image
		for _, tag := range img.RepoTags {
			if strings.HasPrefix(tag, ImageRepo+":") {
				refs = append(refs, tag)
			}
		}
		if len(img.RepoTags) == 0 {
			refs = []string{img.ID}
		}
		for _, ref := range refs {
			if _, err := d.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
				if !cerrdefs.IsNotFound(err) {
					d.log.Warn("old agent image not removed", "image", ref, "err", err)
				}
				continue
			}
			removed = append(removed, ref)
			d.log.Info("old agent image removed", "image", ref)
		}
	}
	return removed, nil
}
