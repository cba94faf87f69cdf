package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/testdata/fakeprovider"
	"github.com/ocmt/ocmt/xtest"
)

// BenchmarkChatFirstToken measures the time from chat.send to the first
// streamed delta, through management → agent → container ("proxied") and
// straight to the container's vault ("direct"), in one run (process
// runtime, loopback). Target: the proxy adds < 5 ms at p95.
func BenchmarkChatFirstToken(b *testing.B) {
	env := xtest.NewEnv(b)
	fp := fakeprovider.New()
	defer fp.Close()
	ctx := context.Background()
	admin, au := env.Admin("bench@example.org")
	admin.ProvisionAgent(ctx)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := admin.WaitAgent(wctx, api.StateRunning); err != nil {
		b.Fatal(err)
	}
	var p struct {
		Salt string           `json:"salt"`
		KDF  crypto.KDFParams `json:"kdf"`
	}
	admin.JSON(ctx, "GET", "/api/v1/me/agent/vault/params", nil, &p)
	salt, _ := base64.StdEncoding.DecodeString(p.Salt)
	k, _ := crypto.DeriveKEK([]byte("benchmark password"), salt, p.KDF)
	admin.JSON(ctx, "POST", "/api/v1/me/agent/vault/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(k[:])}, nil)
	admin.JSON(ctx, "PUT", "/api/v1/me/agent/vault/apikeys/anthropic", map[string]string{"key": "k", "baseUrl": fp.URL()}, nil)
	endpoint, secret := env.ContainerAccess(au.ID)

	dial := func(url string, hdr http.Header, hc *http.Client) *websocket.Conn {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: hc})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	results := map[string][]time.Duration{}
	seq := 0
	for _, mode := range []string{"direct", "proxied"} {
		b.Run(mode, func(b *testing.B) {
			var ws *websocket.Conn
			if mode == "direct" {
				ws = dial(strings.Replace(endpoint, "http", "ws", 1)+"/chat", http.Header{api.ContainerSecretHeader: {secret}}, nil)
			} else {
				ws = dial(strings.Replace(env.URL, "http", "ws", 1)+"/api/v1/me/agent/chat", http.Header{"Origin": {env.URL}}, admin.HC)
			}
			defer ws.CloseNow()
			cw := &chatWS{t: &testing.T{}, ws: ws}
			read := func() map[string]any {
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				_, data, err := ws.Read(rctx)
				if err != nil {
					b.Fatal(err)
				}
				var f map[string]any
				json.Unmarshal(data, &f)
				return f
			}
			read()
			cw.send("c", "connect", map[string]any{"minProtocol": 3, "maxProtocol": 3, "client": map[string]any{"id": "bench"}})
			for f := read(); f["id"] != "c"; f = read() {
			}
			var samples []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				fp.Script(fakeprovider.Reply{Text: "first token then more", Chunks: 3})
				seq++
				id := fmt.Sprintf("%s-%d", mode, seq)
				start := time.Now()
				cw.send(id, "chat.send", map[string]any{"sessionKey": "bench-" + mode, "message": "hi", "idempotencyKey": id})
				first := time.Duration(0)
				for {
					f := read()
					if f["event"] != "chat" {
						continue
					}
					st := f["payload"].(map[string]any)["state"]
					if st == "delta" && first == 0 {
						first = time.Since(start)
					}
					if st == "final" || st == "error" || st == "aborted" {
						break
					}
				}
				samples = append(samples, first)
			}
			b.StopTimer()
			sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
			p50, p95 := samples[len(samples)/2], samples[(len(samples)*95)/100]
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
			results[mode] = samples
		})
	}
	if d, p := results["direct"], results["proxied"]; len(d) > 20 && len(p) > 20 {
		b.Logf("first token p95: direct %v, proxied %v, added %v", d[len(d)*95/100], p[len(p)*95/100], p[len(p)*95/100]-d[len(d)*95/100])
	}
}

// BenchmarkSharedCallSleepingIssuer measures Bob's call of a shared
// resource end to end (Bob's vault → relay → Alice's vault → API → back)
// while Alice's container is paused, or stopped (after a pause, as
// hibernation does), so the relay's delivery must wake it first; a stopped
// container's vault comes back unlocked with the agent role's hibernation
// key. Target for a paused issuer: p95 < 500 ms.
func BenchmarkSharedCallSleepingIssuer(b *testing.B) {
	for _, rt := range []config.Runtime{config.RuntimeProcess, config.RuntimeDocker} {
		for _, state := range []string{api.StatePaused, api.StateStopped} {
			b.Run(string(rt)+"/"+state, func(b *testing.B) {
				if rt == config.RuntimeDocker {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := docker.Ping(ctx)
					cancel()
					if err != nil {
						b.Skip("no Docker engine")
					}
				}
				benchSharedCall(b, rt, state)
			})
		}
	}
}

func benchSharedCall(b *testing.B, rt config.Runtime, state string) {
	env := xtest.NewEnv(b, xtest.WithRuntime(rt), xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} }))
	ctx := context.Background()
	var ln net.Listener
	if rt == config.RuntimeDocker {
		cli, err := client.New(client.FromEnv)
		if err != nil {
			b.Fatal(err)
		}
		nw, err := cli.NetworkInspect(ctx, env.Cfg.Network, client.NetworkInspectOptions{})
		cli.Close()
		if err != nil {
			b.Fatal(err)
		}
		if ln, err = net.Listen("tcp", net.JoinHostPort(nw.Network.IPAM.Config[0].Gateway.String(), "0")); err != nil {
			b.Fatal(err)
		}
	}
	cal := newFakeAPI(b, ln)
	alice, au := env.Admin("alice@example.org")
	bob, _ := env.Invite(alice, "bob@example.org")
	av := readyVault(b, env, alice, "alice's long password")
	readyVault(b, env, bob, "bob's long password")
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": cal.URL, "authHeader": "Authorization", "authValue": "Bearer x"}, nil)
	var out struct {
		JTI string `json:"jti"`
	}
	av.json("POST", "/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar", "scope": []string{"read"}, "expiresIn": 3600}, &out)
	xtest.Eventually(b, 10*time.Second, func() error {
		r, err := bob.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities/"+out.JTI+"/call", map[string]string{"operation": "read", "path": "/"})
		if err != nil {
			return err
		}
		if r.Status != 200 {
			return errString(fmt.Sprintf("status %d", r.Status))
		}
		return nil
	})
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := alice.AdminAction(ctx, string(au.ID), api.ActionPause); err != nil {
			b.Fatal(err)
		}
		if state == api.StateStopped {
			if err := alice.AdminAction(ctx, string(au.ID), api.ActionStop); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		r, err := bob.Do(ctx, "POST", "/api/v1/me/agent/vault/capabilities/"+out.JTI+"/call", map[string]string{"operation": "read", "path": "/"})
		if err != nil || r.Status != 200 {
			b.Fatalf("call: %v %v", r, err)
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(samples[len(samples)*95/100].Microseconds())/1000, "p95-ms")
}
