package relay

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
	"github.com/ocmt/ocmt/store"
)

// TestSendDeliverAck: Alice's sealed envelope reaches connected Bob, who
// opens it and acks it; then it is gone from the store.
func TestSendDeliverAck(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	ca, cb := e.connect(alice), e.connect(bob)

	env := seal(t, alice, bob, []byte("hello bob"), e.clock.Now())
	env.Header.JTI = newID()
	ca.send(env)

	d := cb.expect(FrameDeliver)
	if d.Envelope == nil || d.Envelope.Header != env.Header {
		t.Fatalf("delivered header %+v, want %+v", d.Envelope, env.Header)
	}
	apub := alice.key.Public().X25519
	msg, err := bob.key.OpenBox(&apub, d.Envelope.Payload)
	if err != nil || string(msg) != "hello bob" {
		t.Fatalf("open: %q, %v", msg, err)
	}
	if n := e.queued(bob); n != 1 {
		t.Fatalf("queued before ack = %d, want 1", n)
	}
	// Only the recipient may ack.
	ca.write(Frame{Type: FrameAck, ID: env.Header.ID})
	ca.expectError(CodeNotFound)
	cb.write(Frame{Type: FrameAck, ID: env.Header.ID})
	if f := cb.expect(FrameAcked); f.ID != env.Header.ID {
		t.Fatalf("acked %q", f.ID)
	}
	if n := e.queued(bob); n != 0 {
		t.Fatalf("queued after ack = %d, want 0", n)
	}
	// A connected recipient is nudged once per delivery (a paused
	// container keeps its socket but must be unpaused to read it).
	deadline := time.Now().Add(2 * time.Second)
	for e.waker.count(bob.id) != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := e.waker.count(bob.id); n != 1 {
		t.Fatalf("nudged a connected recipient %d times, want 1", n)
	}
}

