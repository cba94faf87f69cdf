package vault

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ocmt/ocmt/crypto"
)

// Idempotency records (SPEC §5.5) outlive the process: every chat.send
// with an idempotencyKey, and the end of its run, rewrites
// /data/idempotency.sealed atomically with the unexpired records, sealed
// with the transcript key (crypto.SealRecord, id idemFileID, index 0) so
// the file shows neither the keys nor the run ids. The first keyed send
// after the process starts (the vault is unlocked by then) merges the file
// into the in-memory map, which stays the fast path. The file holds at
// most idemMaxRecords records, the newest; it is small and read once per
// process.
const (
	idemFileName   = "idempotency.sealed"
	idemFileID     = "idempotency"
	idemMaxRecords = 1024
)

// Run states a duplicate chat.send reports in its "state" field: running
// while the run lives, then its terminal chat event (final, aborted,
// error); interrupted when the vault stopped (container stop, crash)
// before the run ended — the run is not restarted.
const (
	idemRunning     = "running"
	idemInterrupted = "interrupted"
)

type idemRecord struct {
	Key     string `json:"k"`
	FP      string `json:"fp"` // hex SHA-256, idemFingerprint
	RunID   string `json:"run"`
	State   string `json:"st"`
	Expires int64  `json:"exp"` // unix ms
}

func (s *Server) idemPath() string { return filepath.Join(s.dataDir, idemFileName) }

// idemLoad merges the sealed records into the in-memory map once per
// process. Records of runs not alive here are marked interrupted unless
// they ended. A file that does not open under this key (another vault) is
// ignored and replaced on the next write.
func (s *Server) idemLoad(tkey *crypto.SubKey) {
	h := s.hub
	h.persistMu.Lock()
	defer h.persistMu.Unlock()
	h.mu.Lock()
	loaded := h.idemLoaded
	h.mu.Unlock()
	if loaded {
		return
	}
	var recs []idemRecord
	b, err := os.ReadFile(s.idemPath())
	if err == nil {
		pt, oerr := crypto.OpenRecord(tkey, idemFileID, 0, b)
		if oerr == nil {
			oerr = json.Unmarshal(pt, &recs)
			clear(pt)
		}
		if oerr != nil {
			s.log.Warn("idempotency records unreadable; starting empty", "err", oerr)
			recs = nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("idempotency records unreadable; starting empty", "err", err)
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range recs {
		exp := time.UnixMilli(r.Expires)
		fp, err := hex.DecodeString(r.FP)
		if r.Key == "" || now.After(exp) || err != nil || len(fp) != len(idemEntry{}.fp) {
			continue
		}
		if _, ok := h.idem[r.Key]; ok {
			continue
		}
		e := idemEntry{runID: r.RunID, state: r.State, expires: exp}
		copy(e.fp[:], fp)
		if _, live := h.runs[r.RunID]; !live && (e.state == "" || e.state == idemRunning) {
			e.state = idemInterrupted
		}
		h.idem[r.Key] = e
	}
	h.idemLoaded = true
}

// idemSave writes the unexpired in-memory records (the newest
// idemMaxRecords) sealed and atomically. Writes are serialized and each
// snapshots the map when it starts, so the last write holds the newest
// state.
func (s *Server) idemSave(tkey *crypto.SubKey) error {
	h := s.hub
	h.persistMu.Lock()
	defer h.persistMu.Unlock()
	now := time.Now()
	h.mu.Lock()
	recs := make([]idemRecord, 0, len(h.idem))
	for k, e := range h.idem {
		if now.After(e.expires) {
			continue
		}
		recs = append(recs, idemRecord{Key: k, FP: hex.EncodeToString(e.fp[:]), RunID: e.runID, State: e.state, Expires: e.expires.UnixMilli()})
	}
	h.mu.Unlock()
	sort.Slice(recs, func(i, j int) bool { return recs[i].Expires > recs[j].Expires })
	if len(recs) > idemMaxRecords {
		recs = recs[:idemMaxRecords]
	}
	pt, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	sealed, err := crypto.SealRecord(tkey, idemFileID, 0, pt)
	clear(pt)
	if err != nil {
		return err
	}
	return crypto.WriteFileAtomic(s.idemPath(), sealed, 0o600)
}

// idemFinish records the terminal state of a keyed run and persists it.
func (s *Server) idemFinish(tkey *crypto.SubKey, key, runID, state string) {
	h := s.hub
	h.mu.Lock()
	e, ok := h.idem[key]
	if ok && e.runID == runID {
		e.state = state
		h.idem[key] = e
	}
	h.mu.Unlock()
	if !ok || e.runID != runID {
		return
	}
	if err := s.idemSave(tkey); err != nil {
		s.log.Error("save idempotency records", "err", err)
	}
}
