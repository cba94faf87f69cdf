package vault

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ocmt/ocmt/crypto"
)

// Transcript files (SPEC §5.3): one file per chat session under
// /data/transcripts, named by hex(HMAC-SHA256(transcript key, session key))[:32]
// so that names reveal nothing. A file is a sequence of records, each
//
//	uint32 big-endian length ‖ crypto.SealRecord(key, fileID, index, JSON)
//
// Record 0 is the session header {"sessionKey","createdAt"}; the rest are
// Messages. The associated data binds the file id and the record index, so
// records cannot be reordered, dropped from the middle or moved between
// sessions undetected. Appending writes one record and fsyncs: its cost does
// not depend on the transcript's length (record counts are cached). A torn
// final record (crash mid-append) is ignored on read and cut off on the next
// append.
const (
	maxRecordBytes   = 1 << 20
	transcriptSuffix = ".tr"
)

// Message is one transcript entry.
type Message struct {
	Role       string          `json:"role"` // "user", "assistant" or "tool"
	Text       string          `json:"text,omitempty"`
	ToolCalls  json.RawMessage `json:"toolCalls,omitempty"`
	ToolCallID string          `json:"toolCallId,omitempty"`
	ToolName   string          `json:"toolName,omitempty"`
	Aborted    bool            `json:"aborted,omitempty"`
	Timestamp  int64           `json:"ts"` // unix ms
}

type sessionHeader struct {
	SessionKey string `json:"sessionKey"`
	CreatedAt  int64  `json:"createdAt"`
}

// SessionInfo summarises a session for sessions.list.
type SessionInfo struct {
	Key          string `json:"key"`
	Title        string `json:"title"`
	UpdatedAt    int64  `json:"updatedAt"`
	MessageCount int    `json:"messageCount"`
}

// transcripts reads and appends sealed transcript files.
type transcripts struct {
	dir    string
	mu     sync.Mutex
	counts map[string]uint64 // file id → records (incl. header); cache
	ends   map[string]int64  // file id → offset after the last whole record
}

func newTranscripts(dir string) (*transcripts, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("transcripts: %w", err)
	}
	return &transcripts{dir: dir, counts: map[string]uint64{}, ends: map[string]int64{}}, nil
}

func fileID(key *crypto.SubKey, sessionKey string) string {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte("session\x00" + sessionKey))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

func (t *transcripts) path(id string) string { return filepath.Join(t.dir, id+transcriptSuffix) }

// scan counts the whole records of a file and finds where they end.
func scan(f *os.File) (n uint64, end int64, err error) {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(f, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return n, end, nil
			}
			return n, end, err
		}
		l := binary.BigEndian.Uint32(hdr[:])
		if l == 0 || l > maxRecordBytes+64 {
			return n, end, nil // garbage tail
		}
		pos, err := f.Seek(int64(l), io.SeekCurrent)
		if err != nil {
			return n, end, err
		}
		st, err := f.Stat()
		if err != nil {
			return n, end, err
		}
		if pos > st.Size() {
			return n, end, nil // torn record
		}
		n++
		end = pos
	}
}

// Append seals msg as the next record of the session, creating the session
// (with its header record) if needed.
func (t *transcripts) Append(key *crypto.SubKey, sessionKey string, msg Message) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := fileID(key, sessionKey)
	f, err := os.OpenFile(t.path(id), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("append transcript: %w", err)
	}
	defer f.Close()
	n, ok := t.counts[id]
	end := t.ends[id]
	if !ok {
		if n, end, err = scan(f); err != nil {
			return fmt.Errorf("append transcript: %w", err)
		}
	}
	if st, err := f.Stat(); err == nil && st.Size() != end {
		if err := f.Truncate(end); err != nil { // cut a torn tail
			return fmt.Errorf("append transcript: %w", err)
		}
	}
	var buf []byte
	if n == 0 {
		rec, err := sealJSON(key, id, 0, sessionHeader{SessionKey: sessionKey, CreatedAt: time.Now().UnixMilli()})
		if err != nil {
			return err
		}
		buf = append(buf, rec...)
		n = 1
	}
	rec, err := sealJSON(key, id, n, msg)
	if err != nil {
		return err
	}
	buf = append(buf, rec...)
	if _, err := f.WriteAt(buf, end); err != nil {
		delete(t.counts, id)
		return fmt.Errorf("append transcript: %w", err)
	}
	if err := f.Sync(); err != nil {
		delete(t.counts, id)
		return fmt.Errorf("append transcript: %w", err)
	}
	t.counts[id], t.ends[id] = n+1, end+int64(len(buf))
	return nil
}

func sealJSON(key *crypto.SubKey, id string, index uint64, v any) ([]byte, error) {
	pt, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(pt) > maxRecordBytes {
		return nil, fmt.Errorf("transcript record too large (%d bytes)", len(pt))
	}
	sealed, err := crypto.SealRecord(key, id, index, pt)
	clear(pt)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4, 4+len(sealed))
	binary.BigEndian.PutUint32(out, uint32(len(sealed)))
	return append(out, sealed...), nil
}

// readFile opens every whole record of a file: the header and the messages.
func readFile(key *crypto.SubKey, path, id string) (sessionHeader, []Message, error) {
	var h sessionHeader
	b, err := os.ReadFile(path)
	if err != nil {
		return h, nil, err
	}
	var msgs []Message
	for i := uint64(0); len(b) >= 4; i++ {
		l := binary.BigEndian.Uint32(b)
		if l == 0 || int(l) > len(b)-4 {
			break // torn tail
		}
		pt, err := crypto.OpenRecord(key, id, i, b[4:4+l])
		if err != nil {
			return h, nil, fmt.Errorf("transcript record %d: %w", i, err)
		}
		if i == 0 {
			err = json.Unmarshal(pt, &h)
		} else {
			var m Message
			err = json.Unmarshal(pt, &m)
			msgs = append(msgs, m)
		}
		if err != nil {
			return h, nil, fmt.Errorf("transcript record %d: %w", i, err)
		}
		b = b[4+l:]
	}
	return h, msgs, nil
}

// Read returns a session's messages (nil if it has none).
func (t *transcripts) Read(key *crypto.SubKey, sessionKey string) ([]Message, error) {
	id := fileID(key, sessionKey)
	_, msgs, err := readFile(key, t.path(id), id)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return msgs, err
}

// Delete removes a session.
func (t *transcripts) Delete(key *crypto.SubKey, sessionKey string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := fileID(key, sessionKey)
	delete(t.counts, id)
	delete(t.ends, id)
	if err := os.Remove(t.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// List summarises every session, most recently updated first.
func (t *transcripts) List(key *crypto.SubKey) ([]SessionInfo, error) {
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, err
	}
	var out []SessionInfo
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), transcriptSuffix)
		if !ok || len(id) != 32 {
			continue
		}
		h, msgs, err := readFile(key, t.path(id), id)
		if err != nil {
			continue // not ours or damaged: skip rather than fail the list
		}
		info := SessionInfo{Key: h.SessionKey, UpdatedAt: h.CreatedAt}
		for _, m := range msgs {
			if m.Role == "user" || m.Role == "assistant" {
				info.MessageCount++
			}
			if info.Title == "" && m.Role == "user" {
				info.Title = title(m.Text)
			}
			info.UpdatedAt = max(info.UpdatedAt, m.Timestamp)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UpdatedAt > out[j].UpdatedAt })
	return out, nil
}

func title(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 60 {
		return string(r[:60]) + "…"
	}
	return s
}
