package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
)

//go:embed static
var staticFS embed.FS

// hashLen is the number of hex digits of the content hash in asset URLs
// (32 bits: enough to bust caches, short enough to read).
const hashLen = 8

const (
	// cacheImmutable is sent for content-hashed URLs.
	cacheImmutable = "public, max-age=31536000, immutable"
	// cacheShort is sent for unhashed names (debugging, outside links).
	cacheShort = "public, max-age=300"
)

// asset is one embedded static file after import rewriting.
type asset struct {
	name   string // path below static/, e.g. "app.js"
	hashed string // e.g. "app.3f9a1c2b.js"
	body   []byte // served bytes (JS/CSS with references rewritten)
	ctype  string // Content-Type header value
	etag   string // quoted content hash
}

// assetSet is the immutable table built once at package init.
type assetSet struct {
	byName   map[string]*asset // unhashed name → asset
	byHashed map[string]*asset // hashed name → asset
}

var assets = mustBuildAssets(staticFS, "static")

func mustBuildAssets(fsys fs.FS, root string) *assetSet {
	s, err := buildAssets(fsys, root)
	if err != nil {
		// Only a broken embed (a programming error the tests catch) gets here.
		panic("ui: " + err.Error())
	}
	return s
}

// contentHash returns the first hashLen hex digits of SHA-256(b).
func contentHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:hashLen]
}

// hashedName inserts hash before the last extension of name:
// ("js/app.js", "3f9a1c2b") → "js/app.3f9a1c2b.js"; a name without an
// extension gets the hash appended ("LICENSE.3f9a1c2b").
func hashedName(name, hash string) string {
	dir, file := path.Split(name)
	if i := strings.LastIndexByte(file, '.'); i > 0 {
		return dir + file[:i] + "." + hash + file[i:]
	}
	return dir + file + "." + hash
}

// contentTypes maps extensions to Content-Type; others fall back to
// mime.TypeByExtension, then application/octet-stream.
var contentTypes = map[string]string{
	".js":    "text/javascript; charset=utf-8",
	".mjs":   "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".wasm":  "application/wasm",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".json":  "application/json",
	".map":   "application/json",
	".txt":   "text/plain; charset=utf-8",
	".woff2": "font/woff2",
}

func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := contentTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// refPatterns find relative references to other assets that must carry
// hashed names too: ES module imports (static and dynamic) in JS, and url()
// in CSS. Group 2 is the relative specifier ("./api.js").
var (
	jsRefPattern  = regexp.MustCompile(`(\bfrom\s*["']|\bimport\s*\(\s*["']|\bimport\s+["'])(\.{1,2}/[A-Za-z0-9_./-]+)(["'])`)
	cssRefPattern = regexp.MustCompile(`(\burl\(\s*["']?)(\.{1,2}/[A-Za-z0-9_./-]+)(["']?\s*\))`)
)

// buildAssets reads every file below root in fsys, rewrites relative
// references in JS and CSS to hashed names (dependencies first, so a file's
// hash covers everything it pulls in) and returns the lookup tables. A
// reference to a missing file or an import cycle is an error.
func buildAssets(fsys fs.FS, root string) (*assetSet, error) {
	raw := map[string][]byte{}
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		raw[strings.TrimPrefix(p, root+"/")] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read static files: %w", err)
	}
	s := &assetSet{byName: map[string]*asset{}, byHashed: map[string]*asset{}}
	visiting := map[string]bool{}
	var build func(name string) (*asset, error)
	build = func(name string) (*asset, error) {
		if a, ok := s.byName[name]; ok {
			return a, nil
		}
		if visiting[name] {
			return nil, fmt.Errorf("static/%s: reference cycle", name)
		}
		visiting[name] = true
		defer delete(visiting, name)
		body := raw[name]
		var pat *regexp.Regexp
		switch path.Ext(name) {
		case ".js", ".mjs":
			pat = jsRefPattern
		case ".css":
			pat = cssRefPattern
		}
		if pat != nil {
			var rerr error
			body = pat.ReplaceAllFunc(body, func(m []byte) []byte {
				sub := pat.FindSubmatch(m)
				spec := string(sub[2])
				target := path.Join(path.Dir(name), spec)
				if _, ok := raw[target]; !ok {
					if rerr == nil {
						rerr = fmt.Errorf("static/%s: reference to missing %q", name, spec)
					}
					return m
				}
				dep, err := build(target)
				if err != nil {
					if rerr == nil {
						rerr = err
					}
					return m
				}
				newSpec := spec[:strings.LastIndexByte(spec, '/')+1] + path.Base(dep.hashed)
				return []byte(string(sub[1]) + newSpec + string(sub[3]))
			})
			if rerr != nil {
				return nil, rerr
			}
		}
		h := contentHash(body)
		a := &asset{name: name, hashed: hashedName(name, h), body: body, ctype: contentType(name), etag: `"` + h + `"`}
		s.byName[name] = a
		s.byHashed[a.hashed] = a
		return a, nil
	}
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := build(n); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// AssetURL returns the content-hashed URL of the static file name (a path
// below ui/static, e.g. "app.js" → "/static/app.3f9a1c2b.js"). The URL is
// stable for given file contents and changes whenever they (or, for JS and
// CSS, anything they import) change. An unknown name yields the unhashed
// "/static/<name>", which Assets answers with 404.
func AssetURL(name string) string {
	if a, ok := assets.byName[name]; ok {
		return "/static/" + a.hashed
	}
	return "/static/" + name
}

// WorkerCSP is the Content-Security-Policy the asset handler sends with
// JavaScript files. Browsers ignore it for page scripts but apply it to a
// Web Worker's global scope, where kdf-worker.js imports Go's wasm_exec.js,
// fetches kdf.wasm and compiles it (hence 'wasm-unsafe-eval'; SPEC §9).
const WorkerCSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; " +
	"base-uri 'none'; require-trusted-types-for 'script'"

// Assets returns the handler for embedded static files, to be mounted at
// /static/ (it accepts request paths with or without that prefix).
//
// A content-hashed name (/static/app.3f9a1c2b.js) is served with
// Cache-Control "public, max-age=31536000, immutable"; the plain name
// (/static/app.js) is served too, with "public, max-age=300", for humans
// and outside links. Anything else, including a stale hash, is 404. Only
// GET and HEAD are allowed (405 otherwise). Content-Type is set from the
// extension (text/javascript for .js, application/wasm for .wasm, ...) and
// nosniff is always sent. JavaScript files carry [WorkerCSP], replacing any
// policy set before (it only governs workers started from them).
func Assets() http.Handler {
	return assetHandler{assets}
}

type assetHandler struct{ set *assetSet }

func (h assetHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	name = strings.TrimPrefix(name, "/")
	a, cache := h.set.byHashed[name], cacheImmutable
	if a == nil {
		a, cache = h.set.byName[name], cacheShort
	}
	if a == nil {
		w.Header().Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.ctype)
	hd.Set("Cache-Control", cache)
	hd.Set("ETag", a.etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	if strings.HasPrefix(a.ctype, "text/javascript") {
		hd.Set("Content-Security-Policy", WorkerCSP)
	}
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}
