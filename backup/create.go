package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ocmt/ocmt/store"
)

// CreateOptions says what Create saves and where.
type CreateOptions struct {
	DataDir string // data directory holding ocmt.db
	To      string // archive to write
	Force   bool   // replace an existing To
	// Engine connects to the container engine; nil means none (then users
	// whose container record says "docker" are an error).
	Engine  Engine
	Version string           // ocmt version for the manifest
	Now     func() time.Time // nil = time.Now
	Log     io.Writer        // warnings ("skipped …"); nil discards
}

// Create writes a backup of opt.DataDir, and of the deployment's docker
// volumes, to opt.To while ocmt may be running:
//
//   - the database through store.Snapshot (one read transaction: a
//     point-in-time copy);
//   - every other file of the data directory except the database's
//     journal, lock and temporary files (see skipDataFile): audit.key, and
//     users/<id>/… for the process runtime;
//   - every data volume of the deployment (the database's deployment id),
//     read through the engine as it is at that moment.
//
// The archive is staged in a temporary file beside opt.To (0600), fsynced
// and renamed over it, so opt.To is either the old file or the complete new
// archive. An existing opt.To is refused unless opt.Force. A symbolic link
// or special file found is skipped, reported to opt.Log and listed in
// Manifest.Skipped. It returns the manifest written.
func Create(ctx context.Context, opt CreateOptions) (Manifest, error) {
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	logw := opt.Log
	if logw == nil {
		logw = io.Discard
	}
	dbPath := filepath.Join(opt.DataDir, store.FileName)
	if _, err := os.Stat(dbPath); err != nil {
		return Manifest{}, fmt.Errorf("--data-dir: no ocmt database at %s", dbPath)
	}
	if err := checkTo(opt.To, opt.DataDir, opt.Force); err != nil {
		return Manifest{}, err
	}
	dir := filepath.Dir(opt.To)
	work, err := os.MkdirTemp(dir, ".ocmt-backup-*.tmp")
	if err != nil {
		return Manifest{}, fmt.Errorf("--to: cannot write in %s: %w", dir, err)
	}
	defer os.RemoveAll(work)

	m := Manifest{Format: FormatVersion, OcmtVersion: opt.Version, CreatedAt: now().UTC().Truncate(time.Millisecond)}
	snap := filepath.Join(work, "ocmt.db")
	if m.SchemaVersion, err = store.Snapshot(ctx, dbPath, snap); err != nil {
		return Manifest{}, err
	}
	users, err := readSnapshot(ctx, snap, &m)
	if err != nil {
		return Manifest{}, err
	}

	bodyF, err := os.OpenFile(filepath.Join(work, "body.tar"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Manifest{}, err
	}
	defer bodyF.Close()
	b := &bodyWriter{tw: tar.NewWriter(bodyF), m: &m}
	if err := b.addFile(DBEntry, snap, 0o600, 0); err != nil {
		return Manifest{}, err
	}
	if err := b.addDataDir(opt.DataDir, opt.To, logw); err != nil {
		return Manifest{}, err
	}

	var docker []string
	for _, u := range users {
		if u.Runtime == "docker" {
			docker = append(docker, u.ID)
		}
	}
	if opt.Engine != nil && m.Deployment != "" || len(docker) > 0 {
		if opt.Engine == nil {
			return Manifest{}, fmt.Errorf("users %s have docker volumes, but no container engine is available to read them", strings.Join(docker, ", "))
		}
		vols, err := opt.Engine(ctx, m.Deployment)
		if err != nil {
			if len(docker) > 0 {
				return Manifest{}, fmt.Errorf("users %s have docker volumes: %w", strings.Join(docker, ", "), err)
			}
			fmt.Fprintf(logw, "warning: no container engine answers (%v); backing up the data directory only\n", err)
		} else {
			err := b.addVolumes(ctx, vols, users, logw)
			vols.Close()
			if err != nil {
				return Manifest{}, err
			}
		}
	}
	for _, u := range users {
		m.Users = append(m.Users, *u)
	}
	sort.Slice(m.Users, func(i, j int) bool { return m.Users[i].ID < m.Users[j].ID })
	if err := b.tw.Close(); err != nil {
		return Manifest{}, err
	}
	if _, err := bodyF.Seek(0, io.SeekStart); err != nil {
		return Manifest{}, err
	}
	if err := writeArchive(opt.To, dir, &m, bodyF); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// checkTo refuses an archive path Create must not write: an existing
// path that is not a regular file (a directory, a symbolic link such as
// /dev/stdout, a device, a fifo), even with force, since the archive
// replaces it by rename; an existing file without force; and a path inside
// the data directory, which the next backup would include.
func checkTo(to, dataDir string, force bool) error {
	if fi, err := os.Lstat(to); err == nil {
		switch {
		case fi.IsDir():
			return fmt.Errorf("--to: %s is a directory; give a file name in it, e.g. %s", to, filepath.Join(to, "ocmt-backup.tar.gz"))
		case !fi.Mode().IsRegular():
			return fmt.Errorf("--to: %s is not a regular file (%s); the archive is written beside it and renamed over it, so it must be a file name, not a link, device or pipe", to, fi.Mode().Type())
		case !force:
			return fmt.Errorf("--to: %s exists; give --force to replace it", to)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--to: %w", err)
	}
	if inside(filepath.Dir(to), dataDir) {
		return fmt.Errorf("--to: %s is inside --data-dir %s: the next backup would include it; write the archive elsewhere", to, dataDir)
	}
	return nil
}

// inside reports whether directory p is dir or below it, comparing paths
// with symbolic links resolved where they exist.
func inside(p, dir string) bool {
	resolve := func(s string) string {
		if r, err := filepath.EvalSymlinks(s); err == nil {
			s = r
		}
		a, _ := filepath.Abs(s)
		return a
	}
	rel, err := filepath.Rel(resolve(dir), resolve(p))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// readSnapshot reads the deployment id and the container records from the
// snapshot, so the manifest matches db/ocmt.db.
func readSnapshot(ctx context.Context, snap string, m *Manifest) (map[string]*User, error) {
	st, err := store.OpenCopy(ctx, snap)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	dep, err := st.GetKV(ctx, "deployment.id")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("read deployment id: %w", err)
	}
	m.Deployment = string(dep)
	recs, err := st.Containers(ctx)
	if err != nil {
		return nil, err
	}
	users := map[string]*User{}
	for _, r := range recs {
		users[string(r.UserID)] = &User{ID: string(r.UserID), Runtime: r.Runtime}
	}
	return users, nil
}

// bodyWriter writes the entries after the manifest to a staging tar,
// recording each in the manifest.
type bodyWriter struct {
	tw *tar.Writer
	m  *Manifest
}

// add writes one entry: a directory when r is nil, else size bytes of r.
// uid is the owner recorded in the tar header.
func (b *bodyWriter) add(name string, mode fs.FileMode, size int64, mtime time.Time, uid int, r io.Reader) error {
	e := Entry{Path: name, Mode: uint32(mode.Perm())}
	h := &tar.Header{Name: name, Mode: int64(mode.Perm()), ModTime: mtime.Truncate(time.Second), Uid: uid, Gid: uid, Format: tar.FormatPAX}
	if r == nil {
		e.Dir, h.Typeflag, h.Name = true, tar.TypeDir, name+"/"
	} else {
		e.Size, h.Typeflag, h.Size = size, tar.TypeReg, size
	}
	if err := b.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	if r != nil {
		sum := sha256.New()
		n, err := io.Copy(io.MultiWriter(b.tw, sum), io.LimitReader(r, size))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if n != size {
			return fmt.Errorf("read %s: it shrank from %d to %d bytes while being read; run the backup again", name, size, n)
		}
		e.SHA256 = hex.EncodeToString(sum.Sum(nil))
	}
	b.m.Entries = append(b.m.Entries, e)
	return nil
}

// addFile adds the regular file at src (its size when opened).
func (b *bodyWriter) addFile(name, src string, mode fs.FileMode, uid int) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if mode == 0 {
		mode = fi.Mode()
	}
	return b.add(name, mode, fi.Size(), fi.ModTime(), uid, f)
}

// addDataDir adds the data directory's files (see skipDataFile), except
// the archive being written (out) if it lies inside.
func (b *bodyWriter) addDataDir(dataDir, out string, logw io.Writer) error {
	absOut, _ := filepath.Abs(out)
	return filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read data directory: %w", err)
		}
		rel, err := filepath.Rel(dataDir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if abs, _ := filepath.Abs(p); abs == absOut || skipDataFile(rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		name := dataPrefix + rel
		switch {
		case d.IsDir():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return b.add(name, fi.Mode(), 0, fi.ModTime(), 0, nil)
		case d.Type().IsRegular():
			return b.addFile(name, p, 0, 0)
		default:
			b.skip(name, "not a regular file or directory", logw)
			return nil
		}
	})
}

func (b *bodyWriter) skip(name, why string, logw io.Writer) {
	b.m.Skipped = append(b.m.Skipped, name+": "+why)
	fmt.Fprintf(logw, "warning: skipped %s: %s\n", name, why)
}

// addVolumes adds the volume of every user of the deployment, marking
// users[id].Volume. A docker user without a volume is reported, not an
// error (its container was never created).
func (b *bodyWriter) addVolumes(ctx context.Context, vols Volumes, users map[string]*User, logw io.Writer) error {
	ids, err := vols.VolumeUsers(ctx)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, id := range ids {
		have[id] = true
		if users[id] == nil {
			users[id] = &User{ID: id}
		}
	}
	sort.Strings(ids)
	for _, u := range users {
		if u.Runtime == "docker" && !have[u.ID] {
			fmt.Fprintf(logw, "warning: user %s has a docker container record but no volume; nothing to save for them\n", u.ID)
		}
	}
	for _, id := range ids {
		if !userIDRE.MatchString(id) {
			b.skip(volPrefix+id, "not a valid user id", logw)
			continue
		}
		if err := b.addVolume(ctx, vols, id, logw); err != nil {
			return err
		}
		users[id].Volume = "ocmt-data-" + id
	}
	return nil
}

func (b *bodyWriter) addVolume(ctx context.Context, vols Volumes, id string, logw io.Writer) error {
	rc, err := vols.ExportVolume(ctx, id)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	base := volPrefix + id
	root := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read volume of %s: %w", id, err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		rel, ok := strings.CutPrefix(name, "data")
		if !ok || rel != "" && !strings.HasPrefix(rel, "/") {
			return fmt.Errorf("read volume of %s: unexpected entry %q from the engine", id, h.Name)
		}
		rel = strings.TrimPrefix(rel, "/")
		entry := base
		if rel != "" {
			if !cleanRel(rel) {
				b.skip(base+"/"+rel, "unsafe name", logw)
				continue
			}
			entry = base + "/" + rel
		} else {
			root = true
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = b.add(entry, fs.FileMode(h.Mode), 0, h.ModTime, VolumeUID, nil)
		case tar.TypeReg:
			err = b.add(entry, fs.FileMode(h.Mode), h.Size, h.ModTime, VolumeUID, tr)
		default:
			b.skip(entry, "not a regular file or directory", logw)
		}
		if err != nil {
			return err
		}
	}
	if !root {
		return fmt.Errorf("read volume of %s: the engine sent no /data directory", id)
	}
	return nil
}

// VolumeUID is the owner (uid and gid) of volume entries, the vault role's
// user (docker.VolumeUIDGID).
const VolumeUID = 65532

// writeArchive writes the manifest and then the staged body entries to a
// gzip tar at to, atomically.
func writeArchive(to, dir string, m *Manifest, body io.Reader) (err error) {
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(to)+".ocmt-tmp-*")
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	gz, err := gzip.NewWriterLevel(f, gzip.BestSpeed) // sealed data does not compress
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: ManifestName, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(mj)),
		ModTime: m.CreatedAt.Truncate(time.Second), Format: tar.FormatPAX}); err != nil {
		return err
	}
	if _, err := tw.Write(mj); err != nil {
		return err
	}
	tr := tar.NewReader(body)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read staged backup: %w", err)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, to); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
