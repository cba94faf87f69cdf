package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/store"
)

// TestBackupRestoreFlags drives backup and restore through Main with the
// process runtime: required flags, OCMT_DATA_DIR, --force for an existing
// archive and a non-empty data directory.
func TestBackupRestoreFlags(t *testing.T) {
	src := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(src, store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	archive := filepath.Join(t.TempDir(), "b.tar.gz")
	dst := filepath.Join(t.TempDir(), "restored")

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"backup needs --to", nil, []string{"backup", "--data-dir", src}, 1, "--to: required"},
		{"backup of no database", nil, []string{"backup", "--to", archive, "--data-dir", dst}, 1, "no ocmt database"},
		{"backup", map[string]string{"OCMT_DATA_DIR": src}, []string{"backup", "--runtime=process", "--to", archive}, 0, "backup written to " + archive},
		{"backup over an archive", nil, []string{"backup", "--runtime=process", "--to", archive, "--data-dir", src}, 1, "give --force"},
		{"backup --force", nil, []string{"backup", "--runtime=process", "--to", archive, "--data-dir", src, "--force"}, 0, "backup written"},
		{"restore needs --from", nil, []string{"restore", "--data-dir", dst}, 1, "--from: required"},
		{"restore needs --data-dir", nil, []string{"restore", "--from", archive}, 1, "--data-dir: required"},
		{"restore", nil, []string{"restore", "--from", archive, "--data-dir", dst}, 0, "restored " + archive},
		{"restore over data", nil, []string{"restore", "--from", archive, "--data-dir", dst}, 1, "not empty; give --force"},
		{"restore --force", nil, []string{"restore", "--from", archive, "--data-dir", dst, "--force"}, 0, "replaced file ocmt.db"},
		{"restore --owner not numbers", nil, []string{"restore", "--from", archive, "--data-dir", t.TempDir(), "--owner", "nobody:nogroup"}, 1, `--owner: "nobody:nogroup" is not UID:GID`},
		{"restore --owner one number", nil, []string{"restore", "--from", archive, "--data-dir", t.TempDir(), "--owner", "65532"}, 1, "is not UID:GID"},
		{"restore of a non-archive", nil, []string{"restore", "--from", filepath.Join(src, store.FileName), "--data-dir", t.TempDir()}, 1, "not a usable ocmt backup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d, output %q %q; want exit %d and %q", code, out, errOut, tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dst, store.AuditKeyFile)); err != nil {
		t.Fatalf("restored data directory has no audit key: %v", err)
	}
}

// TestRestoreHelpShowsNoDataDirDefault: restore requires --data-dir, so
// its help shows no default for it (backup's, which has one, does).
func TestRestoreHelpShowsNoDataDirDefault(t *testing.T) {
	_, out, errOut := run(t, nil, "restore", "--help")
	line := ""
	for _, l := range strings.Split(out+errOut, "\n") {
		if strings.Contains(l, "--data-dir string") {
			line = l
		}
	}
	if line == "" || strings.Contains(line, "default") || !strings.Contains(line, "required") {
		t.Fatalf("restore --help, --data-dir line: %q", line)
	}
}

// TestBackupSaysOneUser: one user is "1 user", not "1 users".
func TestBackupSaysOneUser(t *testing.T) {
	src := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(src, store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutContainer(context.Background(), store.Container{UserID: "usr_one", Runtime: "process", State: store.StateStopped}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	archive := filepath.Join(t.TempDir(), "b.tar.gz")
	code, out, errOut := run(t, nil, "backup", "--runtime=process", "--to", archive, "--data-dir", src)
	if code != 0 || !strings.Contains(out, ": 1 user, 0 volumes,") {
		t.Fatalf("exit %d: %q %q", code, out, errOut)
	}
	code, out, errOut = run(t, nil, "restore", "--from", archive, "--data-dir", filepath.Join(t.TempDir(), "d"))
	if code != 0 || !strings.Contains(out, "1 data-directory entry, 0 volumes") {
		t.Fatalf("exit %d: %q %q", code, out, errOut)
	}
}
