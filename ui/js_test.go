package ui

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestJSUnits runs the node --test unit tests in testdata/js, which import
// the real modules from static/ (markdown renderer, password strength,
// protocol frames, gateway client, vault crypto helpers, Trusted Types URL
// check). It skips without node, unless CI=true.
func TestJSUnits(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and node is not on PATH")
		}
		t.Skip("node not on PATH (set CI=true to make this a failure)")
	}
	// static/*.js are ES modules without a package.json; node detects the
	// module syntax by itself from 20.19 and 22.12 on.
	if v, _ := exec.Command(node, "--version").Output(); !nodeDetectsModules(strings.TrimSpace(string(v))) {
		t.Skipf("node %s cannot load .js ES modules without a package.json (need ≥ 20.19 or ≥ 22.12)", strings.TrimSpace(string(v)))
	}
	files, err := filepath.Glob(filepath.Join("testdata", "js", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no JS tests in testdata/js (%v)", err)
	}
	cmd := exec.Command(node, append([]string{"--test", "--test-reporter=tap"}, files...)...)
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=", "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^# pass (\d+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("node --test: no summary:\n%s", out)
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 30 {
		t.Errorf("node --test ran only %d passing tests:\n%s", n, out)
	}
	t.Logf("node --test: %s tests passed", m[1])
}

// nodeDetectsModules reports whether node version v ("v20.20.2") loads ES
// module syntax from .js files outside a "type": "module" package.
func nodeDetectsModules(v string) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, _ := strconv.Atoi(parts[0])
	minor, _ := strconv.Atoi(parts[1])
	switch {
	case major >= 23:
		return true
	case major == 22:
		return minor >= 12
	case major == 20:
		return minor >= 19
	default:
		return false
	}
}

func TestNodeDetectsModules(t *testing.T) {
	for v, want := range map[string]bool{"v20.20.2": true, "v20.18.0": false, "v22.11.0": false, "v22.12.0": true, "v24.1.0": true, "v18.20.0": false, "v21.7.0": false, "": false} {
		if got := nodeDetectsModules(v); got != want {
			t.Errorf("nodeDetectsModules(%q) = %v", v, got)
		}
	}
}