// TestAuthRefused: wrong key, a signature over another nonce, an unknown
// user and other bad first frames get auth_failed and close 1008.
func TestAuthRefused(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa")
	eve := e.newUser("usr_eve") // in the directory, but not a user id's shape
	mallory, _ := crypto.NewIdentity()
	otherNonce := make([]byte, NonceSize)
	sign := func(k *crypto.Identity, nonce []byte, u string) string {
		return base64.RawURLEncoding.EncodeToString(k.Sign(AuthMessage(nonce, u)))
	}
	cases := []struct {
		name  string
		frame func(nonce []byte) any
	}{
		{"wrong key", func(n []byte) any { return Frame{Type: FrameAuth, User: alice.id, Sig: sign(mallory, n, alice.id)} }},
		{"other nonce", func(n []byte) any {
			return Frame{Type: FrameAuth, User: alice.id, Sig: sign(alice.key, otherNonce, alice.id)}
		}},
		{"other user in message", func(n []byte) any {
			return Frame{Type: FrameAuth, User: alice.id, Sig: sign(alice.key, n, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa")}
		}},
		{"unknown user", func(n []byte) any {
			return Frame{Type: FrameAuth, User: "usr_nobodyaaaaaaaaaaaaaaaaaaaa", Sig: sign(alice.key, n, "usr_nobodyaaaaaaaaaaaaaaaaaaaa")}
		}},
		{"user id of the wrong shape", func(n []byte) any { return Frame{Type: FrameAuth, User: eve.id, Sig: sign(eve.key, n, eve.id)} }},
		{"bad sig encoding", func(n []byte) any { return Frame{Type: FrameAuth, User: alice.id, Sig: "!!"} }},
		{"no sig", func(n []byte) any { return Frame{Type: FrameAuth, User: alice.id} }},
		{"send before auth", func(n []byte) any { return Frame{Type: FrameSend} }},
		{"not json", func(n []byte) any { return "auth" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial()
			c.t = t
			ch := c.expect(FrameChallenge)
			nonce, _ := base64.RawURLEncoding.DecodeString(ch.Nonce)
			c.write(tc.frame(nonce))
			c.expectError(CodeAuthFailed)
			_, err := c.tryRead(5 * time.Second)
			if st := websocket.CloseStatus(err); st != websocket.StatusPolicyViolation {
				t.Fatalf("close status %v (%v), want 1008", st, err)
			}
		})
	}
}

// TestOfflineQueueWakeRedeliver: envelopes for offline Bob are kept,
// Bob is woken once, and they are delivered (again, until acked) on every
// connection, across a relay restart.
func TestOfflineQueueWakeRedeliver(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	ca := e.connect(alice)
	e1 := seal(t, alice, bob, []byte("one"), e.clock.Now())
	e2 := seal(t, alice, bob, []byte("two"), e.clock.Now())
	ca.send(e1)
	ca.send(e2)
	eventually(t, "wake", func() bool { return e.waker.count(bob.id) >= 1 })
	time.Sleep(50 * time.Millisecond)
	if n := e.waker.count(bob.id); n != 1 {
		t.Fatalf("woke bob %d times, want 1", n)
	}
	if n := e.queued(bob); n != 2 {
		t.Fatalf("queued = %d, want 2", n)
	}

	receive := func(cb *client) {
		t.Helper()
		for _, want := range []Envelope{e1, e2} {
			d := cb.expect(FrameDeliver)
			if d.Envelope.Header.ID != want.Header.ID {
				t.Fatalf("delivered %s, want %s (oldest first)", d.Envelope.Header.ID, want.Header.ID)
			}
		}
		cb.expectNothing(50 * time.Millisecond)
	}
	cb := e.connect(bob)
	receive(cb)
	cb.ws.Close(websocket.StatusNormalClosure, "")
	receive(e.connect(bob)) // not acked: delivered again

	e.restart()
	cb = e.connect(bob)
	receive(cb)
	for _, env := range []Envelope{e1, e2} {
		cb.write(Frame{Type: FrameAck, ID: env.Header.ID})
		cb.expect(FrameAcked)
	}
	if n := e.queued(bob); n != 0 {
		t.Fatalf("queued after acks = %d", n)
	}
	cb.ws.Close(websocket.StatusNormalClosure, "")
	e.connect(bob).expectNothing(50 * time.Millisecond)
}

// TestReplaced: a second connection of the same user closes the first
// with 4000 and receives the deliveries.
func TestReplaced(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	first := e.connect(bob)
	second := e.connect(bob)
	_, err := first.tryRead(5 * time.Second)
	if st := websocket.CloseStatus(err); st != StatusReplaced {
		t.Fatalf("first connection closed with %v (%v), want 4000", st, err)
	}
	env := seal(t, alice, bob, []byte("x"), e.clock.Now())
	e.connect(alice).send(env)
	if d := second.expect(FrameDeliver); d.Envelope.Header.ID != env.Header.ID {
		t.Fatal("wrong envelope")
	}
}

// TestSendRefused: each header/payload check has its own code, carries
// the envelope id, and nothing is stored.
func TestSendRefused(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPayloadBytes = 1024 })
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	carol := e.newUser("usr_carolaaaaaaaaaaaaaaaaaaaaa")
	ca := e.connect(alice)
	dup := seal(t, alice, bob, []byte("dup"), e.clock.Now())
	ca.send(dup)
	cases := []struct {
		name  string
		edit  func(*Envelope)
		code  string
		hasID bool
	}{
		{"from is someone else", func(v *Envelope) { v.Header.From = carol.id }, CodeNotSender, true},
		{"oversized payload", func(v *Envelope) { v.Payload = make([]byte, 1025) }, CodeTooLarge, true},
		{"empty payload", func(v *Envelope) { v.Payload = nil }, CodeBadEnvelope, true},
		{"stale ts", func(v *Envelope) { v.Header.TS = e.clock.Now().Add(-6 * time.Minute).UnixMilli() }, CodeBadTimestamp, true},
		{"future ts", func(v *Envelope) { v.Header.TS = e.clock.Now().Add(6 * time.Minute).UnixMilli() }, CodeBadTimestamp, true},
		{"zero ts", func(v *Envelope) { v.Header.TS = 0 }, CodeBadTimestamp, true},
		{"short id", func(v *Envelope) { v.Header.ID = "abc" }, CodeBadEnvelope, false},
		{"padded id", func(v *Envelope) { v.Header.ID = v.Header.ID[:20] + "==" }, CodeBadEnvelope, false},
		{"bad to", func(v *Envelope) { v.Header.To = "usr bob" }, CodeBadEnvelope, true},
		{"to not a user id shape", func(v *Envelope) { v.Header.To = "usr_bob" }, CodeBadEnvelope, true},
		{"to traversal", func(v *Envelope) { v.Header.To = "..%2f..%2fetc" }, CodeBadEnvelope, true},
		{"to network name", func(v *Envelope) { v.Header.To = "ocmt-agents" }, CodeBadEnvelope, true},
		{"to upper case", func(v *Envelope) { v.Header.To = "usr_" + strings.Repeat("A", 26) }, CodeBadEnvelope, true},
		{"bad type", func(v *Envelope) { v.Header.Type = "Capability Request" }, CodeBadEnvelope, true},
		{"bad jti", func(v *Envelope) { v.Header.JTI = "nope" }, CodeBadEnvelope, true},
		{"unknown recipient", func(v *Envelope) { v.Header.To = "usr_nobodyaaaaaaaaaaaaaaaaaaaa" }, CodeUnknownRecipient, true},
		{"duplicate id", func(v *Envelope) { v.Header.ID = dup.Header.ID }, CodeDuplicateID, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca.t = t
			v := seal(t, alice, bob, []byte("payload"), e.clock.Now())
			tc.edit(&v)
			ca.write(Frame{Type: FrameSend, Envelope: &v})
			f := ca.expectError(tc.code)
			if tc.hasID && f.ID != v.Header.ID {
				t.Fatalf("error id %q, want %q", f.ID, v.Header.ID)
			}
		})
	}
	ca.t = t
	if n := e.queued(bob); n != 1 {
		t.Fatalf("queued = %d, want only the first envelope", n)
	}
}

