package e2e

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

const (
	e2ePassword = "tangerine-orbit-lantern-42"
	e2eAPIKey   = "sk-ant-e2e-4f9c2d7a1b"
	e2eReply    = "Zebra quartz umbrella: the reply only the model knows."
	e2eQuestion = "What is the secret phrase of the octopus?"
)

// vaultAPI drives the vault through the management proxy like the browser.
type vaultAPI struct {
	t   testing.TB
	c   *api.Client
	env *xtest.Env
}

func (v vaultAPI) json(method, path string, body, out any) {
	v.t.Helper()
	if err := v.c.JSON(context.Background(), method, "/api/v1/me/agent/vault"+path, body, out); err != nil {
		v.t.Fatalf("%s %s: %v", method, path, err)
	}
}

// unlock answers a fresh challenge with k (retrying the challenge while the
// container is still coming up).
func (v vaultAPI) unlock(k crypto.KEK) {
	v.t.Helper()
	var ch struct {
		ChallengeID string `json:"challengeId"`
		Challenge   string `json:"challenge"`
	}
	xtest.Eventually(v.t, 20*time.Second, func() error {
		return v.c.JSON(context.Background(), "POST", "/api/v1/me/agent/vault/unlock/challenge", nil, &ch)
	})
	chb, _ := base64.StdEncoding.DecodeString(ch.Challenge)
	v.json("POST", "/unlock", map[string]string{"challengeId": ch.ChallengeID, "derivedKey": base64.StdEncoding.EncodeToString(k[:]),
		"proof": base64.StdEncoding.EncodeToString(crypto.UnlockProof(&k, chb))}, nil)
}

// wake wakes the container with a real request: a status poll does not
// wake a sleeping container (it answers {"sleeping":true}).
func (v vaultAPI) wake() {
	v.t.Helper()
	if r, err := v.c.Do(context.Background(), "GET", "/api/v1/me/agent/healthz", nil); err != nil || r.Status != 200 {
		v.t.Fatalf("wake: %v %v", r, err)
	}
}

// locked reports whether the vault is locked (waking the container first).
func (v vaultAPI) locked() bool {
	v.t.Helper()
	v.wake()
	var st struct {
		Locked bool `json:"locked"`
	}
	v.json("GET", "/status", nil, &st)
	return st.Locked
}

func (v vaultAPI) deriveKey(password string) crypto.KEK {
	v.t.Helper()
	var p struct {
		Salt string           `json:"salt"`
		KDF  crypto.KDFParams `json:"kdf"`
	}
	v.json("GET", "/params", nil, &p)
	salt, _ := base64.StdEncoding.DecodeString(p.Salt)
	k, err := crypto.DeriveKEK([]byte(password), salt, p.KDF)
	if err != nil {
		v.t.Fatal(err)
	}
	return k
}

type chatWS struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialChat(t *testing.T, env *xtest.Env, c *api.Client) *chatWS {
	t.Helper()
	return chatConnect(t, env.DialChat(c))
}

// chatConnect does the chat protocol's handshake on a freshly opened ws.
func chatConnect(t *testing.T, ws *websocket.Conn) *chatWS {
	t.Helper()
	cw := &chatWS{t: t, ws: ws}
	cw.next() // connect.challenge
	cw.send("c1", "connect", map[string]any{"minProtocol": 3, "maxProtocol": 3,
		"client": map[string]any{"id": "e2e", "version": "1", "platform": "go", "mode": "test"}, "role": "operator", "scopes": []string{}})
	if r := cw.until(func(f map[string]any) bool { return f["id"] == "c1" }); r["ok"] != true {
		t.Fatalf("connect: %v", r)
	}
	return cw
}

func (c *chatWS) send(id, method string, params any) {
	b, _ := json.Marshal(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chatWS) next() map[string]any {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatalf("chat read: %v", err)
	}
	var f map[string]any
	json.Unmarshal(b, &f)
	return f
}

func (c *chatWS) until(match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	for {
		if f := c.next(); match(f) {
			return f
		}
	}
}

