package vault

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/crypto"
)

// Replay and binding of sealed envelopes (issue 8, item 2): the relay
// reads and stores envelope headers and could rewrite them; what the
// vaults act on must come from the sealed payload.

// relayOperator is what whoever runs the relay can do to its database:
// read the queued envelopes (a trigger copies every one into "captured",
// since acknowledged ones are deleted) and queue envelopes of its own.
type relayOperator struct {
	t  *testing.T
	db *sql.DB
}

func newRelayOperator(t *testing.T, dbPath string) *relayOperator {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{
		`CREATE TABLE captured (id TEXT, sender TEXT, recipient TEXT, ts INTEGER, type TEXT, jti TEXT, payload BLOB)`,
		`CREATE TRIGGER capture AFTER INSERT ON relay_envelopes BEGIN
			INSERT INTO captured VALUES (NEW.id, NEW.sender, NEW.recipient, NEW.ts, NEW.type, NEW.jti, NEW.payload); END`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return &relayOperator{t: t, db: db}
}

// last returns the latest captured envelope of type typ.
func (o *relayOperator) last(typ string) api.RelayEnvelope {
	o.t.Helper()
	var e api.RelayEnvelope
	err := o.db.QueryRow(`SELECT id, sender, recipient, ts, type, jti, payload FROM captured WHERE type = ? ORDER BY rowid DESC LIMIT 1`, typ).
		Scan(&e.Header.ID, &e.Header.From, &e.Header.To, &e.Header.TS, &e.Header.Type, &e.Header.JTI, &e.Payload)
	if err != nil {
		o.t.Fatalf("no captured %s: %v", typ, err)
	}
	return e
}

// inject queues e for its recipient, as the relay's own send path would.
func (o *relayOperator) inject(e api.RelayEnvelope) {
	o.t.Helper()
	now := time.Now().UnixMilli()
	_, err := o.db.Exec(`INSERT INTO relay_envelopes(id, seq, sender, recipient, ts, type, jti, payload, created_at, expires_at)
		VALUES(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM relay_envelopes), ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Header.ID, e.Header.From, e.Header.To, e.Header.TS, e.Header.Type, e.Header.JTI, e.Payload, now, now+3600_000)
	if err != nil {
		o.t.Fatal(err)
	}
}

// waitAcked waits until the recipient has processed and acknowledged id.
func (o *relayOperator) waitAcked(id string) {
	o.t.Helper()
	waitFor(o.t, "the envelope to be acknowledged", 10*time.Second, func() bool {
		var n int
		o.db.QueryRow(`SELECT COUNT(*) FROM relay_envelopes WHERE id = ?`, id).Scan(&n)
		return n == 0
	})
}

// dropRelay closes v's relay connection; it reconnects at once and is
// then delivered what is queued for it.
func (v *sharingVault) dropRelay() {
	v.s.relay.mu.Lock()
	ws := v.s.relay.conn
	v.s.relay.mu.Unlock()
	if ws != nil {
		ws.CloseNow()
	}
	waitFor(v.t, "relay disconnect", 5*time.Second, func() bool {
		v.s.relay.mu.Lock()
		defer v.s.relay.mu.Unlock()
		return v.s.relay.conn != ws
	})
}

// replayPair is Alice sharing her calendar with Bob (read, maxCalls) through
// a relay whose database the test can reach.
type replayPair struct {
	alice, bob *sharingVault
	op         *relayOperator
	jti        string
	hits       atomic.Int64 // requests that reached Alice's calendar API
}

func newReplayPair(t *testing.T, maxCalls int) *replayPair {
	t.Helper()
	relayURL, dir, logs, dbPath := startTestRelayDB(t)
	p := &replayPair{op: newRelayOperator(t, dbPath)}
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"events":[]}`)
	}))
	t.Cleanup(fake.Close)
	p.alice = newSharingVault(t, "usr_aliceaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
	p.bob = newSharingVault(t, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", relayURL, dir, logs)
	waitFor(t, "relay connections", 5*time.Second, func() bool { return p.alice.s.relay.connected() && p.bob.s.relay.connected() })
	if st, body := p.alice.do("PUT", "/vault/integrations/calendar", map[string]string{"type": "http", "baseUrl": fake.URL}); st != 200 {
		t.Fatalf("integration: %d %v", st, body)
	}
	st, issued := p.alice.do("POST", "/vault/capabilities", map[string]any{"subjectEmail": "bob@example.org", "resource": "calendar",
		"scope": []string{"read"}, "expiresIn": 3600, "maxCalls": maxCalls, "subject": p.bob.subject()})
	if st != http.StatusCreated {
		t.Fatalf("issue: %d %v", st, issued)
	}
	p.jti = issued["jti"].(string)
	waitFor(t, "Bob receives the grant", 5*time.Second, func() bool { return receivedCount(p.bob) == 1 })
	return p
}

// call is Bob calling the calendar through his vault.
func (p *replayPair) call() (int, map[string]any) {
	return p.bob.do("POST", "/vault/capabilities/"+p.jti+"/call", map[string]any{"operation": "read", "path": "/events"})
}

// spent is the number of calls Alice's vault counted on the share.
func (p *replayPair) spent() int {
	k := p.alice.s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	return p.alice.s.capsForTest().Issued[p.jti].Calls
}

// token is Bob's copy of the capability.
func (p *replayPair) token() string {
	k := p.bob.s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	return p.bob.s.capsForTest().Received[p.jti].Token
}

func (p *replayPair) expect(t *testing.T, what string, hits int64, spent int) {
	t.Helper()
	if h, s := p.hits.Load(), p.spent(); h != hits || s != spent {
		t.Fatalf("%s: the API was called %d times (want %d), %d calls spent (want %d)", what, h, hits, s, spent)
	}
}

// unchanged runs f and reports an error if it made the call run or spend.
func (p *replayPair) unchanged(t *testing.T, what string, f func()) {
	t.Helper()
	h0, s0 := p.hits.Load(), p.spent()
	f()
	if h, s := p.hits.Load(), p.spent(); h != h0 || s != s0 {
		t.Errorf("%s: the call ran again (API calls %d → %d, calls spent %d → %d)", what, h0, h, s0, s)
	}
}

// sealRaw seals payload (JSON) from `from` to `to` under header h, as
// `from`'s vault would, without any of the vault's own sealing code.
func sealRaw(t *testing.T, from, to *sharingVault, h api.RelayHeader, payload any) *api.RelayEnvelope {
	t.Helper()
	rec, err := to.s.readIdentity()
	if err != nil {
		t.Fatal(err)
	}
	x, err := crypto.ParseX25519(rec.X25519)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	from.s.keys.mu.Lock()
	box, err := from.s.keys.id.SealBox(&x, msg)
	from.s.keys.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return &api.RelayEnvelope{Header: h, Payload: box}
}

// TestReplayedCallRefused: the relay's operator copies Bob's
// capability.call from its store and queues it again for Alice: with a new
// id and a fresh ts, and byte for byte after Alice's vault restarted (so
// nothing in its memory remembers the call). Each time Alice's vault
// reconnects and is delivered the copy; the call never runs again and
// spends no budget. Bob's next own call still works.
func TestReplayedCallRefused(t *testing.T) {
	p := newReplayPair(t, 3)
	if st, body := p.call(); st != http.StatusOK {
		t.Fatalf("call: %d %v", st, body)
	}
	p.expect(t, "first call", 1, 1)
	orig := p.op.last(envCall)

	p.unchanged(t, "replayed with a new id and a fresh ts", func() {
		re := orig
		re.Header.ID, re.Header.TS = newRandomID(), time.Now().UnixMilli()
		p.op.inject(re)
		p.alice.dropRelay()
		p.op.waitAcked(re.Header.ID)
	})
	p.alice = p.alice.restart()
	waitFor(t, "relay connection after restart", 5*time.Second, p.alice.s.relay.connected)
	p.unchanged(t, "replayed byte for byte after a restart", func() {
		p.op.inject(orig)
		p.alice.dropRelay()
		p.op.waitAcked(orig.Header.ID)
	})
	h, s := p.hits.Load(), p.spent()
	if st, body := p.call(); st != http.StatusOK {
		t.Fatalf("next call: %d %v", st, body)
	}
	p.expect(t, "Bob's next call", h+1, s+1)
}

// TestCallBinding: Alice's vault runs a call only when its sealed header
// is the envelope's header (id, from, to, ts, type, jti), is fresh by its
// sealed time, and its request id has not run before; anything else is
// dropped without running or spending. Calls are delivered straight to
// Alice's vault, as a relay would deliver them.
func TestCallBinding(t *testing.T) {
	p := newReplayPair(t, 100)
	tok := p.token()
	ctx := context.Background()
	header := func() api.RelayHeader {
		return api.RelayHeader{ID: newRandomID(), From: "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", To: "usr_aliceaaaaaaaaaaaaaaaaaaaaa", TS: time.Now().UnixMilli(), Type: envCall, JTI: p.jti}
	}
	msg := func(inner *api.RelayHeader) map[string]any {
		m := map[string]any{"requestId": newRandomID(), "token": tok, "operation": "read", "method": "GET", "path": "/events"}
		if inner != nil {
			m["header"] = inner
		}
		return m
	}
	deliver := func(env *api.RelayEnvelope) {
		t.Helper()
		if !p.alice.s.handleEnvelope(ctx, env) {
			t.Fatal("not processed")
		}
	}
	good := func() *api.RelayEnvelope { h := header(); return sealRaw(t, p.bob, p.alice, h, msg(&h)) }

	// A well-formed call runs once.
	first := good()
	deliver(first)
	p.expect(t, "bound call", 1, 1)

	stale := time.Now().Add(-callWait("calendar") - staleCallSlack - 5*time.Second).UnixMilli()
	for _, tc := range []struct {
		name string
		env  func() *api.RelayEnvelope
	}{
		{"the same envelope again", func() *api.RelayEnvelope { return first }},
		{"a copy with a new id and a fresh ts", func() *api.RelayEnvelope {
			e := *first
			e.Header.ID, e.Header.TS = newRandomID(), time.Now().UnixMilli()+1
			return &e
		}},
		{"unbound (no sealed header)", func() *api.RelayEnvelope { return sealRaw(t, p.bob, p.alice, header(), msg(nil)) }},
		{"stale sealed time under a fresh header", func() *api.RelayEnvelope {
			h := header()
			in := h
			in.TS = stale
			return sealRaw(t, p.bob, p.alice, h, msg(&in))
		}},
		{"stale", func() *api.RelayEnvelope {
			h := header()
			h.TS = stale
			return sealRaw(t, p.bob, p.alice, h, msg(&h))
		}},
		{"from the future", func() *api.RelayEnvelope {
			h := header()
			h.TS = time.Now().Add(10 * time.Minute).UnixMilli()
			return sealRaw(t, p.bob, p.alice, h, msg(&h))
		}},
		{"sealed sender is someone else", func() *api.RelayEnvelope {
			h := header()
			in := h
			in.From = "usr_malloryaaaaaaaaaaaaaaaaaaa"
			return sealRaw(t, p.bob, p.alice, h, msg(&in))
		}},
		{"sealed recipient is someone else", func() *api.RelayEnvelope {
			h := header()
			in := h
			in.To = "usr_carolaaaaaaaaaaaaaaaaaaaaa"
			return sealRaw(t, p.bob, p.alice, h, msg(&in))
		}},
		{"sealed jti is another capability", func() *api.RelayEnvelope {
			h := header()
			in := h
			in.JTI = newRandomID()
			return sealRaw(t, p.bob, p.alice, h, msg(&in))
		}},
		{"sealed type is another", func() *api.RelayEnvelope {
			h := header()
			in := h
			in.Type = envResult
			return sealRaw(t, p.bob, p.alice, h, msg(&in))
		}},
		{"sealed envelope id is another", func() *api.RelayEnvelope {
			h := header()
			in := h
			in.ID = newRandomID()
			return sealRaw(t, p.bob, p.alice, h, msg(&in))
		}},
	} {
		p.unchanged(t, tc.name, func() { deliver(tc.env()) })
	}
	h, s := p.hits.Load(), p.spent()
	deliver(good())
	p.expect(t, "another bound call", h+1, s+1)
}

// TestResultBinding: Bob's vault hands a capability.result to the call
// waiting for it only when its sealed header is the envelope's, it comes
// from that call's issuer for that call's capability, and it is not older
// than the call; a replayed copy (new id, fresh ts) is dropped.
func TestResultBinding(t *testing.T) {
	p := newReplayPair(t, 100)
	header := func() api.RelayHeader {
		return api.RelayHeader{ID: newRandomID(), From: "usr_aliceaaaaaaaaaaaaaaaaaaaaa", To: "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", TS: time.Now().UnixMilli(), Type: envResult}
	}
	msg := func(inner *api.RelayHeader, reqID, jti string) map[string]any {
		m := map[string]any{"requestId": reqID, "jti": jti, "status": 200, "body": []byte(`{"events":[]}`)}
		if inner != nil {
			m["header"] = inner
		}
		return m
	}
	reqID := newRandomID()
	ch := p.bob.s.calls.add(reqID, "usr_aliceaaaaaaaaaaaaaaaaaaaaa", p.jti, newRandomID())
	defer p.bob.s.calls.drop(reqID)
	delivered := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	h := header()
	orig := sealRaw(t, p.alice, p.bob, h, msg(&h, reqID, p.jti))
	old := time.Now().Add(-3 * time.Minute).UnixMilli()
	for _, tc := range []struct {
		name string
		env  func() *api.RelayEnvelope
	}{
		{"a copy with a new id and a fresh ts", func() *api.RelayEnvelope {
			e := *orig
			e.Header.ID, e.Header.TS = newRandomID(), time.Now().UnixMilli()+1
			return &e
		}},
		{"unbound (no sealed header)", func() *api.RelayEnvelope { return sealRaw(t, p.alice, p.bob, header(), msg(nil, reqID, p.jti)) }},
		{"sealed recipient is someone else", func() *api.RelayEnvelope {
			h := header()
			in := h
			in.To = "usr_carolaaaaaaaaaaaaaaaaaaaaa"
			return sealRaw(t, p.alice, p.bob, h, msg(&in, reqID, p.jti))
		}},
		{"for another capability", func() *api.RelayEnvelope {
			h := header()
			return sealRaw(t, p.alice, p.bob, h, msg(&h, reqID, newRandomID()))
		}},
		{"older than the call", func() *api.RelayEnvelope {
			h := header()
			h.TS = old
			return sealRaw(t, p.alice, p.bob, h, msg(&h, reqID, p.jti))
		}},
		{"for a request that is not waiting", func() *api.RelayEnvelope {
			h := header()
			return sealRaw(t, p.alice, p.bob, h, msg(&h, newRandomID(), p.jti))
		}},
	} {
		p.bob.s.handleEnvelope(context.Background(), tc.env())
		if delivered() {
			t.Errorf("%s: handed to the waiting call", tc.name)
		}
	}
	p.bob.s.handleEnvelope(context.Background(), orig)
	if !delivered() {
		t.Fatal("the bound result was not handed to the waiting call")
	}
}

// TestGrantBinding: a capability.grant is stored only when its sealed
// header is the envelope's (for this vault, carrying the token's jti);
// a replayed grant changes nothing.
func TestGrantBinding(t *testing.T) {
	p := newReplayPair(t, 1)
	bobRec, err := p.bob.s.readIdentity()
	if err != nil {
		t.Fatal(err)
	}
	bobEd, _ := crypto.ParseEd25519(bobRec.Ed25519)
	now := time.Now()
	p.alice.s.keys.mu.Lock()
	tok, err := capability.Issue(p.alice.s.keys.id, capability.Claims{Subject: bobEd, Audience: "usr_aliceaaaaaaaaaaaaaaaaaaaaa", Resource: "calendar",
		Scope: []capability.Op{capability.OpRead}, IssuedAt: now, Expires: now.Add(time.Hour)})
	p.alice.s.keys.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := capability.Parse(tok)
	jti := parsed.JTI().String()
	signed, err := p.alice.s.ownKeyRecord()
	if err != nil {
		t.Fatal(err)
	}
	grant := func(h api.RelayHeader, inner *api.RelayHeader) *api.RelayEnvelope {
		m := map[string]any{"token": tok, "issuerUserId": "usr_aliceaaaaaaaaaaaaaaaaaaaaa", "issuerKeys": signed}
		if inner != nil {
			m["header"] = inner
		}
		e := sealRaw(t, p.alice, p.bob, h, m)
		outer, _ := json.Marshal(map[string]any{"issuerKeys": signed, "box": e.Payload})
		e.Payload = outer
		return e
	}
	header := func() api.RelayHeader {
		return api.RelayHeader{ID: newRandomID(), From: "usr_aliceaaaaaaaaaaaaaaaaaaaaa", To: "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", TS: time.Now().UnixMilli(), Type: envGrant, JTI: jti}
	}
	has := func() bool {
		k := p.bob.s.keys
		k.mu.Lock()
		defer k.mu.Unlock()
		return p.bob.s.capsForTest().Received[jti] != nil
	}
	for _, tc := range []struct {
		name string
		env  func() *api.RelayEnvelope
	}{
		{"unbound (no sealed header)", func() *api.RelayEnvelope { return grant(header(), nil) }},
		{"sealed recipient is someone else", func() *api.RelayEnvelope {
			h := header()
			in := h
			in.To = "usr_carolaaaaaaaaaaaaaaaaaaaaa"
			return grant(h, &in)
		}},
		{"no jti in the header", func() *api.RelayEnvelope {
			h := header()
			h.JTI = ""
			return grant(h, &h)
		}},
		{"sealed header differs (ts)", func() *api.RelayEnvelope {
			h := header()
			in := h
			in.TS -= 1000
			return grant(h, &in)
		}},
	} {
		p.bob.s.handleEnvelope(context.Background(), tc.env())
		if has() {
			t.Errorf("%s: stored", tc.name)
			k := p.bob.s.keys
			k.mu.Lock()
			cs := p.bob.s.capsForTest()
			delete(cs.Received, jti)
			p.bob.s.saveCapsLocked(cs)
			k.mu.Unlock()
		}
	}
	h := header()
	env := grant(h, &h)
	p.bob.s.handleEnvelope(context.Background(), env)
	if !has() {
		t.Fatal("the bound grant was not stored")
	}
}

// TestRelayErrorFrameChangesNoRecord: an error frame about a call's
// envelope comes from the relay, not from the issuer (nothing seals it),
// so it ends the waiting call but never marks Bob's capability used up
// or revoked.
func TestRelayErrorFrameChangesNoRecord(t *testing.T) {
	p := newReplayPair(t, 5)
	p.alice.stop() // the call stays queued at the relay
	done := make(chan error, 1)
	go func() {
		_, err := p.bob.s.sendCall(context.Background(), p.jti, callReq{Operation: "read", Method: "GET", Path: "/events"})
		done <- err
	}()
	var envID string
	waitFor(t, "the call to wait", 5*time.Second, func() bool {
		p.bob.s.calls.mu.Lock()
		defer p.bob.s.calls.mu.Unlock()
		for _, pc := range p.bob.s.calls.m {
			envID = pc.envelope
		}
		return envID != ""
	})
	waitFor(t, "the relay to accept the call", 5*time.Second, func() bool {
		p.bob.s.relay.mu.Lock()
		defer p.bob.s.relay.mu.Unlock()
		return p.bob.s.relay.waiters["id:"+envID] == nil
	})
	if !p.bob.s.calls.failEnvelope(envID, capability.ErrBudgetExhausted.Code(), "forged") {
		t.Fatal("no call waiting for the envelope")
	}
	if err := <-done; err == nil {
		t.Fatal("the call succeeded")
	}
	_, l := p.bob.do("GET", "/vault/capabilities?direction=received", nil)
	if st := l["capabilities"].([]any)[0].(map[string]any)["status"]; st != "active" {
		t.Fatalf("status after a relay error frame: %v", st)
	}
}