// TestRateLimit: the 101st envelope within an hour is refused with
// retryAfterMs; after that wait a token is back.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	ca := e.connect(alice)
	for i := 0; i < DefaultRatePerHour; i++ {
		ca.send(seal(t, alice, bob, []byte("m"), e.clock.Now()))
		e.clock.Advance(time.Second / 10) // 10 s in all: no whole token refilled
	}
	v := seal(t, alice, bob, []byte("m"), e.clock.Now())
	ca.write(Frame{Type: FrameSend, Envelope: &v})
	f := ca.expectError(CodeRateLimited)
	if f.ID != v.Header.ID || f.RetryAfterMs <= 0 || f.RetryAfterMs > 36_000 {
		t.Fatalf("rate_limited frame %+v, want id and 0 < retryAfterMs ≤ 36000", f)
	}
	// Carol is not limited by Alice's use.
	carol := e.newUser("usr_carolaaaaaaaaaaaaaaaaaaaaa")
	e.connect(carol).send(seal(t, carol, bob, []byte("m"), e.clock.Now()))
	e.clock.Advance(time.Duration(f.RetryAfterMs) * time.Millisecond)
	ca.send(seal(t, alice, bob, []byte("m"), e.clock.Now()))
	if n := e.queued(bob); n != DefaultRatePerHour+2 {
		t.Fatalf("queued = %d", n)
	}
}

// TestQueueCap: over MaxQueuedPerRecipient the oldest are dropped with a
// metadata log line; expired envelopes are not delivered and are swept.
func TestQueueCap(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxQueuedPerRecipient = 3; o.EnvelopeTTL = time.Hour })
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	ca := e.connect(alice)
	var sent []Envelope
	for i := 0; i < 5; i++ {
		v := seal(t, alice, bob, []byte("m"), e.clock.Now())
		ca.send(v)
		sent = append(sent, v)
	}
	if n := e.queued(bob); n != 3 {
		t.Fatalf("queued = %d, want 3", n)
	}
	for _, v := range sent[:2] {
		if !strings.Contains(e.logs.String(), "dropped oldest envelope\" id="+v.Header.ID) {
			t.Fatalf("no drop log line for %s:\n%s", v.Header.ID, e.logs.String())
		}
	}
	cb := e.connect(bob)
	for _, v := range sent[2:] {
		if d := cb.expect(FrameDeliver); d.Envelope.Header.ID != v.Header.ID {
			t.Fatalf("delivered %s, want %s", d.Envelope.Header.ID, v.Header.ID)
		}
	}
	cb.ws.Close(websocket.StatusNormalClosure, "")
	e.clock.Advance(time.Hour)
	e.connect(bob).expectNothing(50 * time.Millisecond)
	if n, err := e.st.DeleteExpiredEnvelopes(context.Background()); err != nil || n != 3 {
		t.Fatalf("swept %d, %v; want 3", n, err)
	}
}

