package relay

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/store"
)

// benchUser returns a deterministic identity for bench user i (the client
// subprocess derives the same one).
func benchUser(i int) *user {
	a := sha256.Sum256([]byte("relay-bench-ed-" + strconv.Itoa(i)))
	x := sha256.Sum256([]byte("relay-bench-x-" + strconv.Itoa(i)))
	k, err := crypto.IdentityFromBytes(append(a[:], x[:]...))
	if err != nil {
		panic(err)
	}
	return &user{id: "usr_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(a[:16])), key: k}
}

func (e *env) register(u *user) {
	e.dir.mu.Lock()
	e.dir.keys[u.id] = u.key.Public().Ed25519
	e.dir.mu.Unlock()
}

// benchEnv is an env with real time, no rate limit and discarded logs.
func benchEnv(b *testing.B) *env {
	e := newEnv(b, func(o *Options) {
		o.Now = nil
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		o.RatePerHour = 1 << 30
		o.Waker = nil
	})
	return e
}

// rawConnect dials and authenticates u without the test client's reader.
func rawConnect(ctx context.Context, url string, u *user) (*websocket.Conn, error) {
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/relay/v1/connect", nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	var f Frame
	_, b, err := ws.Read(ctx)
	if err != nil || json.Unmarshal(b, &f) != nil || f.Type != FrameChallenge {
		return nil, fmt.Errorf("challenge: %v", err)
	}
	nonce, _ := base64.RawURLEncoding.DecodeString(f.Nonce)
	auth, _ := json.Marshal(Frame{Type: FrameAuth, User: u.id, Sig: base64.RawURLEncoding.EncodeToString(u.key.Sign(AuthMessage(nonce, u.id)))})
	if err := ws.Write(ctx, websocket.MessageText, auth); err != nil {
		return nil, err
	}
	if _, b, err = ws.Read(ctx); err != nil || json.Unmarshal(b, &f) != nil || f.Type != FrameReady {
		return nil, fmt.Errorf("ready: %v", err)
	}
	return ws, nil
}

// BenchmarkEnvelopes: 100 connected clients each send b.N/100 envelopes
// with 1 KiB payloads to the next client, which acks every delivery; each
// sender keeps up to 16 sends in flight. Reports envelopes per second
// (accepted, persisted, delivered and acked) on loopback.
func BenchmarkEnvelopes(b *testing.B) {
	const clients, window = 100, 16
	e := benchEnv(b)
	users := make([]*user, clients)
	for i := range users {
		users[i] = benchUser(i)
		e.register(users[i])
	}
	ctx := context.Background()
	conns := make([]*websocket.Conn, clients)
	for i, u := range users {
		ws, err := rawConnect(ctx, e.http.URL, u)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = ws
		defer ws.CloseNow()
	}
	payload := make([]byte, 1024)
	per := (b.N + clients - 1) / clients
	var done sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range conns {
		ws, u, to := conns[i], users[i], users[(i+1)%clients]
		sem := make(chan struct{}, window)
		done.Add(2)
		var delivered int
		go func() { // reader: accepted → free a slot; deliver → ack
			defer done.Done()
			accepted := 0
			for accepted < per || delivered < per {
				_, msg, err := ws.Read(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				var f Frame
				if err := json.Unmarshal(msg, &f); err != nil {
					b.Error(err)
					return
				}
				switch f.Type {
				case FrameAccepted:
					accepted++
					<-sem
				case FrameDeliver:
					delivered++
					ack, _ := json.Marshal(Frame{Type: FrameAck, ID: f.Envelope.Header.ID})
					if err := ws.Write(ctx, websocket.MessageText, ack); err != nil {
						b.Error(err)
						return
					}
				case FrameAcked:
				default:
					b.Errorf("unexpected frame %s %s", f.Type, f.Code)
					return
				}
			}
		}()
		go func() { // sender
			defer done.Done()
			for n := 0; n < per; n++ {
				sem <- struct{}{}
				env := Envelope{Header: Header{ID: newID(), From: u.id, To: to.id, TS: time.Now().UnixMilli(), Type: "bench"}, Payload: payload}
				msg, _ := json.Marshal(Frame{Type: FrameSend, Envelope: &env})
				if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	done.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(per*clients)/elapsed.Seconds(), "env/s")
}

// BenchmarkIdleConnMemory connects 200 authenticated idle clients and
// reports the relay's HeapInuse (and, separately, goroutine stack) growth
// per connection. The clients run in
// a child process (see TestMain) so only the server side is
// measured. Each iteration repeats the whole measurement.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 200
	e := benchEnv(b)
	for i := 0; i < n; i++ {
		e.register(benchUser(i))
	}
	var perConn, stackPerConn float64
	for it := 0; it < b.N; it++ {
		before, stackBefore := heapInuse()
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.count=1") // TestMain plays the clients
		cmd.Env = append(os.Environ(), "RELAY_BENCH_URL="+e.http.URL, "RELAY_BENCH_N="+strconv.Itoa(n))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		ready := false
		for sc.Scan() {
			if sc.Text() == "clients ready" {
				ready = true
				break
			}
		}
		if !ready {
			b.Fatal("client process failed")
		}
		eventually(b, "all registered", func() bool {
			e.srv.mu.Lock()
			defer e.srv.mu.Unlock()
			return len(e.srv.conns) == n
		})
		time.Sleep(100 * time.Millisecond) // let writers settle on their idle select
		after, stackAfter := heapInuse()
		perConn = float64(int64(after)-int64(before)) / n
		stackPerConn = float64(int64(stackAfter)-int64(stackBefore)) / n
		stdin.Close()
		go io.Copy(io.Discard, stdout)
		cmd.Wait()
		eventually(b, "all gone", func() bool {
			e.srv.mu.Lock()
			defer e.srv.mu.Unlock()
			return len(e.srv.conns) == 0
		})
	}
	b.ReportMetric(perConn, "heapB/conn")
	b.ReportMetric(stackPerConn, "stackB/conn")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines-after")
}

// heapInuse returns the heap and goroutine-stack bytes in use after GC.
func heapInuse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

// TestMain runs the client side of BenchmarkIdleConnMemory when started as
// its child process (RELAY_BENCH_URL set): it opens RELAY_BENCH_N
// authenticated connections, says "clients ready" and holds them until
// stdin closes. Otherwise it runs the tests.
func TestMain(m *testing.M) {
	url := os.Getenv("RELAY_BENCH_URL")
	if url == "" {
		os.Exit(m.Run())
	}
	n, _ := strconv.Atoi(os.Getenv("RELAY_BENCH_N"))
	ctx := context.Background()
	for i := 0; i < n; i++ {
		ws, err := rawConnect(ctx, url, benchUser(i))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench client:", err)
			os.Exit(1)
		}
		defer ws.CloseNow()
	}
	fmt.Println("clients ready")
	io.Copy(io.Discard, os.Stdin)
}

// BenchmarkRevocationCheckMiss: the send path's revocation check for a
// jti that is not revoked (answered by the Bloom filter, no database
// access), with 10,000 revocations loaded.
func BenchmarkRevocationCheckMiss(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	for i := 0; i < 10_000; i++ {
		j := newID()
		if _, err := e.st.PutRevocation(ctx, store.RelayRevocation{JTI: j, IssuerUser: "usr_xaaaaaaaaaaaaaaaaaaaaaaaaa", Issuer: "ed25519:x"}); err != nil {
			b.Fatal(err)
		}
	}
	e.restart() // rebuild the filter from the table
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = newID()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r, err := e.srv.revocationFor(ctx, ids[i&1023], "usr_xaaaaaaaaaaaaaaaaaaaaaaaaa", "usr_yaaaaaaaaaaaaaaaaaaaaaaaaa"); r != nil || err != nil {
			b.Fatal("fresh jti reported revoked")
		}
	}
}
