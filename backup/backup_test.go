package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ocmt/ocmt/datadir"
	"github.com/ocmt/ocmt/store"
)

// processDataDir makes a data directory as the process runtime leaves it:
// a database with a container record, audit.key, one user's vault files,
// and files a backup leaves out (journal, lock and temporary files).
func processDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutContainer(ctx, store.Container{UserID: "usr_alice", Runtime: "process", State: store.StateStopped}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetOrCreateKV(ctx, "deployment.id", func() []byte { return []byte("dep_test") }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // open while backed up, as under a running ocmt
	for name, body := range map[string]string{
		"users/usr_alice/vault.ocv":                "sealed vault bytes",
		"users/usr_alice/transcripts/abc.tr":       "sealed transcript",
		"users/usr_alice/.vault.ocv.ocmt-tmp-1234": "half-written",
		"ocmt.lock":       "pid 1",
		".write-check-99": "",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func createArchive(t *testing.T, dataDir string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "b.tar.gz")
	if _, err := Create(context.Background(), CreateOptions{DataDir: dataDir, To: to, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return to
}

// TestRoundTripProcess: what a process-runtime data directory holds comes
// back byte for byte, without the journal, lock and temporary files; the
// archive is 0600 and an existing one is not replaced without Force.
func TestRoundTripProcess(t *testing.T) {
	src := processDataDir(t)
	to := createArchive(t, src)
	if fi, err := os.Stat(to); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive mode: %v %v", fi.Mode(), err)
	}
	if _, err := Create(context.Background(), CreateOptions{DataDir: src, To: to}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwrite without force: %v", err)
	}
	m, err := Read(mustOpen(t, to))
	if err != nil {
		t.Fatal(err)
	}
	if m.Deployment != "dep_test" || m.SchemaVersion != store.LatestSchemaVersion() || len(m.Users) != 1 || m.Users[0].Runtime != "process" {
		t.Fatalf("manifest: %+v", m)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	var out bytes.Buffer
	if _, err := Restore(context.Background(), RestoreOptions{From: to, DataDir: dst, Out: &out}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"users/usr_alice/vault.ocv", "users/usr_alice/transcripts/abc.tr", store.AuditKeyFile} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
		if fi, _ := os.Stat(filepath.Join(dst, name)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", name, fi.Mode())
		}
	}
	// Restore holds dst's own lock while it writes and empties it after.
	if b, err := os.ReadFile(filepath.Join(dst, datadir.FileName)); err != nil || len(b) != 0 {
		t.Errorf("%s after restore: %q, %v; want the restore's own, emptied lock file", datadir.FileName, b, err)
	}
	for _, name := range []string{".write-check-99", "users/usr_alice/.vault.ocv.ocmt-tmp-1234", "ocmt.db-wal"} {
		if _, err := os.Stat(filepath.Join(dst, name)); err == nil {
			t.Errorf("%s was backed up", name)
		}
	}
	n, err := func() (int64, error) {
		st, err := store.OpenReadOnly(context.Background(), filepath.Join(dst, store.FileName))
		if err != nil {
			return 0, err
		}
		defer st.Close()
		return st.VerifyAudit(context.Background())
	}()
	if err != nil {
		t.Fatalf("audit chain of the restored database: %d rows, %v", n, err)
	}

	// Restoring again needs Force; with it the user's directory is
	// replaced as a whole.
	if _, err := Restore(context.Background(), RestoreOptions{From: to, DataDir: dst}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty directory: %v", err)
	}
	stray := filepath.Join(dst, "users/usr_alice/stray")
	os.WriteFile(stray, []byte("x"), 0o600)
	out.Reset()
	if _, err := Restore(context.Background(), RestoreOptions{From: to, DataDir: dst, Force: true, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); err == nil {
		t.Error("--force left a file in the replaced user directory")
	}
	if !strings.Contains(out.String(), "replaced directory users/usr_alice") || !strings.Contains(out.String(), "replaced file ocmt.db") {
		t.Errorf("--force output does not say what it replaced:\n%s", out.String())
	}
}

func mustOpen(t *testing.T, p string) io.Reader {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

// tarEntry is one entry of an archive held in memory.
type tarEntry struct {
	h    *tar.Header
	body []byte
}

// rewrite reads the archive at src, lets change edit its manifest and
// entries (the manifest is encoded again afterwards unless change sets
// raw) and writes the result to a new file.
func rewrite(t *testing.T, src string, change func(m *Manifest, ents *[]tarEntry)) string {
	t.Helper()
	gz, err := gzip.NewReader(mustOpen(t, src))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var ents []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		ents = append(ents, tarEntry{h, b})
	}
	var m Manifest
	if err := json.Unmarshal(ents[0].body, &m); err != nil {
		t.Fatal(err)
	}
	rest := ents[1:]
	change(&m, &rest)
	mj, _ := json.Marshal(m)
	ents = append([]tarEntry{{&tar.Header{Name: ManifestName, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(mj))}, mj}}, rest...)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range ents {
		if e.h.Typeflag == tar.TypeReg {
			e.h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(e.h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	zw.Close()
	out := filepath.Join(t.TempDir(), "bad.tar.gz")
	if err := os.WriteFile(out, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// find returns the index of the entry (and manifest entry) named p.
func find(t *testing.T, m *Manifest, ents []tarEntry, p string) int {
	t.Helper()
	for i, e := range m.Entries {
		if e.Path == p {
			return i
		}
	}
	t.Fatalf("no entry %s", p)
	return -1
}

// TestRestoreRefusesBadArchives: each bad archive is refused with an error
// wrapping ErrInvalid that names the problem, and nothing is written (the
// data directory is not even created).
// TestRestoreRefusesHeldDataDir: a data directory a running ocmt holds
// (package datadir's lock) is not restored into, even with --force, and
// nothing in it changes.
func TestRestoreRefusesHeldDataDir(t *testing.T) {
	to := createArchive(t, processDataDir(t))
	dst := t.TempDir()
	held, err := datadir.Lock(dst, datadir.Holder{PID: 4242, Listen: "127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for _, force := range []bool{false, true} {
		_, err := Restore(context.Background(), RestoreOptions{From: to, DataDir: dst, Force: force})
		var inUse *datadir.InUseError
		if !errors.As(err, &inUse) || inUse.PID != 4242 || !strings.Contains(err.Error(), "127.0.0.1:9") {
			t.Fatalf("force=%v: %v; want the holder named", force, err)
		}
		if ents, _ := os.ReadDir(dst); len(ents) != 1 {
			t.Fatalf("force=%v: data dir holds %d entries; want only the lock file", force, len(ents))
		}
	}
}

func TestRestoreRefusesBadArchives(t *testing.T) {
	good := createArchive(t, processDataDir(t))
	const vault = "data/users/usr_alice/vault.ocv"
	cases := []struct {
		name string
		file func(t *testing.T) string
		want string
	}{
		{"not an archive", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "x")
			os.WriteFile(p, []byte("just some text, not gzip"), 0o600)
			return p
		}, "not gzip"},
		{"gzip but not tar", func(t *testing.T) string {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(bytes.Repeat([]byte("not a tar header "), 64))
			zw.Close()
			p := filepath.Join(t.TempDir(), "x")
			os.WriteFile(p, b.Bytes(), 0o600)
			return p
		}, "not a tar archive"},
		{"truncated", func(t *testing.T) string {
			b, _ := os.ReadFile(good)
			p := filepath.Join(t.TempDir(), "x")
			os.WriteFile(p, b[:len(b)*2/3], 0o600)
			return p
		}, "truncated"},
		{"format version", func(t *testing.T) string {
			return rewrite(t, good, func(m *Manifest, _ *[]tarEntry) { m.Format = FormatVersion + 1 })
		}, "archive format 2"},
		{"newer schema", func(t *testing.T) string {
			return rewrite(t, good, func(m *Manifest, _ *[]tarEntry) { m.SchemaVersion = store.LatestSchemaVersion() + 1 })
		}, "newer than this ocmt"},
		{"checksum mismatch", func(t *testing.T) string {
			return rewrite(t, good, func(m *Manifest, ents *[]tarEntry) {
				e := (*ents)[find(t, m, *ents, vault)]
				e.body[0] ^= 1 // same size, other content
			})
		}, "SHA-256 does not match"},
		{"size mismatch", func(t *testing.T) string {
			return rewrite(t, good, func(m *Manifest, ents *[]tarEntry) {
				e := &(*ents)[find(t, m, *ents, vault)]
				e.body = append(e.body, 'x')
			})
		}, "the manifest says"},
		{"manifest not first", func(t *testing.T) string {
			return rewrite(t, good, func(m *Manifest, ents *[]tarEntry) {
				i := find(t, m, *ents, vault)
				(*ents)[0], (*ents)[i] = (*ents)[i], (*ents)[0]
			})
		}, "the manifest says"},
		{"setuid mode", func(t *testing.T) string {
			return rewrite(t, good, func(m *Manifest, ents *[]tarEntry) {
				m.Entries[find(t, m, *ents, vault)].Mode = 0o4700
			})
		}, "bad mode"},
		{"extra entry", func(t *testing.T) string {
			return rewrite(t, good, func(m *Manifest, ents *[]tarEntry) {
				*ents = append(*ents, tarEntry{&tar.Header{Name: "data/extra", Typeflag: tar.TypeReg, Mode: 0o600}, []byte("x")})
			})
		}, "not in the manifest"},
	}
	// Unsafe paths and links, listed in the manifest as well as present,
	// so only the path and type checks can refuse them.
	for _, bad := range []struct {
		name, path string
		typ        byte
		want       string
	}{
		{"parent traversal", "data/../../evil", tar.TypeReg, "unsafe"},
		{"traversal inside", "data/users/../../evil", tar.TypeReg, "unsafe"},
		{"absolute path", "/etc/evil", tar.TypeReg, "unsafe"},
		{"volume traversal", "volumes/../evil", tar.TypeReg, "unsafe"},
		{"unknown top level", "evil/file", tar.TypeReg, "unsafe"},
		{"shadows the database", "data/ocmt.db-wal", tar.TypeReg, "unsafe"},
		{"restore's own lock", "data/ocmt.lock", tar.TypeReg, "lock, temporary or database journal"},
		{"a lock file", "data/users/usr_alice/x.lock", tar.TypeReg, "unsafe"},
		{"a temporary file", "data/users/usr_alice/vault.ocv.tmp", tar.TypeReg, "unsafe"},
		{"a dot file", "data/users/usr_alice/.vault.ocv.ocmt-tmp-1", tar.TypeReg, "unsafe"},
		{"under a dot directory", "data/.hidden/file", tar.TypeReg, "unsafe"},
		{"the database journal", "data/ocmt.db-journal", tar.TypeReg, "unsafe"},
		{"no directory entry", "data/users/usr_bob/vault.ocv", tar.TypeReg, "without) its directory"},
		{"a file as directory", "data/" + store.AuditKeyFile + "/x", tar.TypeReg, "without) its directory"},
		{"symlink", "data/users/usr_alice/link", tar.TypeSymlink, "links are refused"},
		{"hard link", "data/users/usr_alice/hard", tar.TypeLink, "links are refused"},
	} {
		cases = append(cases, struct {
			name string
			file func(t *testing.T) string
			want string
		}{bad.name, func(t *testing.T) string {
			return rewrite(t, good, func(m *Manifest, ents *[]tarEntry) {
				h := &tar.Header{Name: bad.path, Typeflag: bad.typ, Mode: 0o600, Linkname: "/etc/passwd"}
				*ents = append(*ents, tarEntry{h, nil})
				m.Entries = append(m.Entries, Entry{Path: bad.path, Mode: 0o600, SHA256: emptySHA256})
			})
		}, bad.want})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := c.file(t)
			dst := filepath.Join(t.TempDir(), "data")
			_, err := Restore(context.Background(), RestoreOptions{From: file, DataDir: dst})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want ErrInvalid with %q", err, c.want)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("restore of a bad archive created the data directory (%v)", err)
			}
		})
	}
}

// TestRestoreWithForceKeepsOldStateOnBadArchive: with Force, a corrupt
// archive leaves the existing data directory exactly as it was.
func TestRestoreWithForceKeepsOldStateOnBadArchive(t *testing.T) {
	src := processDataDir(t)
	good := createArchive(t, src)
	bad := rewrite(t, good, func(m *Manifest, ents *[]tarEntry) {
		e := (*ents)[len(*ents)-1]
		if len(e.body) > 0 {
			e.body[len(e.body)-1] ^= 1
		} else {
			t.Fatal("last entry is empty")
		}
	})
	dst := t.TempDir()
	os.WriteFile(filepath.Join(dst, "ocmt.db"), []byte("the current database"), 0o600)
	if _, err := Restore(context.Background(), RestoreOptions{From: bad, DataDir: dst, Force: true}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	ents, _ := os.ReadDir(dst)
	if b, _ := os.ReadFile(filepath.Join(dst, "ocmt.db")); len(ents) != 1 || string(b) != "the current database" {
		t.Fatalf("data directory changed: %d entries, ocmt.db %q", len(ents), b)
	}
}

// emptySHA256 is the SHA-256 of no bytes: a link entry's content.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// TestCreateRefusesBadTo: --to must be a file name: an existing symbolic
// link (as /dev/stdout is), fifo or directory is refused even with Force
// and left as it was; a path inside the data directory is refused.
func TestCreateRefusesBadTo(t *testing.T) {
	src := processDataDir(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("not an archive"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "stdout") // stands for /dev/stdout -> /proc/self/fd/1
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, to, want string }{
		{"symlink", link, "not a regular file"},
		{"fifo", fifo, "not a regular file"},
		{"directory", sub, "is a directory"},
		{"inside the data directory", filepath.Join(src, "b.tar.gz"), "the next backup would include it"},
		{"inside the data directory, below", filepath.Join(src, "users", "b.tar.gz"), "inside --data-dir"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Create(context.Background(), CreateOptions{DataDir: src, To: c.to, Force: true})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want %q", err, c.want)
			}
		})
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "not an archive" {
		t.Fatalf("the link's target changed: %q", b)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the fifo was replaced: %v %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(src, "b.tar.gz")); err == nil {
		t.Fatal("an archive was written inside the data directory")
	}
}

// TestRestoreRefusesNonRegularFrom: a pipe (or /dev/stdin) cannot be read
// twice: refused with a clear error before anything is created.
func TestRestoreRefusesNonRegularFrom(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "stdin") // a link to a pipe, as /dev/stdin may be
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	// A writer feeds the archive into the pipe once, as `cat archive |`
	// would. It waits for a reader; the cleanup opens one (non-blocking)
	// and reads to the end, so the writer ends whether or not restore read.
	archive, err := os.ReadFile(createArchive(t, processDataDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		w.Write(archive)
		w.Close()
	}()
	t.Cleanup(func() {
		r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Error(err)
			return
		}
		go io.Copy(io.Discard, r) // the writer ends once all is read
		<-done
		r.Close()
	})
	for _, from := range []string{fifo, link, dir} {
		dst := filepath.Join(t.TempDir(), "data")
		_, err := Restore(context.Background(), RestoreOptions{From: from, DataDir: dst, Force: true})
		if err == nil || !strings.Contains(err.Error(), "--from must be a regular file (an archive is read twice)") {
			t.Fatalf("%s: err = %v", from, err)
		}
		if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: the data directory was created (%v)", from, err)
		}
	}
}

// TestRestoreClampsModes: group and other bits in an archive are not
// restored: files come back owner-only (read and write at least),
// directories 0700.
func TestRestoreClampsModes(t *testing.T) {
	good := createArchive(t, processDataDir(t))
	open := rewrite(t, good, func(m *Manifest, ents *[]tarEntry) {
		for i := range m.Entries {
			if m.Entries[i].Dir {
				m.Entries[i].Mode = 0o777
			} else {
				m.Entries[i].Mode = 0o666
			}
		}
		m.Entries[find(t, m, *ents, "data/users/usr_alice/vault.ocv")].Mode = 0o755
	})
	dst := filepath.Join(t.TempDir(), "data")
	if _, err := Restore(context.Background(), RestoreOptions{From: open, DataDir: dst}); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dst {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		switch rel, _ := filepath.Rel(dst, p); {
		case d.IsDir():
			want = 0o700
		case rel == "users/usr_alice/vault.ocv":
			want = 0o700
		case rel == datadir.FileName:
			return nil // restore's own lock, not from the archive
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v; want %v", p, fi.Mode().Perm(), want)
		}
		n++
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("walk: %d entries, %v", n, err)
	}
}

// TestRestoreOwner: with Owner, every restored file and directory, the
// data directory itself and its lock belong to that uid and gid (the
// server image's 65532), so the image can open them. Needs root.
func TestRestoreOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TestRestoreOwner needs root (CI=true)")
		}
		t.Skip("skipping: changing owners needs root; run as root or with CI=true to make this a failure")
	}
	to := createArchive(t, processDataDir(t))
	dst := filepath.Join(t.TempDir(), "data")
	if _, err := Restore(context.Background(), RestoreOptions{From: to, DataDir: dst, Owner: &Owner{UID: 65532, GID: 65532}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 65532 || st.Gid != 65532 {
			t.Errorf("%s owned by %d:%d; want 65532:65532", p, st.Uid, st.Gid)
		}
		n++
		return nil
	})
	if err != nil || n < 8 {
		t.Fatalf("walk: %d entries, %v", n, err)
	}
}