// TestRevocation: a fresh revocation signed by the issuer is accepted and
// then blocks envelopes carrying its jti, also after a restart (Bloom
// filter rebuilt from the table); bad revocations get distinct codes.
func TestRevocation(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	ca, cb := e.connect(alice), e.connect(bob)
	jti, _ := capability.NewJTI()
	now := e.clock.Now()
	revoke := func(c *client, signer *crypto.Identity, issuer string, ts time.Time) {
		t.Helper()
		r, err := capability.SignRevocation(signer, jti, "no longer shared", ts)
		if err != nil {
			t.Fatal(err)
		}
		c.write(Frame{Type: FrameRevoke, Revocation: &r, Issuer: issuer})
	}
	aliceKey := alice.key.Public().Ed25519Text()

	revoke(ca, bob.key, aliceKey, now) // signed by someone else
	ca.expectError(CodeRevocationSignature)
	revoke(cb, bob.key, aliceKey, now) // issuer is not the sender's key
	cb.expectError(CodeRevocationSignature)
	revoke(cb, alice.key, aliceKey, now) // Alice's revocation replayed by Bob
	cb.expectError(CodeRevocationSignature)
	revoke(ca, alice.key, aliceKey, now.Add(-6*time.Minute))
	ca.expectError(CodeRevocationStale)
	revoke(ca, alice.key, aliceKey, now.Add(6*time.Minute))
	ca.expectError(CodeRevocationFuture)
	ca.write(Frame{Type: FrameRevoke, Revocation: &capability.Revocation{Revocation: "e30", Sig: "x"}, Issuer: aliceKey})
	ca.expectError(CodeRevocationMalformed)
	ca.write(Frame{Type: FrameRevoke, Issuer: aliceKey})
	ca.expectError(CodeRevocationMalformed)

	// Not yet revoked: an envelope carrying the jti passes.
	v := seal(t, alice, bob, []byte("m"), now)
	v.Header.JTI = jti.String()
	ca.send(v)
	cb.expect(FrameDeliver)

	revoke(ca, alice.key, aliceKey, now.Add(-4*time.Minute))
	if f := ca.expect(FrameRevoked); f.JTI != jti.String() {
		t.Fatalf("revoked %q", f.JTI)
	}
	refused := func(c *client, from, to *user) {
		t.Helper()
		v := seal(t, from, to, []byte("m"), e.clock.Now())
		v.Header.JTI = jti.String()
		c.write(Frame{Type: FrameSend, Envelope: &v})
		if f := c.expectError(CodeCapabilityRevoked); f.ID != v.Header.ID {
			t.Fatalf("error id %q", f.ID)
		}
	}
	refused(ca, alice, bob)
	refused(cb, bob, alice) // whoever carries it
	other := seal(t, alice, bob, []byte("m"), now)
	other.Header.JTI = newID()
	ca.send(other)

	e.restart()
	if !e.srv.revoked.mayContain(jti.String()) {
		t.Fatal("Bloom filter not rebuilt from the table")
	}
	refused(e.connect(alice), alice, bob)
}