// chatOnce sends a message and returns the number of deltas and the final text.
func (c *chatWS) chatOnce(session, msg string) (int, string) {
	c.t.Helper()
	id := "s" + msg[:3]
	c.send(id, "chat.send", map[string]any{"sessionKey": session, "message": msg, "idempotencyKey": id})
	r := c.until(func(f map[string]any) bool { return f["id"] == id })
	if r["ok"] != true {
		c.t.Fatalf("chat.send: %v", r)
	}
	run := r["payload"].(map[string]any)["runId"]
	deltas := 0
	for {
		f := c.until(func(f map[string]any) bool { return f["event"] == "chat" })
		p := f["payload"].(map[string]any)
		if p["runId"] != run {
			continue
		}
		switch p["state"] {
		case "delta":
			deltas++
		case "final":
			m := p["message"].(map[string]any)["content"].([]any)[0].(map[string]any)
			return deltas, m["text"].(string)
		default:
			c.t.Fatalf("run ended %v", p)
		}
	}
}

// runVaultChat is the API-level main job: create a vault with a password the
// server never sees, store a provider key in the container, chat with a
// streamed reply, and find no secret in the platform's files or logs.
func runVaultChat(t *testing.T, env *xtest.Env, fp *fakeprovider.Server, containerFiles func(userID string) map[string][]byte) {
	ctx := context.Background()
	admin, au := env.Admin("alice@example.org")
	if err := admin.ProvisionAgent(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if _, err := admin.WaitAgent(wctx, api.StateRunning); err != nil {
		t.Fatal(err)
	}
	v := vaultAPI{t: t, c: admin, env: env}
	k := v.deriveKey(e2ePassword)
	v.json("POST", "/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(k[:])}, nil)
	fp.SetKey(e2eAPIKey)
	fp.Script(fakeprovider.Reply{Text: e2eReply})
	v.json("PUT", "/apikeys/anthropic", map[string]string{"key": e2eAPIKey, "baseUrl": fp.URL()}, nil)

	// The directory holds the container's verified public keys.
	var keys map[string]any
	if err := admin.JSON(ctx, "GET", "/api/v1/me/keys", nil, &keys); err != nil || !strings.HasPrefix(keys["ed25519"].(string), "ed25519:") {
		t.Fatalf("directory: %v %v", keys, err)
	}
	cw := dialChat(t, env, admin)
	deltas, final := cw.chatOnce("main", e2eQuestion)
	if final != e2eReply || deltas < 2 {
		t.Fatalf("reply %q after %d deltas", final, deltas)
	}
	if got := fp.Requests(); len(got) != 1 || !strings.Contains(string(got[0].Messages), "octopus") {
		t.Fatalf("provider requests: %+v", got)
	}
	// The audit log knows that a provider was configured, not the key.
	var audit struct {
		Events []api.AuditEvent `json:"events"`
	}
	admin.JSON(ctx, "GET", "/api/v1/audit?action=vault.", nil, &audit)
	found := false
	for _, e := range audit.Events {
		found = found || (e.Action == "vault.provider_configured" && e.Detail["provider"] == "anthropic")
	}
	if !found {
		t.Fatalf("no provider_configured audit event: %+v", audit.Events)
	}
	// History survives a container restart: lock, stop, wake (the vault
	// comes back locked: the key was only in memory, and a locked vault
	// gets no hibernation key), unlock, read.
	v.json("POST", "/lock", nil, nil)
	if err := admin.AdminAction(ctx, string(au.ID), api.ActionStop); err != nil {
		t.Fatal(err)
	}
	if !v.locked() {
		t.Fatal("vault unlocked after a container restart")
	}
	v.unlock(k)
	cw = dialChat(t, env, admin)
	cw.send("h1", "chat.history", map[string]any{"sessionKey": "main"})
	h := cw.until(func(f map[string]any) bool { return f["id"] == "h1" })
	if !strings.Contains(fmt.Sprint(h), e2eReply) {
		t.Fatalf("history after restart: %v", h)
	}

	env.Stop() // flush and close everything before reading the bytes

	search := newLeakSearch(t).text("the password", e2ePassword).text("the API key", e2eAPIKey).
		text("the reply", e2eReply).text("the question", e2eQuestion).key("the password KEK", k[:])
	search.platform(env)
	search.files("container ", containerFiles(string(au.ID)))
}

func TestVaultChatProcess(t *testing.T) {
	env := xtest.NewEnv(t)
	fp := fakeprovider.New()
	defer fp.Close()
	runVaultChat(t, env, fp, func(string) map[string][]byte { return nil }) // process data lives in DataDir
}

// dockerEnv starts a server on the Docker runtime and returns it with an
// engine client (closed at the end of the test). Without an engine it
// skips, or fails when CI=true.
func dockerEnv(t *testing.T, opts ...xtest.Option) (*xtest.Env, *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := docker.Ping(ctx)
	cancel()
	if err != nil {
		xtest.SkipOrFail(t, "no Docker engine answers: "+err.Error())
	}
	env := xtest.NewEnv(t, append([]xtest.Option{xtest.WithRuntime(config.RuntimeDocker)}, opts...)...)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return env, cli
}

func TestVaultChatDocker(t *testing.T) {
	ctx := context.Background()
	env, cli := dockerEnv(t)
	// The fake provider listens on the agent network's gateway, the one
	// host address a user container can reach.
	nw, err := cli.NetworkInspect(ctx, env.Cfg.Network, client.NetworkInspectOptions{})
	if err != nil || len(nw.Network.IPAM.Config) == 0 {
		t.Fatalf("inspect network: %v", err)
	}
	gw := nw.Network.IPAM.Config[0].Gateway.String()
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatal(err)
	}
	fp := fakeprovider.NewOn(ln)
	defer fp.Close()
	runVaultChat(t, env, fp, func(uid string) map[string][]byte {
		out := containerData(t, cli, uid)
		if len(out) < 3 {
			t.Errorf("container /data has only %d files; the check would prove nothing", len(out))
		}
		return out
	})
}

// copyContainerDir returns the files under dir of a container (a stopped
// one too), by name as the tar stream gives it.
func copyContainerDir(t *testing.T, cli *client.Client, container, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	res, err := cli.CopyFromContainer(context.Background(), container, client.CopyFromContainerOptions{SourcePath: dir})
	if err != nil {
		t.Errorf("copy %s: %v", dir, err)
		return out
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = b
	}
	return out
}

// TestDirectoryLookup: a signed-in user finds another user's verified keys
// by exact address; unknown addresses and users without keys look the same.
func TestDirectoryLookup(t *testing.T) {
	env := xtest.NewEnv(t)
	ctx := context.Background()
	alice, _ := env.Admin("alice@example.org")
	bob, bu := env.Invite(alice, "bob@example.org")
	carol, _ := env.Invite(alice, "carol@example.org") // no vault, no keys
	_ = carol
	bob.ProvisionAgent(ctx)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := bob.WaitAgent(wctx, api.StateRunning); err != nil {
		t.Fatal(err)
	}
	v := vaultAPI{t: t, c: bob, env: env}
	k := v.deriveKey("bob's long password")
	v.json("POST", "/init", map[string]string{"derivedKey": base64.StdEncoding.EncodeToString(k[:])}, nil)

	var got map[string]any
	if err := alice.JSON(ctx, "GET", "/api/v1/directory?email=Bob@Example.org", nil, &got); err != nil {
		t.Fatal(err)
	}
	if got["userId"] != bu.ID || !strings.HasPrefix(got["ed25519"].(string), "ed25519:") {
		t.Fatalf("lookup: %v", got)
	}
	r1, _ := alice.Do(ctx, "GET", "/api/v1/directory?email=nobody@example.org", nil)
	r2, _ := alice.Do(ctx, "GET", "/api/v1/directory?email=carol@example.org", nil)
	if r1.Status != 404 || r2.Status != 404 || string(r1.Body) != string(r2.Body) {
		t.Fatalf("unknown vs keyless differ: %d %s / %d %s", r1.Status, r1.Body, r2.Status, r2.Body)
	}
	if r, _ := alice.Do(ctx, "GET", "/api/v1/directory?email=bob", nil); r.Status != 400 {
		t.Fatalf("partial address: %d", r.Status)
	}
	if r, _ := env.Client().Do(ctx, "GET", "/api/v1/directory?email=bob@example.org", nil); r.Status != 401 {
		t.Fatalf("anonymous lookup: %d", r.Status)
	}
}

// TestRepairKeepsVaultUnlocked: an admin's repair recreates the container
// (keeping its volume), and an unlocked vault that still answered comes
// back unlocked, like a hibernated one.
func TestRepairKeepsVaultUnlocked(t *testing.T) {
	env := xtest.NewEnv(t)
	admin, au := env.Admin("admin@example.org")
	v := readyVault(t, env, admin, e2ePassword)
	if v.locked() {
		t.Fatal("a new vault starts unlocked")
	}
	if err := admin.AdminAction(context.Background(), string(au.ID), api.ActionRepair); err != nil {
		t.Fatal(err)
	}
	if v.locked() {
		t.Fatal("repair locked the vault")
	}
}
