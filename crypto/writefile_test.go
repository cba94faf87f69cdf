package crypto

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var errCrash = errors.New("simulated crash")

// crashSteps are the hook points of writeFileAtomic, in order.
var crashSteps = []string{"create", "write", "write-half", "chmod", "sync", "close", "rename", "syncdir", "done"}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vault.bin")
	if err := WriteFileAtomic(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(got) != "two" || fi.Mode().Perm() != 0o640 {
		t.Errorf("content %q mode %v", got, fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("stray files: %v", entries)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), []byte("x"), 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

// TestWriteFileAtomicCrash simulates a crash before every step: the target
// always holds either the complete old or the complete new content, and
// CleanTempFiles removes what the crash left behind.
func TestWriteFileAtomicCrash(t *testing.T) {
	oldData := bytes.Repeat([]byte("old "), 1000)
	newData := bytes.Repeat([]byte("NEW!"), 1500)
	for i, step := range crashSteps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "vault.bin")
			if err := WriteFileAtomic(path, oldData, 0o600); err != nil {
				t.Fatal(err)
			}
			seen := []string{}
			err := writeFileAtomic(path, newData, 0o600, func(s string) error {
				seen = append(seen, s)
				if s == step {
					return errCrash
				}
				return nil
			})
			if err != errCrash {
				t.Fatalf("err = %v, want the simulated crash", err)
			}
			if strings.Join(seen, ",") != strings.Join(crashSteps[:i+1], ",") {
				t.Errorf("steps = %v", seen)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			renamed := i >= 7 // crashed after the rename
			switch {
			case renamed && !bytes.Equal(got, newData):
				t.Errorf("after rename: file is not the new content (%d bytes)", len(got))
			case !renamed && !bytes.Equal(got, oldData):
				t.Errorf("before rename: file is not the old content (%d bytes)", len(got))
			}
			if err := CleanTempFiles(dir); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 || entries[0].Name() != "vault.bin" {
				t.Errorf("after CleanTempFiles: %v", entries)
			}
			// A later write succeeds despite the earlier crash.
			if err := WriteFileAtomic(path, []byte("after"), 0o600); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCleanTempFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"vault.bin", ".vault.bin.ocmt-tmp-123", "x.ocmt-tmp-1", ".hidden"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	os.Mkdir(filepath.Join(dir, ".d.ocmt-tmp-1"), 0o700)
	if err := CleanTempFiles(dir); err != nil {
		t.Fatal(err)
	}
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != ".d.ocmt-tmp-1 .hidden vault.bin x.ocmt-tmp-1" {
		t.Errorf("left %v", names)
	}
	if err := CleanTempFiles(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir: no error")
	}
}
