package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestIsPermission(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"wrapped EACCES", fmt.Errorf("ping: %w", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}), true},
		{"moby's text", errors.New("permission denied while trying to connect to the docker API at unix:///var/run/docker.sock"), true},
		{"no socket", fmt.Errorf("ping: %w", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ENOENT)}), false},
		{"refused", errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"), false},
	} {
		if got := IsPermission(tc.err); got != tc.want {
			t.Errorf("%s: IsPermission = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// permissionChildEnv makes the test binary, run again, only ping the
// engine named by DOCKER_HOST and print the error.
const permissionChildEnv = "OCMT_TEST_PERMISSION_CHILD"

// TestPingPermissionDenied: a socket this user may not open makes Ping's
// error say how to get access (PermissionFix). Root ignores file modes, so
// as root the test runs itself again as nobody (uid 65534) against a
// root-only socket.
func TestPingPermissionDenied(t *testing.T) {
	if os.Getenv(permissionChildEnv) != "" {
		_, err := Ping(context.Background())
		fmt.Println("PING ERROR:", err)
		return
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	var got string
	if os.Getuid() != 0 {
		if err := os.Chmod(sock, 0); err != nil {
			t.Fatal(err)
		}
		_, err := Ping(context.Background())
		got = fmt.Sprint(err)
	} else {
		if err := os.Chmod(sock, 0o600); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "docker.test")
		copyExecutable(t, bin)
		cmd := exec.Command(bin, "-test.run=^TestPingPermissionDenied$")
		cmd.Env = append(os.Environ(), permissionChildEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child as nobody: %v\n%s", err, out)
		}
		got = string(out)
	}
	for _, want := range []string{"permission denied", "to fix: " + PermissionFix} {
		if !strings.Contains(got, want) {
			t.Errorf("ping error %q lacks %q", got, want)
		}
	}
}

// copyExecutable copies the running test binary to dst, mode 0755, where
// another user can run it.
func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
