package vault

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/web"
)

// Hibernation across a stop (SPEC §4 hibernate/wake, §5.1).
//
// A paused container keeps its unlocked vault in memory; a stopped one
// loses it. So that stopping a container for hibernation does not lock a
// vault earlier than its own auto-lock would, the agent role, just before
// it stops the container, hands the vault a fresh random 256-bit
// hibernation key: the vault wraps its DEK under that key and writes the
// wrap to hibernateFileName, bound to the vault's salt and to the auto-lock
// deadline. The agent role keeps the key in memory only and hands it back
// right after the next start; the vault then unwraps its DEK, deletes the
// file and is unlocked again until the same deadline (or sooner: never
// longer than its auto-lock from the resume, which may have been shortened
// while it was stopped). Neither the key nor the DEK is ever on disk in the
// clear: the volume alone opens nothing, and an agent role that restarted
// has forgotten the key, so the vault stays locked (the safe failure). A
// lock, a password unlock or a passed deadline deletes the file.
//
// These endpoints (and GET /internal/work, work.go, and GET
// /internal/stats, stats.go) answer only requests
// that carry the container secret in api.LifecycleHeader as well; the
// agent role's proxy strips that header from every proxied request and
// refuses /internal/ paths, so a browser can never reach them.

// hibernateFileName holds the DEK wrapped under a hibernation key.
const hibernateFileName = "hibernate.json"

// hibernateState is the JSON form of hibernateFileName.
type hibernateState struct {
	V        int    `json:"v"`        // 1
	Deadline int64  `json:"deadline"` // auto-lock time, unix milliseconds
	Wrapped  []byte `json:"wrapped"`  // crypto.WrapDEK(key, DEK, hibernateAD(salt, deadline)), base64
}

// hibernateAD binds a hibernation wrap to this vault (its salt) and to the
// deadline: crypto.WrapAD("hibernate", salt ‖ deadline as 8-byte big-endian
// unix ms), so the deadline in the file cannot be moved.
func hibernateAD(salt []byte, deadlineMs int64) []byte {
	b := binary.BigEndian.AppendUint64(append([]byte(nil), salt...), uint64(deadlineMs))
	return crypto.WrapAD(crypto.WrapHibernate, b)
}

// hibernateReq is the body of POST /internal/hibernate and /internal/resume.
type hibernateReq struct {
	Key string `json:"key"` // 32 bytes, base64 (std)
}

// hibernateResp answers both endpoints. Unlocked reports whether the vault
// is (hibernate: will be) unlocked; Reason says why not: "locked",
// "not_initialized", "no_state", "expired" or "bad_key".
type hibernateResp struct {
	Unlocked  bool   `json:"unlocked"`
	ExpiresIn int64  `json:"expiresIn,omitempty"` // seconds until auto-lock
	Reason    string `json:"reason,omitempty"`
}

func (s *Server) lifecycleRoutes(g *echo.Group) {
	g.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !s.secretOK(c.Request().Header.Get(api.LifecycleHeader)) {
				return api.NotFound("not found")
			}
			return next(c)
		}
	})
	g.POST("/hibernate", s.hibernate)
	g.POST("/resume", s.resume)
	g.GET("/work", s.work)
	g.GET(strings.TrimPrefix(api.VaultStatsPath, "/internal"), s.stats)
}

func (s *Server) hibernatePath() string { return filepath.Join(s.dataDir, hibernateFileName) }

// bindKey reads the hibernation key of a lifecycle request.
func bindKey(c echo.Context) (*crypto.KEK, error) {
	var req hibernateReq
	if err := web.Bind(c, &req); err != nil {
		return nil, err
	}
	return decodeKey(req.Key)
}

