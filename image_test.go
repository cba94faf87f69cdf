package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocmt/ocmt/xtest"
)

// needDocker makes sure the docker CLI, make and an engine are there: it
// skips without them, or fails when CI=true.
func needDocker(t *testing.T) {
	t.Helper()
	missing := ""
	for _, tool := range []string{"docker", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = tool + " is not installed"
		}
	}
	if missing == "" {
		if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
			missing = "no docker engine answers: " + strings.TrimSpace(string(out))
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("docker required (CI=true): %s", missing)
	}
	t.Skipf("skipping: %s; set CI=true to make this a failure", missing)
}

// docker runs the docker CLI and returns its combined output.
func docker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	return string(out), err
}

// TestImageBuildsOffline builds the server image as README "Image" says
// (`make image`: make static, then docker build), which must work with no
// registry: every stage is FROM scratch. In the image, `ocmt version` and
// `ocmt doctor` run (no shell, no home directory, no Docker socket), and
// serve runs as 65532:65532 with /data its own. The image is removed at
// the end.
func TestImageBuildsOffline(t *testing.T) {
	needDocker(t)
	root := xtest.ModuleRoot()

	// Nothing to pull: no stage starts from a registry image.
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(df)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && strings.EqualFold(f[0], "FROM") && f[1] != "scratch" {
			t.Errorf("Dockerfile starts a stage from %s, which needs a registry: %q", f[1], sc.Text())
		}
	}

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "ocmt-imagetest-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if out, err := docker(t, "image", "rm", "-f", tag); err != nil && !strings.Contains(out, "No such image") {
			t.Errorf("cleanup: remove image %s: %v: %s", tag, err, out)
		}
	})
	start := time.Now()
	cmd := exec.Command("make", "image", "IMAGE="+tag)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Logf("make image (make static + docker build) took %s", time.Since(start).Round(time.Second))
	if s := string(out); strings.Contains(s, "Pulling") || strings.Contains(s, "pull access") {
		t.Errorf("the build pulled something:\n%s", s)
	}

	// The image's own settings.
	cfg, err := docker(t, "image", "inspect", "--format", "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{json .Config.Env}}", tag)
	if err != nil {
		t.Fatalf("inspect: %v: %s", err, cfg)
	}
	for _, want := range []string{"65532:65532|", `["/ocmt"]`, `["serve"]`, "OCMT_DATA_DIR=/data", "OCMT_LISTEN=127.0.0.1:8080"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("image config %q lacks %q", strings.TrimSpace(cfg), want)
		}
	}

	// version
	if got, err := docker(t, "run", "--rm", "--network", "none", tag, "version"); err != nil || !strings.HasPrefix(got, "ocmt ") {
		t.Errorf("ocmt version in the image: %v: %q", err, got)
	}

	// doctor, with no socket and a home directory that does not exist.
	got, err := docker(t, "run", "--rm", "--network", "none", "-e", "HOME=/nonexistent", "-e", "XDG_DATA_HOME=", tag, "doctor")
	if err != nil {
		t.Errorf("ocmt doctor in the image: %v\n%s", err, got)
	}
	for _, want := range []string{
		"warn  container engine       no engine answers (no Docker socket at /var/run/docker.sock",
		"ok    data directory         /data is writable",
		"ok    listen address         127.0.0.1:8080 is free",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, got)
		}
	}

	// doctor with the socket: without its group, the hint names the
	// group to add; with --group-add as README says, the engine answers.
	const sock = "/var/run/docker.sock"
	if fi, err := os.Stat(sock); err == nil && os.Getenv("DOCKER_HOST") == "" {
		gid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid))
		if fi.Mode().Perm()&0o006 == 0 && gid != "65532" {
			got, _ := docker(t, "run", "--rm", "--network", "none", "-v", sock+":"+sock, tag, "doctor")
			if want := "uid 65532 may not use " + sock + ", which belongs to group " + gid + ": add that group (docker run --group-add " + gid + ")"; !strings.Contains(got, want) {
				t.Errorf("doctor with the socket but not its group lacks %q:\n%s", want, got)
			}
		}
		got, err := docker(t, "run", "--rm", "--network", "none", "--group-add", gid, "-v", sock+":"+sock, tag, "doctor")
		if err != nil || !strings.Contains(got, "ok    container engine       docker ") {
			t.Errorf("doctor with the socket and --group-add %s: %v\n%s", gid, err, got)
		}
	}

	// serve runs as 65532:65532 (no engine: the process runtime).
	name := tag + "-serve"
	t.Cleanup(func() { _, _ = docker(t, "rm", "-f", name) })
	if out, err := docker(t, "run", "-d", "--name", name, "--network", "none", tag); err != nil {
		t.Fatalf("docker run serve: %v: %s", err, out)
	}
	var logs string
	for deadline := time.Now().Add(time.Minute); !strings.Contains(logs, "ocmt serving"); {
		if time.Now().After(deadline) {
			t.Fatalf("serve in the image logged no start within a minute:\n%s", logs)
		}
		time.Sleep(100 * time.Millisecond)
		logs, _ = docker(t, "logs", name)
	}
	top, err := docker(t, "top", name, "-o", "pid,uid,gid,comm")
	if err != nil {
		t.Fatalf("docker top: %v: %s", err, top)
	}
	lines := strings.Split(strings.TrimSpace(top), "\n")
	if len(lines) < 2 {
		t.Fatalf("docker top shows no process:\n%s", top)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 4 || f[1] != "65532" || f[2] != "65532" {
			t.Errorf("process not running as 65532:65532: %q", l)
		}
	}
}
