package datadir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// FileName is the lock file inside the data directory.
const FileName = "ocmt.lock"

// maxFileBytes bounds how much of the lock file Holder reads.
const maxFileBytes = 4096

// Holder describes the process holding a data directory. It is stored in
// the lock file as one JSON object, {"pid":1234,"listen":"127.0.0.1:8080"}.
type Holder struct {
	PID    int    `json:"pid"`              // process id; 0 = unknown
	Listen string `json:"listen,omitempty"` // address it listens on, host:port; "" = unknown
}

// InUseError is returned by Lock when another process (or another Lock in
// this process) holds Dir. PID and Listen come from the lock file and are
// zero/empty when it could not be read (e.g. the holder is still writing
// it).
type InUseError struct {
	Dir    string
	PID    int
	Listen string
}

// Error is one line for the operator, e.g. "data directory /x is in use
// by another ocmt (pid 1234, listening on 127.0.0.1:8080); stop it first".
func (e *InUseError) Error() string {
	who := Holder{PID: e.PID, Listen: e.Listen}.String()
	if who != "" {
		who = " (" + who + ")"
	}
	return fmt.Sprintf("data directory %s is in use by another ocmt%s; stop it first", e.Dir, who)
}

// Held is a held data directory lock. Its methods are safe for concurrent
// use.
type Held struct {
	dir    string
	mu     sync.Mutex // guards f and holder
	f      *os.File   // nil once closed
	holder Holder
}

// Lock takes the exclusive lock on <dir>/ocmt.lock without waiting,
// creating the file (mode 0600) if needed; dir must exist. It then writes
// info into the file. The lock lasts until Close or the end of the
// process; the file descriptor is close-on-exec, so child processes (the
// process runtime's vaults) do not inherit it.
//
// If the lock is held elsewhere it returns an *InUseError with the
// holder's pid and listen address as recorded in the file. Other failures
// (missing directory, permissions) are wrapped errors naming the file.
func Lock(dir string, info Holder) (*Held, error) {
	path := filepath.Join(dir, FileName)
	// O_NOFOLLOW: a symlink planted at the lock's name must not make
	// Lock truncate and write the file it points to. Go opens with
	// O_CLOEXEC.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			h, _ := readHolder(f)
			return nil, &InUseError{Dir: dir, PID: h.PID, Listen: h.Listen}
		}
		return nil, fmt.Errorf("lock data directory: flock %s: %w", path, err)
	}
	l := &Held{dir: dir, f: f, holder: info}
	if err := l.write(); err != nil {
		f.Close() // releases the lock
		return nil, err
	}
	return l, nil
}

// Dir returns the locked directory.
func (l *Held) Dir() string { return l.dir }

// SetListen records addr (host:port) as the holder's listen address, for
// when it is known only once listening (port 0).
func (l *Held) SetListen(addr string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("data directory lock: closed")
	}
	l.holder.Listen = addr
	return l.writeLocked()
}

// Close empties the lock file and releases the lock. The file stays (it
// is reused by the next Lock; removing it would let two processes lock
// two different files of the same name). Closing twice is a no-op.
func (l *Held) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	terr := l.f.Truncate(0)
	cerr := l.f.Close() // releases the flock
	l.f = nil
	if cerr != nil {
		return fmt.Errorf("unlock data directory: %w", cerr)
	}
	if terr != nil {
		return fmt.Errorf("unlock data directory: %w", terr)
	}
	return nil
}

func (l *Held) write() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writeLocked()
}

// writeLocked rewrites the file in place: the lock belongs to this inode,
// so an atomic rename (a new inode) would unlock the directory.
func (l *Held) writeLocked() error {
	b, err := json.Marshal(l.holder)
	if err != nil {
		return fmt.Errorf("write data directory lock: %w", err)
	}
	b = append(b, '\n')
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write data directory lock: %w", err)
	}
	if err := l.f.Truncate(int64(len(b))); err != nil {
		return fmt.Errorf("write data directory lock: %w", err)
	}
	return nil
}

// HolderOf reports whether dir is locked by a live process, and if so who
// holds it (as recorded in the lock file; zero fields when unreadable). It
// does not take the lock: it probes with a shared lock that it drops at
// once. During that probe (microseconds) a concurrent Lock on dir fails
// with an *InUseError naming the last recorded holder. A missing lock
// file means not held.
func HolderOf(dir string) (h Holder, held bool, err error) {
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, fmt.Errorf("check data directory lock: %w", err)
	}
	defer f.Close()
	switch err := flock(f, unix.LOCK_SH|unix.LOCK_NB); {
	case err == nil:
		_ = flock(f, unix.LOCK_UN)
		return Holder{}, false, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		h, _ := readHolder(f)
		return h, true, nil
	default:
		return Holder{}, false, fmt.Errorf("check data directory lock: flock %s: %w", f.Name(), err)
	}
}

// flock calls flock(2) on f, retrying on EINTR.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// readHolder parses the lock file's content from its start.
func readHolder(f *os.File) (Holder, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, maxFileBytes))
	if err != nil {
		return Holder{}, err
	}
	var h Holder
	if err := json.Unmarshal(b, &h); err != nil {
		return Holder{}, fmt.Errorf("parse %s: %w", f.Name(), err)
	}
	if h.PID < 0 {
		h.PID = 0
	}
	return h, nil
}

// String gives "pid 1234, listening on 127.0.0.1:8080" (parts that are
// unknown are left out; "" if both are).
func (h Holder) String() string {
	switch {
	case h.PID != 0 && h.Listen != "":
		return "pid " + strconv.Itoa(h.PID) + ", listening on " + h.Listen
	case h.PID != 0:
		return "pid " + strconv.Itoa(h.PID)
	case h.Listen != "":
		return "listening on " + h.Listen
	}
	return ""
}
