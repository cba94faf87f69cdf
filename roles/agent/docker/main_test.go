package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent/runtime"
)

// Engine tests share one fixture per test binary: a binary, a driver on a
// network of their own ("ocmt-test-<random>", never the real one) and the
// agent image built from that binary. TestMain removes the image tags and
// networks afterwards; each test removes its containers and volumes.

// fixture is the shared engine state, made once by engineFixture.
type fixture struct {
	dir          string         // temp dir holding the binaries
	binary       string         // executable in the image
	realBinary   bool           // binary is ocmt itself, not testdata/fakevault
	network      string         // network name for this test binary
	drv          *Driver        // driver on network, Binary = binary
	image        string         // tag from the first Prepare
	imageExisted bool           // the tag was there before the first Prepare
	progress     []api.Progress // reported by the first Prepare
}

var (
	fxOnce sync.Once
	fx     *fixture
	fxErr  error // why there is no fixture
	fxSkip bool  // fxErr means "no engine" rather than a failure

	cleanMu       sync.Mutex
	cleanImages   []string // image tags to remove after the tests
	cleanNetworks []string // network names to remove after the tests
)

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupEngine()
	if fx != nil {
		os.RemoveAll(fx.dir)
	}
	os.Exit(code)
}

// cleanupEngine removes the image tags and networks the tests made.
func cleanupEngine() {
	cleanMu.Lock()
	defer cleanMu.Unlock()
	if len(cleanImages) == 0 && len(cleanNetworks) == 0 {
		return
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tag := range cleanImages {
		if _, err := cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			fmt.Fprintf(os.Stderr, "cleanup: remove image %s: %v\n", tag, err)
		}
	}
	for _, name := range cleanNetworks {
		res, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", name)})
		if err != nil {
			continue
		}
		for _, n := range res.Items {
			if n.Name != name {
				continue
			}
			if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				fmt.Fprintf(os.Stderr, "cleanup: remove network %s: %v\n", name, err)
			}
		}
	}
}

func cleanupImage(tag string) {
	cleanMu.Lock()
	defer cleanMu.Unlock()
	cleanImages = append(cleanImages, tag)
}

func cleanupNetwork(name string) {
	cleanMu.Lock()
	defer cleanMu.Unlock()
	cleanNetworks = append(cleanNetworks, name)
}

// requireEngine skips t when no engine answers, or fails it when CI=true.
func requireEngine(t testing.TB) {
	t.Helper()
	if _, err := Ping(context.Background()); err != nil {
		noEngine(t, err)
	}
}

func noEngine(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("docker engine required (CI=true): %v", err)
	}
	t.Skipf("skipping: no docker engine answers (%v); set CI=true to make this a failure", err)
}

// engineFixture returns the shared fixture, making it on first use. It
// skips (or fails, with CI=true) when no engine answers.
func engineFixture(t testing.TB) *fixture {
	t.Helper()
	fxOnce.Do(func() {
		if _, err := Ping(context.Background()); err != nil {
			fxErr, fxSkip = err, true
			return
		}
		fx, fxErr = newFixture()
	})
	if fxErr != nil {
		if fxSkip {
			noEngine(t, fxErr)
		}
		t.Fatalf("engine fixture: %v", fxErr)
	}
	return fx
}

func newFixture() (*fixture, error) {
	dir, err := os.MkdirTemp("", "ocmt-docker-test-")
	if err != nil {
		return nil, err
	}
	f := &fixture{dir: dir, network: "ocmt-test-" + randHex(4)}
	f.binary, f.realBinary, err = testBinary(dir)
	if err != nil {
		return nil, err
	}
	cleanupNetwork(f.network)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f.drv, err = New(ctx, Options{Binary: f.binary, Network: f.network, Version: "test", Logger: testLogger()})
	if err != nil {
		return nil, err
	}
	tag, err := ImageTag(f.binary, "test")
	if err != nil {
		return nil, err
	}
	_, err = f.drv.Client().ImageInspect(ctx, tag)
	f.imageExisted = err == nil
	if !f.imageExisted {
		cleanupImage(tag)
	}
	f.image, err = f.drv.Prepare(ctx, func(p api.Progress) { f.progress = append(f.progress, p) })
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	return f, nil
}