// TestBlocklistGrow: past its sizing the Bloom filter is rebuilt larger
// and still answers every revoked jti (no false negatives).
func TestBlocklistGrow(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	b := e.srv.revoked
	b.mu.Lock()
	b.capacity = 10
	b.mu.Unlock()
	var jtis []string
	for i := 0; i < 25; i++ {
		j := newID()
		jtis = append(jtis, j)
		if _, err := e.st.PutRevocation(ctx, store.RelayRevocation{JTI: j, IssuerUser: "usr_xaaaaaaaaaaaaaaaaaaaaaaaaa", Issuer: "ed25519:x"}); err != nil {
			t.Fatal(err)
		}
		if b.add(j) {
			if err := b.rebuild(ctx, e.st); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.mu.RLock()
	capacity := b.capacity
	b.mu.RUnlock()
	if capacity < 25 {
		t.Fatalf("capacity %d after 25 entries", capacity)
	}
	for _, j := range jtis {
		if r, err := e.srv.revocationFor(ctx, j, "usr_yaaaaaaaaaaaaaaaaaaaaaaaaa", "usr_xaaaaaaaaaaaaaaaaaaaaaaaaa"); err != nil || r == nil {
			t.Fatalf("%s not revoked: %v", j, err)
		}
	}
	if r, _ := e.srv.revocationFor(ctx, newID(), "usr_xaaaaaaaaaaaaaaaaaaaaaaaaa"); r != nil {
		t.Fatal("fresh jti reported revoked")
	}
}

// TestNoPlaintextAtRest: neither the database files nor the logs contain
// a payload's plaintext or its base64.
func TestNoPlaintextAtRest(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	marker := []byte("MARKER-7f3a9c-the-secret-plaintext-MARKER")
	ca := e.connect(alice)
	ca.send(seal(t, alice, bob, marker, e.clock.Now()))
	cb := e.connect(bob)
	cb.expect(FrameDeliver) // not acked: stays on disk
	e.restart()             // checkpoints nothing away: the WAL is read too

	needles := [][]byte{marker,
		[]byte(base64.StdEncoding.EncodeToString(marker)),
		[]byte(base64.RawStdEncoding.EncodeToString(marker)),
		[]byte(base64.RawURLEncoding.EncodeToString(marker)),
	}
	var files [][]byte
	for _, p := range []string{e.dbPath, e.dbPath + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	if n := e.queued(bob); n != 1 {
		t.Fatalf("queued = %d; the test must look at a stored envelope", n)
	}
	logs := []byte(e.logs.String())
	if !bytes.Contains(logs, []byte("relay envelope accepted")) {
		t.Fatalf("expected metadata log lines, got:\n%s", logs)
	}
	for _, n := range needles {
		for i, f := range files {
			if bytes.Contains(f, n) {
				t.Fatalf("database file %d contains %q", i, n)
			}
		}
		if bytes.Contains(logs, n) {
			t.Fatalf("logs contain %q", n)
		}
	}
}

// TestMalformedFrames: junk never crashes the relay or closes the
// connection; each frame gets exactly one error frame.
func TestMalformedFrames(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	ca := e.connect(alice)
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	frames := []string{
		``, `{`, `null`, `[]`, `42`, `"send"`, `{}`, `{"type":5}`, `{"type":"nope"}`, `{"type":"ready"}`,
		`{"type":"auth","user":"usr_aliceaaaaaaaaaaaaaaaaaaaaa","sig":"x"}`,
		`{"type":"send"}`, `{"type":"send","envelope":null}`, `{"type":"send","envelope":{}}`,
		`{"type":"send","envelope":{"header":1}}`, `{"type":"send","envelope":{"header":{},"payload":"!!!"}}`,
		`{"type":"send","envelope":{"header":{"id":"AAAAAAAAAAAAAAAAAAAAAA","from":"usr_aliceaaaaaaaaaaaaaaaaaaaaa","to":"usr_bobaaaaaaaaaaaaaaaaaaaaaaa","ts":1e300,"type":"x"},"payload":"AAAA"}}`,
		`{"type":"send","envelope":{"header":{"id":"AAAAAAAAAAAAAAAAAAAAAA","from":"usr_aliceaaaaaaaaaaaaaaaaaaaaa","to":"usr_bobaaaaaaaaaaaaaaaaaaaaaaa","ts":-1,"type":"x"},"payload":"AAAA"}}`,
		`{"type":"send","envelope":{"header":{"id":"AAAAAAAAAAAAAAAAAAAAAA","from":"usr_aliceaaaaaaaaaaaaaaaaaaaaa","to":"usr_bobaaaaaaaaaaaaaaaaaaaaaaa","ts":1,"type":"x"},"payload":null}}`,
		`{"type":"ack"}`, `{"type":"ack","id":"AAAAAAAAAAAAAAAAAAAAAA"}`, `{"type":"ack","id":["x"]}`,
		`{"type":"revoke"}`, `{"type":"revoke","revocation":{"revocation":"x","sig":"y"},"issuer":"ed25519:x"}`,
		`{"type":"revoke","revocation":"x","issuer":"x"}`,
		`{"type":"snapshot.put"}`, `{"type":"snapshot.put","jti":"AAAAAAAAAAAAAAAAAAAAAA","token":"ocap1.x.y","blob":"AA=="}`,
		`{"type":"snapshot.get"}`, `{"type":"snapshot.get","jti":"AAAAAAAAAAAAAAAAAAAAAA"}`, `{"type":"snapshot.delete","jti":"x"}`,
		"\xff\xfe", `{"type":"send","type":"ack"}`, deep, strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100),
	}
	for _, fr := range frames {
		ca.writeRaw(websocket.MessageText, []byte(fr))
		if f := ca.read(); f.Type != FrameError || f.Code == "" {
			t.Fatalf("frame %.40q: got %+v, want an error frame", fr, f)
		}
	}
	ca.writeRaw(websocket.MessageBinary, []byte(`{"type":"ack"}`))
	ca.expectError(CodeBadFrame)
	ca.expectNothing(50 * time.Millisecond)
	// Still serving.
	ca.send(seal(t, alice, bob, []byte("still here"), e.clock.Now()))

	// A frame over the read limit closes the connection with 1009.
	ca.writeRaw(websocket.MessageText, bytes.Repeat([]byte("a"), int(e.srv.readLimit)+1))
	_, err := ca.tryRead(5 * time.Second)
	if st := websocket.CloseStatus(err); st != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v (%v), want 1009", st, err)
	}
	e.connect(alice).send(seal(t, alice, bob, []byte("again"), e.clock.Now()))
}

// TestSnapshot: the cached tier: the issuer puts, the subject gets (and
// verifies the issuer's signature), nobody else can read or replace it,
// and revocation deletes it.
func TestSnapshot(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob, carol := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_carolaaaaaaaaaaaaaaaaaaaaa")
	ca, cb, cc := e.connect(alice), e.connect(bob), e.connect(carol)
	now := e.clock.Now()
	issue := func(tier capability.Tier) (string, capability.JTI) {
		jti, _ := capability.NewJTI()
		tok, err := capability.Issue(alice.key, capability.Claims{
			JTI: jti, Subject: bob.key.Public().Ed25519, Audience: "ctr_alice", Resource: "calendar",
			Scope: []capability.Op{capability.OpRead}, IssuedAt: now, Expires: now.Add(24 * time.Hour), Tier: tier,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok, jti
	}
	tok, jti := issue(capability.TierCached)
	bpub := bob.key.Public().X25519
	blob, _ := alice.key.SealBox(&bpub, []byte("calendar snapshot"))
	sig := base64.RawURLEncoding.EncodeToString(alice.key.Sign(SnapshotMessage(jti, blob)))
	put := Frame{Type: FrameSnapshotPut, JTI: jti.String(), Token: tok, Blob: blob, Sig: sig}

	cb.write(put) // Bob holds the token but is not its issuer
	cb.expectError(CodeNotIssuer)
	bad := put
	bad.Sig = base64.RawURLEncoding.EncodeToString(bob.key.Sign(SnapshotMessage(jti, blob)))
	ca.write(bad)
	ca.expectError(CodeSnapshotSignature)
	liveTok, liveJTI := issue(capability.TierLive)
	ca.write(Frame{Type: FrameSnapshotPut, JTI: liveJTI.String(), Token: liveTok, Blob: blob, Sig: sig})
	ca.expectError(CodeBadFrame)

	ca.write(put)
	ca.expect(FrameSnapshotStored)
	cb.write(Frame{Type: FrameSnapshotGet, JTI: jti.String()})
	got := cb.expect(FrameSnapshot)
	issuer, _ := crypto.ParseEd25519(got.Issuer)
	gsig, _ := base64.RawURLEncoding.DecodeString(got.Sig)
	if !issuer.Equal(alice.key.Public().Ed25519) || !crypto.Verify(issuer, SnapshotMessage(jti, got.Blob), gsig) {
		t.Fatal("snapshot does not verify as Alice's")
	}
	apub := alice.key.Public().X25519
	if m, err := bob.key.OpenBox(&apub, got.Blob); err != nil || string(m) != "calendar snapshot" {
		t.Fatalf("open snapshot: %q %v", m, err)
	}
	cc.write(Frame{Type: FrameSnapshotGet, JTI: jti.String()})
	cc.expectError(CodeNotFound)
	cb.write(Frame{Type: FrameSnapshotDelete, JTI: jti.String()})
	cb.expectError(CodeNotFound)

	r, _ := capability.SignRevocation(alice.key, jti, "", now)
	ca.write(Frame{Type: FrameRevoke, Revocation: &r, Issuer: alice.key.Public().Ed25519Text()})
	ca.expect(FrameRevoked)
	cb.write(Frame{Type: FrameSnapshotGet, JTI: jti.String()})
	cb.expectError(CodeNotFound)
	ca.write(put)
	ca.expectError(CodeCapabilityRevoked)

	// Delete by the issuer.
	tok2, jti2 := issue(capability.TierCached)
	put2 := Frame{Type: FrameSnapshotPut, JTI: jti2.String(), Token: tok2, Blob: blob,
		Sig: base64.RawURLEncoding.EncodeToString(alice.key.Sign(SnapshotMessage(jti2, blob)))}
	ca.write(put2)
	ca.expect(FrameSnapshotStored)
	ca.write(Frame{Type: FrameSnapshotDelete, JTI: jti2.String()})
	ca.expect(FrameSnapshotDeleted)
	cb.write(Frame{Type: FrameSnapshotGet, JTI: jti2.String()})
	cb.expectError(CodeNotFound)
}

// TestBacklogPaging: a backlog longer than one page is delivered whole,
// in order.
func TestBacklogPaging(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	ca := e.connect(alice)
	var ids []string
	for i := 0; i < 2*backlogPage+5; i++ {
		v := seal(t, alice, bob, []byte("m"), e.clock.Now())
		ca.send(v)
		ids = append(ids, v.Header.ID)
	}
	cb := e.connect(bob)
	for i, id := range ids {
		if d := cb.expect(FrameDeliver); d.Envelope.Header.ID != id {
			t.Fatalf("delivery %d is %s, want %s", i, d.Envelope.Header.ID, id)
		}
	}
	cb.expectNothing(50 * time.Millisecond)
}

// TestCloseGoingAway: Server.Close disconnects clients with 1001 and
// keeps their queues.
func TestCloseGoingAway(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	ca := e.connect(alice)
	ca.send(seal(t, alice, bob, []byte("m"), e.clock.Now()))
	e.stop()
	_, err := ca.tryRead(5 * time.Second)
	if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
		t.Fatalf("close status %v (%v), want 1001", st, err)
	}
	if n := e.queued(bob); n != 1 {
		t.Fatalf("queued = %d", n)
	}
}

// TestCallsToUnavailableRecipientFailFast: a recipient that stays offline
// after its wake (a locked vault cannot authenticate) has its queued calls
// dropped, and the waiting sender is told at once, naming the envelope;
// other envelopes stay queued; further calls are refused at once until
// the recipient connects.
func TestCallsToUnavailableRecipientFailFast(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ConnectGrace = 200 * time.Millisecond })
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	bc := e.connect(bob)

	call := seal(t, bob, alice, []byte("call"), e.clock.Now())
	call.Header.Type = api.RelayTypeCall
	grant := seal(t, bob, alice, []byte("grant"), e.clock.Now())
	grant.Header.Type = "capability.grant"
	bc.send(grant)
	bc.send(call)
	start := time.Now()
	f := bc.expectError(CodeRecipientUnavailable)
	if f.ID != call.Header.ID {
		t.Fatalf("error names %q, want the call's envelope %q", f.ID, call.Header.ID)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("caller told after %v", d)
	}
	if n := e.queued(alice); n != 1 {
		t.Fatalf("queued for alice: %d, want the grant only", n)
	}
	if e.waker.count("usr_aliceaaaaaaaaaaaaaaaaaaaaa") != 1 {
		t.Fatalf("wakes: %d", e.waker.count("usr_aliceaaaaaaaaaaaaaaaaaaaaa"))
	}

	// The next call is refused at once, without being stored.
	again := seal(t, bob, alice, []byte("call 2"), e.clock.Now())
	again.Header.Type = api.RelayTypeCall
	bc.write(Frame{Type: FrameSend, Envelope: &again})
	if f := bc.expectError(CodeRecipientUnavailable); f.ID != again.Header.ID {
		t.Fatalf("second call: %+v", f)
	}
	if n := e.queued(alice); n != 1 {
		t.Fatalf("queued after refusal: %d", n)
	}

	// Once alice connects (unlocked), calls are accepted and delivered.
	ac := e.connect(alice)
	ac.expect(FrameDeliver) // the grant
	third := seal(t, bob, alice, []byte("call 3"), e.clock.Now())
	third.Header.Type = api.RelayTypeCall
	bc.send(third)
	if f := ac.expect(FrameDeliver); f.Envelope.Header.ID != third.Header.ID {
		t.Fatalf("delivered %+v", f.Envelope.Header)
	}
}

