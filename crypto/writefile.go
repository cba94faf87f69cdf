package crypto

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// tempMarker is part of every temporary file name made by WriteFileAtomic:
// "." + base + ".ocmt-tmp-" + random. CleanTempFiles removes such files.
const tempMarker = ".ocmt-tmp-"

// WriteFileAtomic replaces the file at path with data so that a crash or
// power loss at any point leaves either the complete old file or the
// complete new one, never a mix (SPEC §5.1). It
//
//  1. creates a temporary file "."+base+".ocmt-tmp-<random>" in the same
//     directory (same file system, so the rename is atomic),
//  2. writes data, sets perm (exactly: the umask does not apply), fsyncs
//     and closes it,
//  3. renames it over path (rename(2) is atomic on POSIX file systems), and
//  4. fsyncs the directory so the rename itself is durable.
//
// On an error before the rename the temporary file is removed and path is
// untouched. An error from the final directory sync means the new content
// is in place but may not survive a power loss. A crash can leave a
// temporary file behind; readers never look at it and [CleanTempFiles]
// removes it. If path is a symbolic link, the link is replaced, not its
// target.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomic(path, data, perm, nil)
}

// writeFileAtomic is WriteFileAtomic with a test hook: crashAt, if not nil,
// is called before each step ("create", "write", "write-half", "chmod",
// "sync", "close", "rename", "syncdir", "done") and, if it returns an error,
// the function returns that error at once without any cleanup, leaving the
// file system as a crash at that point would (for "write-half", after
// writing half of data).
func writeFileAtomic(path string, data []byte, perm os.FileMode, crashAt func(step string) error) (err error) {
	crash := func(step string) error {
		if crashAt == nil {
			return nil
		}
		return crashAt(step)
	}
	if err := crash("create"); err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+tempMarker+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	crashed := false
	defer func() {
		if err != nil && !crashed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	steps := []struct {
		name string
		run  func() error
	}{
		{"write", func() error { _, err := f.Write(data[:len(data)/2]); return err }},
		{"write-half", func() error { _, err := f.Write(data[len(data)/2:]); return err }},
		{"chmod", func() error { return f.Chmod(perm) }},
		{"sync", f.Sync},
		{"close", f.Close},
		{"rename", func() error { return os.Rename(tmp, path) }},
	}
	for _, s := range steps {
		if err := crash(s.name); err != nil {
			crashed = true
			return err
		}
		if err := s.run(); err != nil {
			return err
		}
	}
	crashed = true // renamed: there is no temporary file left to clean up
	if err := crash("syncdir"); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return crash("done")
}

// syncDir fsyncs a directory so that a rename in it is durable. Windows
// cannot open directories for syncing (and its renames are already durable
// through NTFS's journal), so it is a no-op there.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// CleanTempFiles removes the temporary files that [WriteFileAtomic] leaves
// in dir when a process dies mid-write (names starting with "." and
// containing ".ocmt-tmp-"). Call it when no write to dir is in progress,
// e.g. at startup. Subdirectories are not visited. It returns the first
// error but keeps removing the other files.
func CleanTempFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var first error
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, ".") || !strings.Contains(name, tempMarker) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && first == nil && !errors.Is(err, os.ErrNotExist) {
			first = err
		}
	}
	return first
}
