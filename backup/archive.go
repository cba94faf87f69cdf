// Package backup writes and reads ocmt's backup archive: `ocmt backup`
// (Create) and `ocmt restore` (Restore).
//
// An archive is a gzip-compressed tar stream (RFC 1952; POSIX pax/ustar
// tar). Its first entry is manifest.json (see Manifest); the others are,
// in this order:
//
//	db/ocmt.db             a consistent snapshot of the database (VACUUM INTO)
//	data/<path>            other files of the data directory (audit.key;
//	                       users/<id>/… of the process runtime)
//	volumes/<id>/<path>    the content of the docker volume ocmt-data-<id>
//
// Only regular files and directories appear; every file's size and
// SHA-256 are in the manifest, in the order of the entries. Vaults and
// transcripts are copied as the ciphertext they are: nothing in an archive
// opens a vault without its owner's password.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"
)

// FormatVersion is the archive format this package writes and reads.
const FormatVersion = 1

// Entry names and prefixes inside an archive.
const (
	ManifestName = "manifest.json"
	DBEntry      = "db/ocmt.db"
	dataPrefix   = "data/"
	volPrefix    = "volumes/"
)

// maxManifestBytes bounds the manifest read before anything is checked.
const maxManifestBytes = 64 << 20

// ErrInvalid is wrapped by every error about an archive that is not a
// usable ocmt backup (not gzip/tar, wrong format version, bad or missing
// manifest, unsafe entry, checksum or size mismatch, truncation).
var ErrInvalid = errors.New("not a usable ocmt backup")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Manifest is the JSON first entry of an archive.
type Manifest struct {
	Format        int       `json:"format"`        // FormatVersion
	OcmtVersion   string    `json:"ocmtVersion"`   // version of the ocmt that wrote it
	CreatedAt     time.Time `json:"createdAt"`     // RFC 3339, UTC
	Deployment    string    `json:"deployment"`    // deployment id (labels of containers and volumes); "" if none yet
	SchemaVersion int64     `json:"schemaVersion"` // goose version of db/ocmt.db
	Users         []User    `json:"users"`         // users with a container record or a volume
	Entries       []Entry   `json:"entries"`       // every entry after the manifest, in order
	// Skipped lists what was found but not backed up (symbolic links,
	// devices): "<path>: <why>".
	Skipped []string `json:"skipped,omitempty"`
}

// User is one user's container data in the archive.
type User struct {
	ID      string `json:"id"`
	Runtime string `json:"runtime,omitempty"` // "docker" or "process" (its container record); "" = no record
	// Volume is the docker volume restored from volumes/<id>/, or "" when
	// the archive holds none for this user.
	Volume string `json:"volume,omitempty"`
}

// Entry describes one archive entry after the manifest.
type Entry struct {
	Path   string `json:"path"`             // e.g. "volumes/usr_x/vault.ocv"; directories without a trailing slash
	Dir    bool   `json:"dir,omitempty"`    // a directory (no content)
	Mode   uint32 `json:"mode"`             // permission bits, e.g. 384 (0600)
	Size   int64  `json:"size"`             // bytes; 0 for a directory
	SHA256 string `json:"sha256,omitempty"` // hex SHA-256 of the content; files only
}

// Volumes is the container engine as backup and restore need it:
// *docker.Driver for the deployment being saved or restored.
type Volumes interface {
	// VolumeUsers lists the users with a data volume in this deployment.
	VolumeUsers(ctx context.Context) ([]string, error)
	// VolumeExists reports whether userID's data volume exists.
	VolumeExists(ctx context.Context, userID string) (bool, error)
	// ExportVolume streams the volume as a tar of "data/…" entries.
	ExportVolume(ctx context.Context, userID string) (io.ReadCloser, error)
	// LiveContainers lists the running or paused containers of these
	// users in any deployment, as "<name> (<state>)".
	LiveContainers(ctx context.Context, userIDs []string) ([]string, error)
	// ImportVolume creates the volume and extracts a tar of "data/…"
	// entries into it, replacing an existing one only if replace is set.
	ImportVolume(ctx context.Context, userID string, content io.Reader, replace bool) error
	Close() error
}

// Engine connects to the container engine for a deployment id. It returns
// an error if no engine answers.
type Engine func(ctx context.Context, deployment string) (Volumes, error)

// userIDRE is what a user id in an archive may look like (ids are
// "usr_<base32>"; this also keeps them safe as path and volume names).
var userIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// cleanRel reports whether p is a clean relative slash path with no "."
// or ".." element, no empty element and no NUL: safe to join under a
// directory.
func cleanRel(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\\') || path.Clean(p) != p {
		return false
	}
	for _, el := range strings.Split(p, "/") {
		if el == "" || el == "." || el == ".." {
			return false
		}
	}
	return true
}

// skipDataFile reports whether a data-directory file (rel, slash path) is
// left out of a backup: the database and its journal files (db/ocmt.db
// is the snapshot), lock files, and temporary files (names starting with
// "." — .write-check-*, WriteFileAtomic's .*.ocmt-tmp-* — or ending in
// .tmp).
func skipDataFile(rel string) bool {
	base := path.Base(rel)
	switch rel {
	case "ocmt.db", "ocmt.db-wal", "ocmt.db-shm", "ocmt.db-journal":
		return true
	}
	return strings.HasPrefix(base, ".") || strings.HasSuffix(base, ".lock") || strings.HasSuffix(base, ".tmp")
}

// splitEntry classifies an entry path: kind "db", "data" (rel inside the
// data directory) or "volume" (user and rel inside the volume; rel ""
// for the volume's root). ok is false for any other path.
func splitEntry(p string) (kind, user, rel string, ok bool) {
	if !cleanRel(p) {
		return "", "", "", false
	}
	switch {
	case p == DBEntry:
		return "db", "", "", true
	case strings.HasPrefix(p, dataPrefix):
		rel = strings.TrimPrefix(p, dataPrefix)
		// Nothing backup leaves out (skipDataFile) may come back: not
		// the database's side files, a lock (restore's own ocmt.lock),
		// a temporary or dot file, nor anything under such a directory.
		for i := 0; i <= len(rel); i++ {
			if (i == len(rel) || rel[i] == '/') && skipDataFile(rel[:i]) {
				return "", "", "", false
			}
		}
		return "data", "", rel, true
	case strings.HasPrefix(p, volPrefix):
		user, rel, _ = strings.Cut(strings.TrimPrefix(p, volPrefix), "/")
		if !userIDRE.MatchString(user) {
			return "", "", "", false
		}
		return "volume", user, rel, true
	}
	return "", "", "", false
}

// Count returns "1 <noun>" or "<n> <noun>s" ("entry" becomes "entries"),
// for messages.
func Count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
