package datadir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary a lock-holding child (see TestMain).
const childEnv = "OCMT_DATADIR_TEST_CHILD"

// TestMain, as a child, locks the directory named by $OCMT_DATADIR_TEST_CHILD
// ("" = lock nothing), prints "ready", and waits for stdin to close.
func TestMain(m *testing.M) {
	dir, ok := os.LookupEnv(childEnv)
	if !ok {
		os.Exit(m.Run())
	}
	if dir != "" {
		if _, err := Lock(dir, Holder{PID: os.Getpid(), Listen: "127.0.0.1:7001"}); err != nil {
			fmt.Println("lock:", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// startChild runs the test binary as a child that locks dir ("" = none)
// and returns once it is ready; the child is killed at cleanup.
func startChild(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("child: %q, %v", line, err)
	}
	return cmd
}

func mustLock(t *testing.T, dir string, h Holder) *Held {
	t.Helper()
	l, err := Lock(dir, h)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestSecondLockRefused(t *testing.T) {
	dir := t.TempDir()
	l := mustLock(t, dir, Holder{PID: 4242, Listen: "127.0.0.1:0"})
	if err := l.SetListen("127.0.0.1:41234"); err != nil {
		t.Fatal(err)
	}
	_, err := Lock(dir, Holder{PID: 1, Listen: "127.0.0.1:9"})
	var inUse *InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("second Lock = %v, want *InUseError", err)
	}
	want := "data directory " + dir + " is in use by another ocmt (pid 4242, listening on 127.0.0.1:41234); stop it first"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	h, held, err := HolderOf(dir)
	if err != nil || !held || h != (Holder{PID: 4242, Listen: "127.0.0.1:41234"}) {
		t.Errorf("HolderOf = %+v, %v, %v", h, held, err)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, held, err := HolderOf(dir); held || err != nil {
		t.Errorf("HolderOf after Close = held %v, %v", held, err)
	}
	mustLock(t, dir, Holder{PID: 7})
}

// TestCrashedHolderReleases: a process holding the lock is killed with
// SIGKILL; its stale file does not block the next Lock.
func TestCrashedHolderReleases(t *testing.T) {
	dir := t.TempDir()
	child := startChild(t, dir)
	pid := child.Process.Pid

	_, err := Lock(dir, Holder{PID: os.Getpid()})
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != pid || inUse.Listen != "127.0.0.1:7001" || inUse.Dir != dir {
		t.Fatalf("Lock while the child holds it = %v (%+v), want *InUseError naming pid %d", err, inUse, pid)
	}
	if h, held, err := HolderOf(dir); !held || h.PID != pid || err != nil {
		t.Fatalf("HolderOf = %+v, %v, %v; want the child, pid %d", h, held, err, pid)
	}

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if !strings.Contains(string(b), fmt.Sprint(pid)) {
		t.Fatalf("lock file after the crash = %q; the test expects the stale pid %d in it", b, pid)
	}
	if _, held, err := HolderOf(dir); held || err != nil {
		t.Errorf("HolderOf after the crash = held %v, %v", held, err)
	}
	mustLock(t, dir, Holder{PID: os.Getpid(), Listen: "127.0.0.1:8080"})
	b, _ = os.ReadFile(filepath.Join(dir, FileName))
	if want := fmt.Sprintf(`{"pid":%d,"listen":"127.0.0.1:8080"}`+"\n", os.Getpid()); string(b) != want {
		t.Errorf("lock file = %q, want %q", b, want)
	}
}

// TestStaleFileDoesNotBlock: a file naming a holder that holds no lock
// (e.g. copied from another machine) is overwritten, not obeyed.
func TestStaleFileDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	stale := `{"pid":1,"listen":"10.0.0.1:8080","extra":"` + strings.Repeat("x", 100) + `"}`
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, held, err := HolderOf(dir); held || err != nil {
		t.Errorf("HolderOf(stale file) = held %v, %v", held, err)
	}
	mustLock(t, dir, Holder{PID: 5})
	if b, _ := os.ReadFile(filepath.Join(dir, FileName)); string(b) != `{"pid":5}`+"\n" {
		t.Errorf("lock file = %q, want the new holder only", b)
	}
}

// TestChildDoesNotInherit: a child process started while the lock is held
// (the process runtime's vaults) does not keep it after the parent lets go.
func TestChildDoesNotInherit(t *testing.T) {
	dir := t.TempDir()
	l := mustLock(t, dir, Holder{PID: os.Getpid()})
	startChild(t, "") // runs on, holding whatever it inherited
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustLock(t, dir, Holder{PID: os.Getpid()})
}

func TestHolderOfNoFile(t *testing.T) {
	if h, held, err := HolderOf(t.TempDir()); held || err != nil || h != (Holder{}) {
		t.Errorf("HolderOf(empty dir) = %+v, %v, %v", h, held, err)
	}
}

func TestLockMissingDir(t *testing.T) {
	_, err := Lock(filepath.Join(t.TempDir(), "nope"), Holder{})
	var inUse *InUseError
	if err == nil || errors.As(err, &inUse) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lock(missing dir) = %v, want a not-exist error", err)
	}
}

func TestInUseErrorUnknownHolder(t *testing.T) {
	for _, c := range []struct {
		e    InUseError
		want string
	}{
		{InUseError{Dir: "/d"}, "data directory /d is in use by another ocmt; stop it first"},
		{InUseError{Dir: "/d", PID: 3}, "data directory /d is in use by another ocmt (pid 3); stop it first"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
}

// TestLockRefusesSymlink: a symlink at the lock's name (planted by someone
// who can write the data directory) is refused, and the file it points to
// is neither truncated nor written.
func TestLockRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	if l, err := Lock(dir, Holder{PID: 1}); err == nil {
		l.Close()
		t.Fatal("Lock followed a symlink")
	}
	if _, _, err := HolderOf(dir); err == nil {
		t.Error("HolderOf followed a symlink")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("symlink target changed: %q", b)
	}
}
