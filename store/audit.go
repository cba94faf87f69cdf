package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// AuditEvent is one row of the append-only audit log.
//
// Rows form a keyed hash chain: Hash = hex(HMAC-SHA256(audit key, PrevHash ‖
// 0x00 ‖ len-prefixed fields)), where the fields are Seq (8 bytes
// big-endian), TS (unix ms, 8 bytes big-endian), Actor, Action, Target and
// Detail, each preceded by its length as 4 bytes big-endian. The first row's
// PrevHash is 64 zeros. The audit key is 32 random bytes in the file
// audit.key beside the database (0600), so someone who can edit the
// database but not read that file cannot rewrite the chain consistently.
// The chain's head (last Seq and Hash) is also kept in the kv table, so
// truncating the tail is detected too. See [Store.VerifyAudit].
type AuditEvent struct {
	Seq      int64
	TS       time.Time
	Actor    string            // user id, "system" or "admin:<id>"
	Action   string            // e.g. "auth.signin", "agent.provision"
	Target   string            // usually the user id the event is about
	Detail   map[string]string // metadata only; never secrets or content
	PrevHash string
	Hash     string
}

// GenesisHash is the PrevHash of the first audit row.
var GenesisHash = strings.Repeat("0", 64)

const auditHeadKey = "audit.head"

// auditHash computes the chain hash of e under key (see AuditEvent).
func auditHash(key []byte, e AuditEvent, detailJSON string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(e.PrevHash))
	h.Write([]byte{0})
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(e.Seq))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(e.TS.UnixMilli()))
	h.Write(b[:])
	for _, f := range []string{e.Actor, e.Action, e.Target, detailJSON} {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(f)))
		h.Write(l[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Audit appends an event to the chain and returns it with Seq and hashes set.
func (s *Store) Audit(ctx context.Context, actor, action, target string, detail map[string]string) (AuditEvent, error) {
	if detail == nil {
		detail = map[string]string{}
	}
	dj, err := json.Marshal(detail) // map keys are sorted: deterministic
	if err != nil {
		return AuditEvent{}, fmt.Errorf("audit: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return AuditEvent{}, fmt.Errorf("audit: %w", err)
	}
	defer tx.Rollback()
	e := AuditEvent{TS: s.now().Truncate(time.Millisecond), Actor: actor, Action: action, Target: target, Detail: detail, PrevHash: GenesisHash}
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&e.Seq, &e.PrevHash)
	if err != nil && !strings.Contains(err.Error(), "no rows") {
		return AuditEvent{}, fmt.Errorf("audit: %w", err)
	}
	e.Seq++
	e.Hash = auditHash(s.auditKey, e, string(dj))
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log(seq, ts, actor, action, target, detail, prev_hash, hash) VALUES(?,?,?,?,?,?,?,?)`,
		e.Seq, ms(e.TS), e.Actor, e.Action, e.Target, string(dj), e.PrevHash, e.Hash); err != nil {
		return AuditEvent{}, fmt.Errorf("audit: %w", err)
	}
	head := fmt.Sprintf("%d:%s", e.Seq, e.Hash)
	if _, err := tx.ExecContext(ctx, `INSERT INTO kv(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v`, auditHeadKey, []byte(head)); err != nil {
		return AuditEvent{}, fmt.Errorf("audit: %w", err)
	}
	return e, tx.Commit()
}

// AuditFilter selects audit events. Zero fields select everything.
type AuditFilter struct {
	About  UserID // events whose actor or target is this user
	Action string // exact action, or a prefix ending in "." (e.g. "auth.")
	Limit  int    // at most this many (default 100, max 1000)
	Before int64  // only Seq < Before (paging); 0 = newest
}

// AuditEvents returns matching events, newest first.
func (s *Store) AuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	q := `SELECT seq, ts, actor, action, target, detail, prev_hash, hash FROM audit_log WHERE 1=1`
	var args []any
	if f.About != "" {
		q += ` AND (actor = ? OR target = ?)`
		args = append(args, string(f.About), string(f.About))
	}
	if strings.HasSuffix(f.Action, ".") {
		q += ` AND substr(action, 1, ?) = ?`
		args = append(args, len(f.Action), f.Action)
	} else if f.Action != "" {
		q += ` AND action = ?`
		args = append(args, f.Action)
	}
	if f.Before > 0 {
		q += ` AND seq < ?`
		args = append(args, f.Before)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit events: %w", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var ts int64
		var dj string
		if err := rows.Scan(&e.Seq, &ts, &e.Actor, &e.Action, &e.Target, &dj, &e.PrevHash, &e.Hash); err != nil {
			return nil, fmt.Errorf("audit events: %w", err)
		}
		e.TS = fromMS(ts)
		_ = json.Unmarshal([]byte(dj), &e.Detail)
		out = append(out, e)
	}
	return out, rows.Err()
}

// AuditChainError says where the audit chain breaks.
type AuditChainError struct {
	Seq    int64 // the first row found wrong (or the missing one)
	Reason string
}

func (e *AuditChainError) Error() string {
	return fmt.Sprintf("audit chain broken at row %d: %s", e.Seq, e.Reason)
}

// VerifyAudit walks the whole chain and returns the number of rows checked,
// or an *AuditChainError at the first edited, deleted, inserted or reordered
// row, or if the stored head does not match the last row.
func (s *Store) VerifyAudit(ctx context.Context) (int64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, ts, actor, action, target, detail, prev_hash, hash FROM audit_log ORDER BY rowid`)
	if err != nil {
		return 0, fmt.Errorf("verify audit: %w", err)
	}
	defer rows.Close()
	prev := GenesisHash
	var n, lastSeq int64
	for rows.Next() {
		var e AuditEvent
		var ts int64
		var dj string
		if err := rows.Scan(&e.Seq, &ts, &e.Actor, &e.Action, &e.Target, &dj, &e.PrevHash, &e.Hash); err != nil {
			return n, fmt.Errorf("verify audit: %w", err)
		}
		e.TS = fromMS(ts)
		n++
		switch {
		case e.Seq != lastSeq+1:
			return n, &AuditChainError{Seq: lastSeq + 1, Reason: fmt.Sprintf("expected row %d, found row %d (deleted or reordered)", lastSeq+1, e.Seq)}
		case e.PrevHash != prev:
			return n, &AuditChainError{Seq: e.Seq, Reason: "previous-hash link does not match (row deleted, inserted or reordered)"}
		case !hmac.Equal([]byte(auditHash(s.auditKey, e, dj)), []byte(e.Hash)):
			return n, &AuditChainError{Seq: e.Seq, Reason: "content does not match its hash (row edited)"}
		}
		prev, lastSeq = e.Hash, e.Seq
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("verify audit: %w", err)
	}
	head, err := s.GetKV(ctx, auditHeadKey)
	switch {
	case err == ErrNotFound && n == 0:
		if users, uerr := s.UserCount(ctx); uerr == nil && users > 0 {
			return 0, &AuditChainError{Seq: 1, Reason: fmt.Sprintf("the log is empty but %d users exist (rows deleted)", users)}
		}
		return 0, nil
	case err != nil:
		return n, &AuditChainError{Seq: lastSeq, Reason: "chain head record is missing"}
	case string(head) != fmt.Sprintf("%d:%s", lastSeq, prev):
		return n, &AuditChainError{Seq: lastSeq + 1, Reason: "last rows missing: the recorded head is " + strings.SplitN(string(head), ":", 2)[0]}
	}
	return n, nil
}