// hibernate wraps the DEK under the given key for the next start.
func (s *Server) hibernate(c echo.Context) error {
	key, err := bindKey(c)
	if err != nil {
		return err
	}
	defer key.Zero()
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.file == nil {
		return c.JSON(http.StatusOK, hibernateResp{Reason: "not_initialized"})
	}
	k.expireLocked()
	if k.dek == nil {
		return c.JSON(http.StatusOK, hibernateResp{Reason: "locked"})
	}
	deadline := k.lastUse.Add(k.autoLock).UnixMilli()
	wrapped, err := crypto.WrapDEK(key, k.dek, hibernateAD(k.file.Salt(), deadline))
	if err != nil {
		return err
	}
	b, _ := json.Marshal(hibernateState{V: 1, Deadline: deadline, Wrapped: wrapped})
	if err := crypto.WriteFileAtomic(s.hibernatePath(), b, 0o600); err != nil {
		return err
	}
	s.hibernateDeadline.Store(deadline)
	s.log.Info("vault prepared for hibernation", "expiresIn", k.expiresIn().Round(time.Second))
	return c.JSON(http.StatusOK, hibernateResp{Unlocked: true, ExpiresIn: int64(k.expiresIn().Seconds())})
}

// resume unwraps the DEK with the key handed back after a start. The file
// is deleted whatever happens: a hibernation key works once.
func (s *Server) resume(c echo.Context) error {
	key, err := bindKey(c)
	if err != nil {
		return err
	}
	defer key.Zero()
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	b, err := os.ReadFile(s.hibernatePath())
	s.dropHibernation()
	var st hibernateState
	switch {
	case k.file == nil:
		return c.JSON(http.StatusOK, hibernateResp{Reason: "not_initialized"})
	case k.dek != nil:
		return c.JSON(http.StatusOK, hibernateResp{Unlocked: true, ExpiresIn: int64(k.expiresIn().Seconds())})
	case err != nil || json.Unmarshal(b, &st) != nil || st.V != 1:
		return c.JSON(http.StatusOK, hibernateResp{Reason: "no_state"})
	}
	deadline := time.UnixMilli(st.Deadline)
	if !k.wall().Before(deadline) {
		return c.JSON(http.StatusOK, hibernateResp{Reason: "expired"})
	}
	dek, err := crypto.UnwrapDEK(key, st.Wrapped, hibernateAD(k.file.Salt(), st.Deadline))
	if err != nil {
		return c.JSON(http.StatusOK, hibernateResp{Reason: "bad_key"})
	}
	if err := k.openLocked(dek); err != nil {
		return err
	}
	// The same deadline as before the stop, never later, and no later than
	// the auto-lock allows from now if that got shorter meanwhile.
	k.lastUse = deadline.Add(-k.autoLock)
	if now := k.wall(); now.Before(k.lastUse) {
		k.lastUse = now
	}
	s.log.Info("vault resumed after hibernation", "expiresIn", k.expiresIn().Round(time.Second))
	return c.JSON(http.StatusOK, hibernateResp{Unlocked: true, ExpiresIn: int64(k.expiresIn().Seconds())})
}

// dropHibernation deletes the hibernation file, if any.
func (s *Server) dropHibernation() {
	s.hibernateDeadline.Store(0)
	if err := os.Remove(s.hibernatePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("delete hibernation state", "err", err)
	}
}

// loadHibernateDeadline notes the deadline of a hibernation file left on
// the volume (read once at start; unreadable counts as passed), so that
// dropStaleHibernation need not read the file on every tick.
func (s *Server) loadHibernateDeadline() {
	b, err := os.ReadFile(s.hibernatePath())
	if err != nil {
		return
	}
	var st hibernateState
	if json.Unmarshal(b, &st) != nil || st.Deadline <= 0 {
		st.Deadline = 1 // long past: the next tick deletes it
	}
	s.hibernateDeadline.Store(st.Deadline)
}

// dropStaleHibernation deletes a hibernation file whose deadline passed
// (its key, if anyone still holds it, can no longer unlock anything).
func (s *Server) dropStaleHibernation() {
	if d := s.hibernateDeadline.Load(); d != 0 && !s.keys.wall().Before(time.UnixMilli(d)) {
		s.dropHibernation()
	}
}