// TestWakeAgainAfterQuickStop: a recipient that connects after its wake and
// is stopped again at once (hibernation) counts as reached, and a call
// that arrived while that wake ran wakes it again, instead of failing as
// recipient_unavailable or waiting for nothing.
func TestWakeAgainAfterQuickStop(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ConnectGrace = 300 * time.Millisecond })
	alice, bob := e.newUser("usr_aliceaaaaaaaaaaaaaaaaaaaaa"), e.newUser("usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	bc := e.connect(bob)
	second := seal(t, bob, alice, []byte("call 2"), e.clock.Now())
	second.Header.Type = api.RelayTypeCall
	delivered := make(chan string, 4)
	e.waker.onWake = func(user string, n int) {
		ac := e.connect(alice)
		if n == 1 { // serve briefly, then stop; meanwhile Bob calls again
			ac.ws.CloseNow()
			eventually(t, "alice disconnected", func() bool { return e.srv.connFor(alice.id) == nil })
			bc.send(second)
			return
		}
		go func() {
			for {
				f, err := ac.tryRead(5 * time.Second)
				if err != nil {
					return
				}
				if f.Type == FrameDeliver {
					delivered <- f.Envelope.Header.ID
					ac.write(Frame{Type: FrameAck, ID: f.Envelope.Header.ID})
				}
			}
		}()
	}
	first := seal(t, bob, alice, []byte("call 1"), e.clock.Now())
	first.Header.Type = api.RelayTypeCall
	bc.send(first)
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case id := <-delivered:
			got[id] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("delivered %v after %d wakes; want both calls", got, e.waker.count(alice.id))
		}
	}
	if !got[second.Header.ID] || e.waker.count(alice.id) != 2 {
		t.Fatalf("delivered %v, wakes %d", got, e.waker.count(alice.id))
	}
	bc.expectNothing(500 * time.Millisecond) // no recipient_unavailable
}

