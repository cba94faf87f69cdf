package docker

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/jsonstream"
)

// These tests need no engine: they check the image plan and the tar build
// context.

// tarEntry is one entry of a build context read back.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

// readContext writes plan's build context and reads it back by name.
func readContext(t *testing.T, plan rootfsPlan) map[string]tarEntry {
	t.Helper()
	var buf bytes.Buffer
	if err := writeBuildContext(&buf, plan); err != nil {
		t.Fatalf("writeBuildContext: %v", err)
	}
	if est := contextSize(plan); est < int64(buf.Len())/2 || est > int64(buf.Len())*2 {
		t.Errorf("contextSize = %d, actual %d", est, buf.Len())
	}
	out := map[string]tarEntry{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read context: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", h.Name, err)
		}
		if _, dup := out[h.Name]; dup {
			t.Errorf("duplicate entry %s", h.Name)
		}
		out[h.Name] = tarEntry{h, data}
	}
}

// checkCommon asserts what every context has: the Dockerfile, /ocmt with
// the binary's bytes, /tmp, and owned/data/ owned by 65532 with mode 0700;
// and that no entry is a symlink or hard link.
func checkCommon(t *testing.T, ctx map[string]tarEntry, binary string) {
	t.Helper()
	df, ok := ctx["Dockerfile"]
	if !ok {
		t.Fatal("no Dockerfile in context")
	}
	for _, want := range []string{"FROM scratch", "USER 65532:65532", `ENTRYPOINT ["/ocmt","serve","--role=vault","--listen=0.0.0.0:8080","--data-dir=/data"]`} {
		if !strings.Contains(string(df.data), want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, df.data)
		}
	}
	bin, ok := ctx["rootfs/ocmt"]
	if !ok {
		t.Fatal("no rootfs/ocmt in context")
	}
	want, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bin.data, want) || bin.hdr.Mode != 0o755 {
		t.Errorf("rootfs/ocmt: %d bytes mode %o, want %d bytes mode 755", len(bin.data), bin.hdr.Mode, len(want))
	}
	data, ok := ctx["owned/data/"]
	if !ok {
		t.Fatal("no owned/data/ in context")
	}
	if data.hdr.Typeflag != tar.TypeDir || data.hdr.Uid != containerUID || data.hdr.Gid != containerUID || data.hdr.Mode != 0o700 {
		t.Errorf("owned/data/: type %c uid %d gid %d mode %o; want dir 65532:65532 0700", data.hdr.Typeflag, data.hdr.Uid, data.hdr.Gid, data.hdr.Mode)
	}
	if tmp, ok := ctx["rootfs/tmp/"]; !ok || tmp.hdr.Mode != 0o1777 {
		t.Errorf("rootfs/tmp/ missing or not mode 1777")
	}
	for name, e := range ctx {
		if e.hdr.Typeflag == tar.TypeSymlink || e.hdr.Typeflag == tar.TypeLink {
			t.Errorf("%s is a link; the context must hold real files", name)
		}
		if strings.HasPrefix(name, "rootfs/") && e.hdr.Uid != 0 {
			t.Errorf("%s owned by %d, want root", name, e.hdr.Uid)
		}
	}
}

func TestBuildContextStatic(t *testing.T) {
	binary := buildFakeVault(t, t.TempDir(), false)
	plan, err := planRootfs(binary)
	if err != nil {
		t.Fatalf("planRootfs: %v", err)
	}
	if !plan.Static || plan.Interpreter != "" || len(plan.Libraries) != 0 {
		t.Fatalf("plan = %+v, want static with no interpreter or libraries", plan)
	}
	ctx := readContext(t, plan)
	checkCommon(t, ctx, binary)
	for name := range ctx {
		if strings.HasPrefix(name, "rootfs/lib") {
			t.Errorf("static context has %s", name)
		}
	}
}

