package vault

import (
	"fmt"
	"testing"
	"time"

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
