package docker

import (
	"archive/tar"
	"bytes"
	"debug/elf"
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
)

// Paths and ids inside the agent image.
const (
	imageBinary   = "/ocmt" // where the ocmt executable lands
	imageDataDir  = "/data" // mount point of the per-user volume
	containerUID  = 65532   // uid and gid the vault role runs as ("nonroot")
	userSpec      = "65532:65532"
	ctxRootfsDir  = "rootfs" // build-context directory copied to /
	ctxOwnedDir   = "owned"  // build-context directory copied to / with owner containerUID
	ctxDockerfile = "Dockerfile"
)

// ctxModTime is the modification time of every build-context entry, fixed
// so the same binary gives the same context.
var ctxModTime = time.Unix(0, 0)

// rootFile is one entry of the agent image's root filesystem.
type rootFile struct {
	Path string      // absolute path inside the image, e.g. "/lib64/ld-linux-x86-64.so.2"
	Src  string      // host file whose content lands at Path, symlinks resolved; "" for a directory
	Mode fs.FileMode // permission bits, plus fs.ModeDir (and fs.ModeSticky) for directories
	Size int64       // bytes; 0 for a directory
}

// rootfsPlan is the content of the agent image, derived from the binary.
type rootfsPlan struct {
	Files       []rootFile // image root filesystem, binary first; copied to / by the Dockerfile
	Static      bool       // the binary has no ELF interpreter and no DT_NEEDED
	Interpreter string     // image path of the ELF interpreter, or "" when Static
	Libraries   []string   // image paths of the shared libraries, in resolution order
}

// dockerfile is the agent image recipe (legacy builder: no BuildKit
// session is needed). The binary and its runtime files come from rootfs/,
// owned by root. owned/ holds only data/, an empty directory with mode
// 0700: copied to / with --chown it becomes /data owned by 65532:65532,
// which Docker copies into a fresh named volume on first mount (a new
// volume is otherwise owned by root, and the non-root vault role could not
// write it). Copying owned/ rather than an empty data/ to /data keeps the
// mode: the legacy builder creates a COPY destination directory with 0755.
const dockerfile = `FROM scratch
COPY ` + ctxRootfsDir + `/ /
COPY --chown=` + userSpec + ` ` + ctxOwnedDir + `/ /
USER ` + userSpec + `
EXPOSE 8080/tcp
ENTRYPOINT ["` + imageBinary + `","serve","--role=vault","--listen=0.0.0.0:8080","--data-dir=` + imageDataDir + `"]
`

// planRootfs inspects the ELF executable at binary (trusted input: the
// operator's ocmt binary) and lists what the image needs to run it: the
// binary at /ocmt, and for a dynamically linked binary its ELF interpreter
// and every shared library it needs, resolved recursively the way the
// loader would (RUNPATH/RPATH, then the standard directories). Library
// paths keep the path the loader looks up; their content is that of the
// file the symlinks lead to. It returns an error for a non-ELF file or a
// library it cannot find.
func planRootfs(binary string) (rootfsPlan, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return rootfsPlan{}, fmt.Errorf("read executable %s: %w", binary, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return rootfsPlan{}, fmt.Errorf("read executable %s: ELF type %v is not an executable", binary, f.Type)
	}

	bin, err := hostFile(imageBinary, binary)
	if err != nil {
		return rootfsPlan{}, err
	}
	bin.Mode = 0o755
	plan := rootfsPlan{
		Files: []rootFile{bin, {Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777}},
	}

	interp, err := elfInterpreter(f)
	if err != nil {
		return rootfsPlan{}, fmt.Errorf("read executable %s: %w", binary, err)
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return rootfsPlan{}, fmt.Errorf("read executable %s: %w", binary, err)
	}
	if interp == "" && len(needed) == 0 {
		plan.Static = true
		return plan, nil
	}
	if interp == "" {
		return rootfsPlan{}, fmt.Errorf("read executable %s: needs shared libraries but names no ELF interpreter", binary)
	}

	ld, err := hostFile(interp, interp)
	if err != nil {
		return rootfsPlan{}, fmt.Errorf("ELF interpreter: %w", err)
	}
	ld.Mode = 0o755
	plan.Files = append(plan.Files, ld)
	plan.Interpreter = interp

	r := &libResolver{
		machine: f.Machine,
		class:   f.Class,
		std:     standardLibDirs(f.Machine),
		seen:    map[string]bool{path.Base(interp): true}, // the loader provides itself
	}
	if err := r.resolve(f, binary, imageBinary); err != nil {
		return rootfsPlan{}, err
	}
	for _, lib := range r.libs {
		plan.Files = append(plan.Files, lib)
		plan.Libraries = append(plan.Libraries, lib.Path)
	}
	return plan, nil
}

