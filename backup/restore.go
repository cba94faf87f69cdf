package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ocmt/ocmt/datadir"
	"github.com/ocmt/ocmt/store"
)

// Read checks the archive r completely without writing anything: gzip and
// tar framing (a truncated stream is an error), the manifest (first entry,
// format version, a schema no newer than this binary's, safe and unique
// paths), and every entry against it in order (name, type, size, SHA-256;
// only regular files and directories; no entry the manifest does not list,
// none missing). Every error about the archive wraps ErrInvalid.
func Read(r io.Reader) (Manifest, error) {
	var m Manifest
	err := walk(r, func(mm Manifest) error { m = mm; return nil }, nil)
	return m, err
}

// walk reads an archive, checking it as Read says; it calls manifest once
// the manifest is checked, then entry for each verified entry (a file's
// content is the reader, which entry must read to the end for the checksum
// to be checked; the entry is confirmed only when walk moves on). An error
// from manifest or entry stops the walk and is returned as is.
func walk(r io.Reader, manifest func(Manifest) error, entry func(e Entry, content io.Reader) error) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return invalid("not gzip-compressed (%v)", err)
	}
	tr := tar.NewReader(gz)
	h, err := tr.Next()
	if err != nil {
		return invalid("not a tar archive (%v)", err)
	}
	if h.Name != ManifestName || h.Typeflag != tar.TypeReg {
		return invalid("the first entry is %q, not %s", h.Name, ManifestName)
	}
	if h.Size > maxManifestBytes {
		return invalid("%s is %d bytes (at most %d)", ManifestName, h.Size, maxManifestBytes)
	}
	mj, err := io.ReadAll(tr)
	if err != nil {
		return invalid("read %s: %v", ManifestName, err)
	}
	m, err := parseManifest(mj)
	if err != nil {
		return err
	}
	if err := manifest(m); err != nil {
		return err
	}
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			if i < len(m.Entries) {
				return invalid("truncated: %d of %d entries present (missing %s)", i, len(m.Entries), m.Entries[i].Path)
			}
			break
		}
		if err != nil {
			return invalid("entry %d: %v (truncated or corrupt)", i+1, err)
		}
		name := h.Name
		if h.Typeflag == tar.TypeDir {
			name = strings.TrimSuffix(name, "/")
		}
		if _, _, _, ok := splitEntry(name); !ok {
			return invalid("entry %q: unsafe or unknown path", h.Name)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir {
			return invalid("entry %q: type %q is neither a regular file nor a directory (links are refused)", h.Name, string(h.Typeflag))
		}
		if i >= len(m.Entries) {
			return invalid("entry %q is not in the manifest", h.Name)
		}
		want := m.Entries[i]
		if want.Path != name || want.Dir != (h.Typeflag == tar.TypeDir) || (!want.Dir && want.Size != h.Size) {
			return invalid("entry %d is %q (%d bytes); the manifest says %q (%d bytes)", i+1, h.Name, h.Size, want.Path, want.Size)
		}
		sum := sha256.New()
		content := io.TeeReader(tr, sum)
		if entry != nil {
			if err := entry(want, content); err != nil {
				return err
			}
		}
		if _, err := io.Copy(io.Discard, content); err != nil {
			return invalid("entry %q: %v (truncated or corrupt)", h.Name, err)
		}
		if !want.Dir && hex.EncodeToString(sum.Sum(nil)) != want.SHA256 {
			return invalid("entry %q: SHA-256 does not match the manifest", h.Name)
		}
	}
	// Read the gzip trailer: its CRC-32 and length cover every byte.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return invalid("after the last entry: %v (truncated or corrupt)", err)
	}
	return nil
}