func TestBuildContextDynamic(t *testing.T) {
	binary := "/bin/true"
	if gcc, err := exec.LookPath("gcc"); err == nil {
		dir := t.TempDir()
		src := filepath.Join(dir, "hello.c")
		if err := os.WriteFile(src, []byte("#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		binary = filepath.Join(dir, "hello")
		if out, err := exec.Command(gcc, "-o", binary, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
	} else {
		t.Logf("no gcc; using %s", binary)
	}
	plan, err := planRootfs(binary)
	if err != nil {
		t.Fatalf("planRootfs: %v", err)
	}
	if plan.Static || plan.Interpreter == "" {
		t.Fatalf("plan = %+v, want dynamic with an interpreter", plan)
	}
	ctx := readContext(t, plan)
	checkCommon(t, ctx, binary)

	// The interpreter sits at its PT_INTERP path with the real content
	// (on Debian /lib64/ld-linux-x86-64.so.2 is a symlink).
	ld, ok := ctx["rootfs"+plan.Interpreter]
	if !ok {
		t.Fatalf("no interpreter %s in context", plan.Interpreter)
	}
	if want := readResolved(t, plan.Interpreter); !bytes.Equal(ld.data, want) {
		t.Errorf("interpreter content differs from %s", plan.Interpreter)
	}
	var libc string
	for _, l := range plan.Libraries {
		if filepath.Base(l) == "libc.so.6" {
			libc = l
		}
	}
	if libc == "" {
		t.Fatalf("libraries %v lack libc.so.6", plan.Libraries)
	}
	e, ok := ctx["rootfs"+libc]
	if !ok {
		t.Fatalf("no %s in context", libc)
	}
	if want := readResolved(t, libc); !bytes.Equal(e.data, want) || e.hdr.Typeflag != tar.TypeReg {
		t.Errorf("%s in context is not the real libc", libc)
	}
	// Parent directories exist as directories.
	for d := filepath.Dir(libc); d != "/"; d = filepath.Dir(d) {
		if e, ok := ctx["rootfs"+d+"/"]; !ok || e.hdr.Typeflag != tar.TypeDir {
			t.Errorf("no directory entry for %s", d)
		}
	}
}

// TestBuildContextRunpath checks $ORIGIN RUNPATH resolution and that a
// library reached through a symlink lands as a regular file at the name the
// loader looks up.
func TestBuildContextRunpath(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	libdir := filepath.Join(dir, "lib")
	if err := os.Mkdir(libdir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) {
		if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, out)
		}
	}
	run("-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", filepath.Join(libdir, "libfoo.so.1.0"), write("foo.c", "int foo(void){return 42;}\n"))
	if err := os.Symlink("libfoo.so.1.0", filepath.Join(libdir, "libfoo.so.1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("libfoo.so.1", filepath.Join(libdir, "libfoo.so")); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "prog")
	run("-o", binary, write("prog.c", "int foo(void);\nint main(void){return foo()==42?0:1;}\n"),
		"-L"+libdir, "-lfoo", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib")

	plan, err := planRootfs(binary)
	if err != nil {
		t.Fatalf("planRootfs: %v", err)
	}
	// In the image the binary is /ocmt, so $ORIGIN/lib is /lib.
	ctx := readContext(t, plan)
	e, ok := ctx["rootfs/lib/libfoo.so.1"]
	if !ok {
		t.Fatalf("no rootfs/lib/libfoo.so.1; libraries %v", plan.Libraries)
	}
	real, err := os.ReadFile(filepath.Join(libdir, "libfoo.so.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	if e.hdr.Typeflag != tar.TypeReg || !bytes.Equal(e.data, real) {
		t.Errorf("rootfs/lib/libfoo.so.1 is not the real library")
	}
}

func TestPlanRootfsRejectsNonELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := planRootfs(p); err == nil {
		t.Fatal("planRootfs accepted a shell script")
	}
}

func TestParseStep(t *testing.T) {
	tests := []struct {
		in   string
		step int
		n    int
		text string
		ok   bool
	}{
		{"Step 2/6 : COPY rootfs/ /\n", 2, 6, "COPY", true},
		{"Step 6/6 : ENTRYPOINT [\"/ocmt\"]", 6, 6, "ENTRYPOINT", true},
		{" ---> 2841d1e9f9e8\n", 0, 0, "", false},
		{"Step 7/6 : X", 0, 0, "", false},
	}
	for _, tt := range tests {
		step, n, text, ok := parseStep(tt.in)
		if step != tt.step || n != tt.n || text != tt.text || ok != tt.ok {
			t.Errorf("parseStep(%q) = %d, %d, %q, %v", tt.in, step, n, text, ok)
		}
	}
}

func TestReadJSONStreamError(t *testing.T) {
	stream := `{"stream":"Step 1/2 : FROM scratch\n"}
{"stream":" ---\u003e \n"}
{"errorDetail":{"message":"COPY failed: file not found"},"error":"COPY failed: file not found"}
{"stream":"never read"}
`
	var seen []string
	err := readJSONStream(strings.NewReader(stream), func(m jsonstream.Message) { seen = append(seen, m.Stream) })
	var jerr *jsonstream.Error
	if !errors.As(err, &jerr) || !strings.Contains(err.Error(), "COPY failed") {
		t.Fatalf("err = %v, want a *jsonstream.Error about COPY", err)
	}
	if len(seen) != 2 {
		t.Errorf("saw %d messages before the error, want 2", len(seen))
	}
	if err := readJSONStream(strings.NewReader(`{"stream":"ok"}`), func(jsonstream.Message) {}); err != nil {
		t.Errorf("clean stream: %v", err)
	}
	if err := readJSONStream(strings.NewReader(`{"stream":`), func(jsonstream.Message) {}); err == nil {
		t.Error("truncated stream gave no error")
	}
}

// readResolved reads the file at p, following symlinks.
func readResolved(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildFakeVault builds testdata/fakevault into dir, statically (no cgo)
// or, with dynamic, against the C library, and returns its path.
func buildFakeVault(t testing.TB, dir string, dynamic bool) string {
	t.Helper()
	out := filepath.Join(dir, "fakevault")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/fakevault")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if dynamic {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fakevault: %v\n%s", err, b)
	}
	return out
}