// elfInterpreter returns the PT_INTERP path of f, or "" if it has none.
func elfInterpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return "", fmt.Errorf("read PT_INTERP: %w", err)
		}
		return string(bytes.TrimRight(b, "\x00")), nil
	}
	return "", nil
}

// standardLibDirs lists the directories the loader searches after
// RUNPATH, multiarch first (Debian layout), then the generic ones.
func standardLibDirs(m elf.Machine) []string {
	var dirs []string
	triplet := map[elf.Machine]string{
		elf.EM_X86_64:  "x86_64-linux-gnu",
		elf.EM_AARCH64: "aarch64-linux-gnu",
		elf.EM_386:     "i386-linux-gnu",
		elf.EM_ARM:     "arm-linux-gnueabihf",
		elf.EM_RISCV:   "riscv64-linux-gnu",
	}[m]
	if triplet != "" {
		dirs = append(dirs, "/lib/"+triplet, "/usr/lib/"+triplet)
	}
	return append(dirs, "/lib64", "/lib", "/usr/lib64", "/usr/lib")
}

// libResolver finds the shared libraries an executable needs, recursively.
type libResolver struct {
	machine elf.Machine
	class   elf.Class
	std     []string
	seen    map[string]bool // DT_NEEDED names already resolved
	libs    []rootFile
}

// resolve adds the libraries f needs (and theirs). hostPath is where f was
// read on the host, imagePath where it lives in the image; both anchor
// $ORIGIN in f's RUNPATH.
func (r *libResolver) resolve(f *elf.File, hostPath, imagePath string) error {
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("read %s: %w", hostPath, err)
	}
	search, err := runpathDirs(f, hostPath, imagePath)
	if err != nil {
		return fmt.Errorf("read %s: %w", hostPath, err)
	}
	for _, dir := range r.std {
		search = append(search, searchDir{host: dir, image: dir})
	}
	for _, name := range needed {
		if r.seen[name] {
			continue
		}
		r.seen[name] = true
		if err := r.add(name, search, hostPath); err != nil {
			return err
		}
	}
	return nil
}

// add finds the library name in search, records it and resolves its own
// needs. neededBy is only for the error message.
func (r *libResolver) add(name string, search []searchDir, neededBy string) error {
	candidates := search
	if strings.Contains(name, "/") { // DT_NEEDED with a path is used as is
		candidates = []searchDir{{host: path.Dir(name), image: path.Dir(name)}}
		name = path.Base(name)
	}
	for _, dir := range candidates {
		hostPath := filepath.Join(dir.host, name)
		lib, err := elf.Open(hostPath)
		if err != nil {
			continue // missing or not ELF: the loader moves on too
		}
		if lib.Machine != r.machine || lib.Class != r.class {
			lib.Close()
			continue // e.g. a 32-bit library in /lib
		}
		imagePath := path.Join(dir.image, name)
		file, err := hostFile(imagePath, hostPath)
		if err != nil {
			lib.Close()
			return err
		}
		r.libs = append(r.libs, file)
		err = r.resolve(lib, hostPath, imagePath)
		lib.Close()
		return err
	}
	dirs := make([]string, 0, len(candidates))
	for _, d := range candidates {
		dirs = append(dirs, d.host)
	}
	return fmt.Errorf("shared library %s needed by %s: not found in %s", name, neededBy, strings.Join(dirs, ":"))
}

// searchDir is one library directory, as seen on the host and in the image
// (they differ only for $ORIGIN-relative RUNPATH entries).
type searchDir struct{ host, image string }

