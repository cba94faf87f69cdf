package crypto

import (
	"sort"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// BenchmarkSeal64KiB measures Seal (random nonce, fresh output buffer) on
// 64 KiB; compare with BenchmarkRawXChaCha64KiB. Target: ≥ 80% of raw.
func BenchmarkSeal64KiB(b *testing.B) {
	key := [32]byte(randomKEK(b))
	pt := make([]byte, 64<<10)
	ad := []byte("ad")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(&key, pt, ad); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealAppend64KiB is SealAppend into a reused buffer; compare with
// BenchmarkRawXChaCha64KiBReuse.
func BenchmarkSealAppend64KiB(b *testing.B) {
	key := [32]byte(randomKEK(b))
	pt := make([]byte, 64<<10)
	out := make([]byte, 0, len(pt)+Overhead)
	ad := []byte("ad")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if out, err = SealAppend(out[:0], &key, pt, ad); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawXChaCha64KiB is x/crypto's XChaCha20-Poly1305 used the way
// Seal uses it, minus the random nonce: chacha20poly1305.NewX, then Seal
// with a fixed nonce into a fresh output slice.
func BenchmarkRawXChaCha64KiB(b *testing.B) {
	key := randomKEK(b)
	pt := make([]byte, 64<<10)
	nonce := make([]byte, NonceSize)
	ad := []byte("ad")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		aead, err := chacha20poly1305.NewX(key[:])
		if err != nil {
			b.Fatal(err)
		}
		aead.Seal(nil, nonce, pt, ad)
	}
}

// BenchmarkRawXChaCha64KiBReuse is the primitive's ceiling: one AEAD, a
// fixed nonce and a reused output buffer (no allocation at all).
func BenchmarkRawXChaCha64KiBReuse(b *testing.B) {
	key := randomKEK(b)
	aead, _ := chacha20poly1305.NewX(key[:])
	pt := make([]byte, 64<<10)
	out := make([]byte, 0, len(pt)+TagSize)
	nonce := make([]byte, NonceSize)
	ad := []byte("ad")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		out = aead.Seal(out[:0], nonce, pt, ad)
	}
}

// BenchmarkUnlock is the unlock path after the browser has sent the KEK:
// ParseVaultFile + Unlock + OpenBody of a 4 KiB body. It reports the 95th
// percentile as p95-ms (target < 5 ms).
func BenchmarkUnlock(b *testing.B) {
	body := make([]byte, 4<<10)
	v, kek, _ := newTestVault(b, body)
	file := v.Marshal()
	var times []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		p, err := ParseVaultFile(file)
		if err != nil {
			b.Fatal(err)
		}
		dek, err := p.Unlock(&kek)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.OpenBody(&dek); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)*95/100])/1e6, "p95-ms")
}

// BenchmarkDeriveKEKDefault is DeriveKEK with the SPEC defaults (64 MiB,
// t=3, p=4), reported in milliseconds.
func BenchmarkDeriveKEKDefault(b *testing.B) {
	salt, _ := NewSalt()
	p := DefaultKDFParams()
	for b.Loop() {
		if _, err := DeriveKEK([]byte("correct horse battery staple"), salt, p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}
