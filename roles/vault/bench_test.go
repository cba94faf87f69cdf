package vault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/crypto"
)

// BenchmarkTranscriptAppend compares an append to an empty session with an
// append to a 10,000-message session (target: within 2×). Each op appends
// one ~200-byte message, sealed and fsynced.
func BenchmarkTranscriptAppend(b *testing.B) {
	for _, size := range []int{0, 10_000} {
		b.Run(fmt.Sprintf("existing=%d", size), func(b *testing.B) {
			tr, err := newTranscripts(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			dek, _ := crypto.NewDEK()
			key, _ := crypto.TranscriptKey(&dek)
			msg := Message{Role: "assistant", Text: string(make([]byte, 200)), Timestamp: time.Now().UnixMilli()}
			for i := 0; i < size; i++ {
				if err := tr.Append(&key, "big", msg); err != nil {
					b.Fatal(err)
				}
			}
			tr.counts, tr.ends = map[string]uint64{}, map[string]int64{} // as after a restart
			if err := tr.Append(&key, "big", msg); err != nil {          // first append rescans once
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := tr.Append(&key, "big", msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCallReplayCheck measures what the replay rule adds to each
// executed capability call (envelope_binding.go), with seen request ids
// on the called capability (0, a busy 100, the cap 1024) among 20 issued
// capabilities:
//   - check: prune the seen sets and look the request id up (memory only);
//   - decode+encode: the same with the JSON decoding and encoding of the
//     capability records that each call does (no disk);
//   - load+save: decode the capability records, check, remember the id and
//     store the records sealed (fsync), which every counted call does
//     anyway; compare across sizes for the cost of the kept ids.
func BenchmarkCallReplayCheck(b *testing.B) {
	for _, n := range []int{0, 100, maxSeenPerCap} {
		now := time.Now()
		mk := func() *capState {
			cs := &capState{Issued: map[string]*issuedCap{}, Received: map[string]*receivedCap{}}
			for i := 0; i < 20; i++ {
				cs.Issued[fmt.Sprint("cap", i)] = &issuedCap{JTI: fmt.Sprint("cap", i), Resource: "calendar", Scope: []string{"read"}}
			}
			ic := cs.Issued["cap0"]
			for i := 0; i < n; i++ {
				ic.remember(newRandomID(), now.UnixMilli())
			}
			return cs
		}
		b.Run(fmt.Sprintf("check/seen=%d", n), func(b *testing.B) {
			cs := mk()
			ic := cs.Issued["cap0"]
			id := newRandomID()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pruneSeen(cs, now)
				if _, dup := ic.Seen[id]; dup {
					b.Fatal("dup")
				}
			}
		})
		b.Run(fmt.Sprintf("decode+encode/seen=%d", n), func(b *testing.B) {
			js, _ := json.Marshal(mk())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cs := &capState{}
				if err := json.Unmarshal(js, cs); err != nil {
					b.Fatal(err)
				}
				pruneSeen(cs, now)
				ic := cs.Issued["cap0"]
				id := newRandomID()
				if _, dup := ic.Seen[id]; dup {
					b.Fatal("dup")
				}
				ic.remember(id, now.UnixMilli())
				if _, err := json.Marshal(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("load+save/seen=%d", n), func(b *testing.B) {
			s := benchVault(b)
			k := s.keys
			k.mu.Lock()
			defer k.mu.Unlock()
			if err := s.saveCapsLocked(mk()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cs := s.capsForTest()
				pruneSeen(cs, now)
				ic := cs.Issued["cap0"]
				id := newRandomID()
				if _, dup := ic.Seen[id]; dup {
					b.Fatal("dup")
				}
				ic.remember(id, now.UnixMilli())
				delete(ic.Seen, id) // keep n ids
				if err := s.saveCapsLocked(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchVault is an initialised, unlocked vault Server.
func benchVault(b *testing.B) *Server {
	s, err := New(Options{Secret: testSecret, Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		DataDir: b.TempDir(), PublicURL: "https://ocmt.example", UserID: "usr_bench"})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/vault/init", strings.NewReader(`{"derivedKey":"`+b64(bytes.Repeat([]byte{1}, 32))+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.ContainerSecretHeader, testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		b.Fatalf("init: %v %v", resp, err)
	}
	resp.Body.Close()
	return s
}