// runpathDirs returns f's DT_RUNPATH (or, without one, DT_RPATH) entries
// with $ORIGIN expanded on each side.
func runpathDirs(f *elf.File, hostPath, imagePath string) ([]searchDir, error) {
	list, err := f.DynString(elf.DT_RUNPATH)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		if list, err = f.DynString(elf.DT_RPATH); err != nil {
			return nil, err
		}
	}
	hostOrigin := filepath.Dir(hostPath)
	if real, err := filepath.EvalSymlinks(hostPath); err == nil {
		hostOrigin = filepath.Dir(real)
	}
	imageOrigin := path.Dir(imagePath)
	var dirs []searchDir
	for _, entry := range list {
		for _, dir := range strings.Split(entry, ":") {
			if dir == "" {
				continue
			}
			d := searchDir{
				host:  expandOrigin(dir, hostOrigin),
				image: expandOrigin(dir, imageOrigin),
			}
			if !path.IsAbs(d.image) {
				continue // relative entries depend on the working directory; the loader ignores them in secure mode
			}
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

// expandOrigin replaces $ORIGIN and ${ORIGIN} in dir with origin.
func expandOrigin(dir, origin string) string {
	dir = strings.ReplaceAll(dir, "${ORIGIN}", origin)
	return path.Clean(strings.ReplaceAll(dir, "$ORIGIN", origin))
}

// hostFile describes the regular file reached from hostPath (following
// symlinks) as an image entry at imagePath, keeping its permission bits.
func hostFile(imagePath, hostPath string) (rootFile, error) {
	real, err := filepath.EvalSymlinks(hostPath)
	if err != nil {
		return rootFile{}, fmt.Errorf("resolve %s: %w", hostPath, err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return rootFile{}, fmt.Errorf("stat %s: %w", hostPath, err)
	}
	if !st.Mode().IsRegular() {
		return rootFile{}, fmt.Errorf("stat %s: not a regular file", hostPath)
	}
	return rootFile{Path: imagePath, Src: real, Mode: st.Mode().Perm(), Size: st.Size()}, nil
}

// contextSize estimates the size in bytes of the tar build context for plan.
func contextSize(plan rootfsPlan) int64 {
	const block = 512
	n := int64(8 * block) // Dockerfile, owned/, owned/data/, rootfs/, end of archive
	for _, f := range plan.Files {
		n += block + (f.Size+block-1)/block*block
	}
	return n
}

// writeBuildContext writes the tar build context of the agent image to w:
// the Dockerfile, rootfs/ with plan's files (and their parent directories,
// owned by root, mode 0755), and owned/data/, an empty directory owned by
// 65532:65532 with mode 0700. File content is read from each entry's Src; a
// file whose size changed since planning is an error.
func writeBuildContext(w io.Writer, plan rootfsPlan) error {
	tw := tar.NewWriter(w)
	header := func(name string, typ byte, mode fs.FileMode, size int64, id int) *tar.Header {
		m := int64(mode.Perm())
		if mode&fs.ModeSticky != 0 {
			m |= 0o1000
		}
		return &tar.Header{
			Typeflag: typ,
			Name:     name,
			Mode:     m,
			Size:     size,
			Uid:      id,
			Gid:      id,
			ModTime:  ctxModTime,
			Format:   tar.FormatPAX,
		}
	}

	if err := tw.WriteHeader(header(ctxDockerfile, tar.TypeReg, 0o644, int64(len(dockerfile)), 0)); err != nil {
		return fmt.Errorf("write build context: %w", err)
	}
	if _, err := io.WriteString(tw, dockerfile); err != nil {
		return fmt.Errorf("write build context: %w", err)
	}
	if err := tw.WriteHeader(header(ctxOwnedDir+"/", tar.TypeDir, 0o755, 0, 0)); err != nil {
		return fmt.Errorf("write build context: %w", err)
	}
	if err := tw.WriteHeader(header(ctxOwnedDir+imageDataDir+"/", tar.TypeDir, 0o700, 0, containerUID)); err != nil {
		return fmt.Errorf("write build context: %w", err)
	}

	// Parent directories first, each once.
	explicit := map[string]bool{}
	for _, f := range plan.Files {
		if f.Mode.IsDir() {
			explicit[f.Path] = true
		}
	}
	var dirs []string
	seen := map[string]bool{"/": true}
	for _, f := range plan.Files {
		for d := path.Dir(f.Path); !seen[d]; d = path.Dir(d) {
			seen[d] = true
			if !explicit[d] {
				dirs = append(dirs, d)
			}
		}
	}
	slices.Sort(dirs)
	if err := tw.WriteHeader(header(ctxRootfsDir+"/", tar.TypeDir, 0o755, 0, 0)); err != nil {
		return fmt.Errorf("write build context: %w", err)
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(header(ctxRootfsDir+d+"/", tar.TypeDir, 0o755, 0, 0)); err != nil {
			return fmt.Errorf("write build context: %w", err)
		}
	}

	for _, f := range plan.Files {
		if f.Mode.IsDir() {
			if err := tw.WriteHeader(header(ctxRootfsDir+f.Path+"/", tar.TypeDir, f.Mode, 0, 0)); err != nil {
				return fmt.Errorf("write build context: %w", err)
			}
			continue
		}
		if err := copyFileToTar(tw, header(ctxRootfsDir+f.Path, tar.TypeReg, f.Mode, f.Size, 0), f.Src); err != nil {
			return fmt.Errorf("write build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write build context: %w", err)
	}
	return nil
}

// copyFileToTar writes h and then exactly h.Size bytes read from src.
func copyFileToTar(tw *tar.Writer, h *tar.Header, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(in, h.Size))
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if n != h.Size {
		return fmt.Errorf("copy %s: %w", src, errSizeChanged)
	}
	return nil
}

// errSizeChanged reports a file that shrank between planning and writing.
var errSizeChanged = errors.New("file changed while writing the build context")