// parseManifest decodes and checks a manifest.
func parseManifest(b []byte) (Manifest, error) {
	var head struct {
		Format *int `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil || head.Format == nil {
		return Manifest{}, invalid("%s is not an ocmt manifest", ManifestName)
	}
	if *head.Format != FormatVersion {
		return Manifest{}, invalid("archive format %d; this ocmt reads format %d", *head.Format, FormatVersion)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, invalid("%s: %v", ManifestName, err)
	}
	if latest := store.LatestSchemaVersion(); m.SchemaVersion > latest {
		return Manifest{}, invalid("the database has schema version %d, newer than this ocmt's %d: restore it with ocmt %s or later",
			m.SchemaVersion, latest, m.OcmtVersion)
	}
	if m.SchemaVersion < 1 {
		return Manifest{}, invalid("schema version %d", m.SchemaVersion)
	}
	seen := map[string]bool{}
	vols := map[string]bool{}
	users := map[string]User{}
	for _, u := range m.Users {
		if !userIDRE.MatchString(u.ID) || users[u.ID].ID != "" {
			return Manifest{}, invalid("manifest: bad or repeated user id %q", u.ID)
		}
		if u.Volume != "" && u.Volume != "ocmt-data-"+u.ID {
			return Manifest{}, invalid("manifest: user %s has volume %q", u.ID, u.Volume)
		}
		users[u.ID] = u
	}
	lastVol := ""
	dirs := map[string]bool{}
	for _, e := range m.Entries {
		kind, user, rel, ok := splitEntry(e.Path)
		if !ok {
			return Manifest{}, invalid("manifest: unsafe or unknown path %q (or a lock, temporary or database journal file, which backup never writes)", e.Path)
		}
		if seen[e.Path] {
			return Manifest{}, invalid("manifest: %q appears twice", e.Path)
		}
		seen[e.Path] = true
		// Every directory comes before what it holds (as backup writes
		// them), so the writing pass never has to make one up.
		if parent := path.Dir(e.Path); kind != "db" && strings.Contains(rel, "/") && !dirs[parent] {
			return Manifest{}, invalid("manifest: %q comes before (or without) its directory %q", e.Path, parent)
		}
		if e.Dir {
			dirs[e.Path] = true
		}
		if e.Mode&^0o777 != 0 || e.Size < 0 || e.Dir && (e.Size != 0 || e.SHA256 != "") || !e.Dir && len(e.SHA256) != 64 {
			return Manifest{}, invalid("manifest: bad mode, size or checksum for %q", e.Path)
		}
		switch kind {
		case "db":
			if e.Dir {
				return Manifest{}, invalid("manifest: %s is a directory", DBEntry)
			}
		case "volume":
			if users[user].Volume == "" {
				return Manifest{}, invalid("manifest: %q belongs to no listed volume", e.Path)
			}
			if user != lastVol {
				if vols[user] || rel != "" || !e.Dir {
					return Manifest{}, invalid("manifest: the entries of volume %s do not start with its directory or are not together", user)
				}
				vols[user], lastVol = true, user
			}
		default:
			lastVol = ""
		}
	}
	if !seen[DBEntry] {
		return Manifest{}, invalid("manifest: no %s", DBEntry)
	}
	for _, u := range m.Users {
		if u.Volume != "" && !vols[u.ID] {
			return Manifest{}, invalid("manifest: volume %s has no entries", u.Volume)
		}
	}
	return m, nil
}

// RestoreOptions says what Restore reads and where it writes.
type RestoreOptions struct {
	From    string // archive
	DataDir string // data directory to restore into
	// Force replaces what exists (see Restore); without it a non-empty
	// data directory or an existing volume is refused.
	Force bool
	// Engine connects to the container engine; needed only if the archive
	// holds docker volumes.
	Engine Engine
	// Owner, if set, owns every restored data-directory file and
	// directory, the data directory itself and its lock file (e.g.
	// 65532:65532 for the server image). It needs root.
	Owner *Owner
	Out   io.Writer // what was restored; nil discards
}

// Owner is a numeric user and group id.
type Owner struct{ UID, GID int }

func (o Owner) String() string { return fmt.Sprintf("%d:%d", o.UID, o.GID) }

// Restore puts the archive opt.From back: first it reads the whole archive
// (Read: nothing is written if anything in it is wrong) and checks the
// destination, then it writes:
//
//   - data/… files and directories into opt.DataDir with their modes, each
//     file written to a temporary file, fsynced and renamed;
//   - each volumes/<id>/… into a new volume ocmt-data-<id>, labelled with
//     the archive's deployment, files owned by 65532:65532 with their modes;
//   - the database last: db/ocmt.db to a temporary file, checked, renamed
//     to ocmt.db.
//
// A running or paused container of an archived user, in any deployment on
// the engine (Volumes.LiveContainers), is refused even with opt.Force:
// volume names are engine-wide. The data directory must be empty or
// missing and no volume of an archived user may exist, unless opt.Force: then ocmt.db (and any -wal/-shm beside
// it) is replaced, every archived file replaces the file at its path, each
// archived users/<id> directory replaces the existing one as a whole,
// each archived volume replaces the existing volume (the user's container
// in this deployment is removed first; ocmt recreates it at its next start),
// and everything else is left as it is. The archive is read twice (check,
// then write) and checked again while written, so opt.From must be a
// regular file. Restored files are owner-only (see ownerOnly); with
// opt.Owner they and the data directory belong to that uid and gid.
func Restore(ctx context.Context, opt RestoreOptions) (Manifest, error) {
	out := opt.Out
	if out == nil {
		out = io.Discard
	}
	// The archive is read twice (check, then write): a pipe cannot be.
	// Stat before opening, as opening a fifo waits for a writer.
	if fi, err := os.Stat(opt.From); err != nil {
		return Manifest{}, fmt.Errorf("--from: %w", err)
	} else if !fi.Mode().IsRegular() {
		return Manifest{}, errFromNotRegular(opt.From, fi)
	}
	f, err := os.Open(opt.From)
	if err != nil {
		return Manifest{}, fmt.Errorf("--from: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return Manifest{}, fmt.Errorf("--from: %w", err)
	} else if !fi.Mode().IsRegular() {
		return Manifest{}, errFromNotRegular(opt.From, fi)
	}
	if opt.Owner != nil && os.Geteuid() != 0 {
		return Manifest{}, fmt.Errorf("--owner %s: changing owners needs root; run restore as root, or leave --owner out and chown -R the data directory afterwards", opt.Owner)
	}
	m, err := Read(f)
	if err != nil {
		return Manifest{}, err
	}

	// Destination checks, before anything is written. A running ocmt
	// holds the data directory's lock (package datadir): restoring under
	// it would swap the database and volumes out from under it.
	if h, held, err := datadir.HolderOf(opt.DataDir); err != nil {
		return Manifest{}, err
	} else if held {
		return Manifest{}, &datadir.InUseError{Dir: opt.DataDir, PID: h.PID, Listen: h.Listen}
	}
	if err := checkDataDir(opt.DataDir, opt.Force); err != nil {
		return Manifest{}, err
	}
	var vols Volumes
	var volUsers []string
	for _, u := range m.Users {
		if u.Volume != "" {
			volUsers = append(volUsers, u.ID)
		}
	}
	if len(volUsers) > 0 {
		if opt.Engine == nil {
			return Manifest{}, fmt.Errorf("the archive holds %s, but no container engine is available", Count(len(volUsers), "docker volume"))
		}
		if vols, err = opt.Engine(ctx, m.Deployment); err != nil {
			return Manifest{}, fmt.Errorf("the archive holds %s: %w", Count(len(volUsers), "docker volume"), err)
		}
		defer vols.Close()
		// Volume names are engine-wide: a deployment still running on
		// this engine would lose its volumes, whatever --data-dir says.
		var ids []string
		for _, u := range m.Users {
			ids = append(ids, u.ID)
		}
		live, err := vols.LiveContainers(ctx, ids)
		if err != nil {
			return Manifest{}, err
		}
		if len(live) > 0 {
			names := make([]string, len(live))
			for i, l := range live {
				names[i], _, _ = strings.Cut(l, " ")
			}
			return Manifest{}, fmt.Errorf("containers of the archive's users run on this engine: %s; restoring would replace their volumes under them (volume names are engine-wide, whatever --data-dir). Stop the ocmt that runs them, then its containers (docker stop %s; a user's: docker stop $(docker ps -q --filter label=ocmt.user=<id>)), or restore on another engine",
				strings.Join(live, ", "), strings.Join(names, " "))
		}
		for _, id := range volUsers {
			ok, err := vols.VolumeExists(ctx, id)
			if err != nil {
				return Manifest{}, err
			}
			if ok && !opt.Force {
				return Manifest{}, fmt.Errorf("volume ocmt-data-%s exists; give --force to replace it (and remove its container)", id)
			}
		}
	}
	if err := os.MkdirAll(opt.DataDir, 0o700); err != nil {
		return Manifest{}, fmt.Errorf("--data-dir: %w", err)
	}
	// Hold the lock while writing, so an ocmt started meanwhile refuses.
	lock, err := datadir.Lock(opt.DataDir, datadir.Holder{PID: os.Getpid()})
	if err != nil {
		return Manifest{}, err
	}
	defer lock.Close()
	root, err := os.OpenRoot(opt.DataDir)
	if err != nil {
		return Manifest{}, fmt.Errorf("--data-dir: %w", err)
	}
	defer root.Close()
	if o := opt.Owner; o != nil {
		for _, name := range []string{".", datadir.FileName} {
			if err := root.Lchown(name, o.UID, o.GID); err != nil {
				return Manifest{}, fmt.Errorf("--owner: %w", err)
			}
		}
	}

	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Manifest{}, err
	}
	w := &restorer{ctx: ctx, root: root, force: opt.Force, owner: opt.Owner, vols: vols, out: out}
	defer w.cleanup()
	err = walk(f, func(m2 Manifest) error {
		if m2.CreatedAt != m.CreatedAt || len(m2.Entries) != len(m.Entries) {
			return invalid("the archive changed while it was being restored")
		}
		return nil
	}, w.entry)
	if err == nil {
		err = w.finishVolume()
	}
	if err != nil {
		w.abortVolume(err)
		return Manifest{}, err
	}
	if err := w.installDB(m.SchemaVersion); err != nil {
		return Manifest{}, err
	}
	fmt.Fprintf(out, "restored %s into %s: database (schema %d, deployment %s), %s, %s\n",
		opt.From, opt.DataDir, m.SchemaVersion, m.Deployment, Count(w.files, "data-directory entry"), Count(w.volumes, "volume"))
	return m, nil
}

func errFromNotRegular(from string, fi fs.FileInfo) error {
	return fmt.Errorf("--from: %s is not a regular file (%s): --from must be a regular file (an archive is read twice); copy it to a file first", from, fi.Mode().Type())
}

// checkDataDir refuses a non-empty data directory without force.
func checkDataDir(dir string, force bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	ents = slices.DeleteFunc(ents, func(e os.DirEntry) bool { return e.Name() == datadir.FileName })
	if len(ents) > 0 && !force {
		return fmt.Errorf("--data-dir: %s is not empty; give --force to replace the database, the archived files and users' directories in it", dir)
	}
	return nil
}

// restorer writes verified entries (Restore's second pass).
type restorer struct {
	ctx     context.Context
	root    *os.Root
	force   bool
	owner   *Owner // nil: keep the restoring process's
	vols    Volumes
	out     io.Writer
	dbTmp   string // temporary name of the restored database in root
	files   int
	volumes int

	// the volume being streamed to the engine
	volUser string
	volTW   *tar.Writer
	volPW   *io.PipeWriter
	volErr  chan error
}

func (w *restorer) entry(e Entry, content io.Reader) error {
	kind, user, rel, _ := splitEntry(e.Path)
	if kind != "volume" || user != w.volUser {
		if err := w.finishVolume(); err != nil {
			return err
		}
	}
	switch kind {
	case "db":
		name, err := w.writeTemp(".", store.FileName, content, 0o600)
		if err != nil {
			return err
		}
		w.dbTmp = name
		return nil
	case "data":
		w.files++
		return w.writeData(e, rel, content)
	default:
		if user != w.volUser {
			w.startVolume(user)
		}
		h := &tar.Header{Name: "data", Mode: int64(ownerOnly(e)), Uid: VolumeUID, Gid: VolumeUID, ModTime: time.Now().Truncate(time.Second)}
		if rel != "" {
			h.Name += "/" + rel
		}
		if e.Dir {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, e.Size
		}
		if err := w.volTW.WriteHeader(h); err != nil {
			return w.volumeFailed(err)
		}
		if !e.Dir {
			if _, err := io.Copy(w.volTW, content); err != nil {
				return w.volumeFailed(err)
			}
		}
		return nil
	}
}

// ownerOnly is the mode e is restored with: 0700 for a directory, the
// owner's bits of the archived mode plus read and write for a file. Group
// and other bits are dropped: everything ocmt keeps is its own (a volume's
// files belong to the vault's uid 65532), whatever an archive says.
func ownerOnly(e Entry) fs.FileMode {
	if e.Dir {
		return 0o700
	}
	return fs.FileMode(e.Mode)&0o700 | 0o600
}

// volumeFailed returns the engine's error if the import ended, else err.
func (w *restorer) volumeFailed(err error) error {
	if errors.Is(err, io.ErrClosedPipe) {
		user := w.volUser
		ierr := <-w.volErr
		w.volPW, w.volUser = nil, ""
		if ierr != nil {
			return fmt.Errorf("restore volume of %s: %w", user, ierr)
		}
	}
	return err
}

func (w *restorer) startVolume(user string) {
	pr, pw := io.Pipe()
	w.volUser, w.volPW, w.volTW, w.volErr = user, pw, tar.NewWriter(pw), make(chan error, 1)
	go func() {
		err := w.vols.ImportVolume(w.ctx, user, pr, w.force)
		pr.CloseWithError(fmt.Errorf("import ended: %w", io.ErrClosedPipe))
		w.volErr <- err
	}()
}

// finishVolume ends the volume being streamed, if any, and waits for the
// engine.
func (w *restorer) finishVolume() error {
	if w.volPW == nil {
		return nil
	}
	user := w.volUser
	err := w.volTW.Close()
	w.volPW.CloseWithError(err)
	ierr := <-w.volErr
	w.volPW, w.volUser = nil, ""
	if ierr != nil {
		return fmt.Errorf("restore volume of %s: %w", user, ierr)
	}
	if err != nil {
		return err
	}
	w.volumes++
	fmt.Fprintf(w.out, "restored volume ocmt-data-%s\n", user)
	return nil
}

// abortVolume stops a volume stream after an error.
func (w *restorer) abortVolume(err error) {
	if w.volPW != nil {
		w.volPW.CloseWithError(err)
		<-w.volErr
		w.volPW = nil
	}
}

// writeData writes one data-directory entry. With force, an archived
// users/<id> directory first replaces the existing one.
func (w *restorer) writeData(e Entry, rel string, content io.Reader) error {
	mode := ownerOnly(e)
	if e.Dir {
		if parts := strings.Split(rel, "/"); w.force && len(parts) == 2 && parts[0] == "users" {
			if _, err := w.root.Lstat(rel); err == nil {
				if err := w.root.RemoveAll(rel); err != nil {
					return fmt.Errorf("replace %s: %w", rel, err)
				}
				fmt.Fprintf(w.out, "replaced directory %s\n", rel)
			}
		}
		if err := w.root.MkdirAll(rel, mode); err != nil {
			return fmt.Errorf("restore %s: %w", rel, err)
		}
		if w.owner != nil {
			if err := w.root.Lchown(rel, w.owner.UID, w.owner.GID); err != nil {
				return fmt.Errorf("restore %s: %w", rel, err)
			}
		}
		return w.root.Chmod(rel, mode)
	}
	dir, base := path.Split(rel)
	if dir == "" {
		dir = "."
	}
	if _, err := w.root.Lstat(rel); err == nil {
		fmt.Fprintf(w.out, "replaced file %s\n", rel)
	}
	tmp, err := w.writeTemp(dir, base, content, mode)
	if err != nil {
		return err
	}
	if err := w.root.Rename(tmp, rel); err != nil {
		w.root.Remove(tmp)
		return fmt.Errorf("restore %s: %w", rel, err)
	}
	return nil
}

// writeTemp writes content to a new temporary file in dir (inside root)
// with mode, fsynced, and returns its name relative to root.
func (w *restorer) writeTemp(dir, base string, content io.Reader, mode fs.FileMode) (string, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	name := path.Join(dir, "."+base+".ocmt-tmp-"+hex.EncodeToString(rnd[:]))
	f, err := w.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("restore %s: %w", path.Join(dir, base), err)
	}
	_, err = io.Copy(f, content)
	if err == nil && w.owner != nil {
		err = f.Chown(w.owner.UID, w.owner.GID)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.root.Remove(name)
		return "", fmt.Errorf("restore %s: %w", path.Join(dir, base), err)
	}
	return name, nil
}

// installDB checks the restored database and renames it to ocmt.db,
// removing a -wal or -shm left from the replaced one first (SQLite would
// otherwise apply that journal to the new file).
func (w *restorer) installDB(schema int64) error {
	full := filepath.Join(w.root.Name(), w.dbTmp)
	cp, err := store.OpenCopy(w.ctx, full)
	if err != nil {
		return err
	}
	v, err := cp.SchemaVersion(w.ctx)
	cp.Close()
	if err != nil || v != schema {
		return invalid("%s has schema version %d (%v); the manifest says %d", DBEntry, v, err, schema)
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := w.root.Remove(store.FileName + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old %s%s: %w", store.FileName, suffix, err)
		}
	}
	if _, err := w.root.Lstat(store.FileName); err == nil {
		fmt.Fprintf(w.out, "replaced file %s\n", store.FileName)
	}
	if err := w.root.Rename(w.dbTmp, store.FileName); err != nil {
		return fmt.Errorf("restore database: %w", err)
	}
	w.dbTmp = ""
	return syncDir(w.root.Name())
}

func (w *restorer) cleanup() {
	if w.dbTmp != "" {
		w.root.Remove(w.dbTmp)
	}
}