// TestBrowserOriginRefused: the relay is for vaults, which send no Origin;
// a request from a web page (any Origin, the relay's own host included, any
// scheme) is refused before the upgrade, and the refusal is logged.
func TestBrowserOriginRefused(t *testing.T) {
	e := newEnv(t, nil)
	host := strings.TrimPrefix(e.http.URL, "http://")
	for _, origin := range []string{"http://" + host, "https://" + host, "https://evil.example", "null"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ws, resp, err := websocket.Dial(ctx, "ws://"+host+"/relay/v1/connect", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}})
		cancel()
		if err == nil {
			ws.CloseNow()
			t.Errorf("Origin %q: upgraded", origin)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("Origin %q: %v %v, want 403", origin, resp, err)
		}
	}
	if n := strings.Count(e.logs.String(), "origin refused"); n != 4 {
		t.Errorf("%d refusals logged, want 4:\n%s", n, e.logs.String())
	}
	// Same fields as the management role's line (README "Origins"):
	// kind, method, path, origin, ip, request_id.
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if !strings.Contains(l, "origin refused") {
			continue
		}
		for _, f := range []string{"kind=relay", "method=GET", "path=/relay/v1/connect", "origin=", "ip=", "request_id="} {
			if !strings.Contains(l, f) {
				t.Errorf("refusal line lacks %s: %s", f, l)
			}
		}
	}
	e.dial().ws.CloseNow() // a vault (no Origin) still connects
}
