package e2e

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/ocmt/ocmt/xtest"
)

// leakSearch is a byte search for secrets: it reports (t.Errorf) every
// needle found in what it is shown, by the needle's name and the place.
type leakSearch struct {
	t       *testing.T
	names   []string
	needles [][]byte
}

func newLeakSearch(t *testing.T) *leakSearch { return &leakSearch{t: t} }

// text adds a secret as it is typed or shown (a password, a phrase).
func (s *leakSearch) text(name, v string) *leakSearch {
	s.names, s.needles = append(s.names, name), append(s.needles, []byte(v))
	return s
}

// key adds a binary secret as raw bytes, standard base64 and URL-safe
// base64 without padding (the encodings the API and WebAuthn use).
func (s *leakSearch) key(name string, k []byte) *leakSearch {
	s.names = append(s.names, name+" (raw)", name+" (base64)", name+" (base64url)")
	s.needles = append(s.needles, bytes.Clone(k), []byte(base64.StdEncoding.EncodeToString(k)), []byte(base64.RawURLEncoding.EncodeToString(k)))
	return s
}

// in searches b, found at where.
func (s *leakSearch) in(where string, b []byte) {
	s.t.Helper()
	for i, n := range s.needles {
		if len(n) > 0 && bytes.Contains(b, n) {
			s.t.Errorf("%s holds %s", where, s.names[i])
		}
	}
}

// platform searches the server's log and console and every file below its
// data directory (stop env first, so that everything is flushed), and
// returns how many files it read.
func (s *leakSearch) platform(env *xtest.Env) int {
	s.t.Helper()
	s.in("server log", []byte(env.Log.String()))
	s.in("console", []byte(env.Out.String()))
	n := 0
	filepath.Walk(env.Cfg.DataDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			s.in(p, b)
			n++
		}
		return nil
	})
	if n == 0 {
		s.t.Errorf("no file below %s to search: the search proves nothing", env.Cfg.DataDir)
	}
	return n
}

// files searches each file of a set (for example a container's /data).
func (s *leakSearch) files(prefix string, files map[string][]byte) {
	s.t.Helper()
	for name, b := range files {
		s.in(prefix+name, b)
	}
}