// testBinary returns the executable to put in the test image: $OCMT_TEST_BINARY
// if set; else ocmt built from this module; else, while the main package
// does not build yet (other packages are still being written), the static
// stand-in testdata/fakevault, which has the same /healthz contract.
// OCMT_TEST_FAKEVAULT=1 forces the stand-in.
func testBinary(dir string) (path string, real bool, err error) {
	if p := os.Getenv("OCMT_TEST_BINARY"); p != "" {
		return p, true, nil
	}
	if os.Getenv("OCMT_TEST_FAKEVAULT") != "1" {
		out := filepath.Join(dir, "ocmt")
		if b, err := exec.Command("go", "build", "-o", out, "github.com/ocmt/ocmt").CombinedOutput(); err == nil {
			return out, true, nil
		} else {
			fmt.Fprintf(os.Stderr, "docker tests: ocmt does not build yet, using testdata/fakevault: %s\n", firstLine(string(b)))
		}
	}
	out := filepath.Join(dir, "fakevault")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/fakevault")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("build fakevault: %w\n%s", err, b)
	}
	return out, false, nil
}

// testLogger logs warnings and errors to stderr when -v is given.
func testLogger() *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testSpec is a spec for a fresh, unique test user.
func testSpec(image string) runtime.Spec {
	user := "t" + randHex(5)
	return runtime.Spec{
		UserID:    user,
		Name:      "ocmt-" + user,
		Secret:    randHex(16),
		Image:     image,
		MemoryMiB: 64,
		NanoCPUs:  500_000_000,
		PidsLimit: 64,
		Version:   "test",
	}
}

// createInstance creates spec's container and registers the removal of
// the container and its volume (first: a Create that fails after making
// the volume leaves nothing behind either).
func createInstance(t testing.TB, d *Driver, spec runtime.Spec) runtime.Instance {
	t.Helper()
	t.Cleanup(func() { removeUser(t, d, spec.Name, spec.UserID) })
	inst, err := d.Create(context.Background(), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return inst
}

// removeUser force-removes the container named name (if any) and the
// user's volume.
func removeUser(t testing.TB, d *Driver, name, userID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.Client().ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("cleanup: remove container %s: %v", name, err)
	}
	if _, err := d.Client().VolumeRemove(ctx, volumeName(userID), client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("cleanup: remove volume %s: %v", volumeName(userID), err)
	}
}

var healthClient = &http.Client{Timeout: 2 * time.Second}

// healthz does one GET <endpoint>/healthz with the secret header and
// returns the status code.
func healthz(endpoint, secret string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, endpoint+"/healthz", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set(runtime.SecretHeader, secret)
	resp, err := healthClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitHealthy polls /healthz until it answers 200, for up to 15 seconds.
func waitHealthy(endpoint, secret string) error {
	if !strings.HasPrefix(endpoint, "http://127.0.0.1:") {
		return fmt.Errorf("endpoint %q is not on loopback", endpoint)
	}
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		code, err := healthz(endpoint, secret)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("status %d", code)
		}
		last = err
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s/healthz not healthy after 15s: %w", endpoint, last)
}

// mustHealthy fails t unless inst's endpoint answers 200.
func mustHealthy(t testing.TB, inst runtime.Instance, secret string) {
	t.Helper()
	if err := waitHealthy(inst.Endpoint, secret); err != nil {
		t.Fatal(err)
	}
}

// isNotFound reports whether err is runtime.ErrNotFound.
func isNotFound(err error) bool { return errors.Is(err, runtime.ErrNotFound) }
