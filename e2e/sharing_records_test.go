package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/xtest"
)

// TestSharingRecordsTruthfully: what the management role records and says
// about shares matches what happened. Alice shares her calendar with Bob
// twice and revokes one share: the audit detail holds the grant's fields
// as plain values, Bob's mail names the share that ended and says another
// share of it is still active, revoking it again is audited once (and the
// revocation is in Bob's audit too), only active unseen shares are "new",
// an unlimited share carries no maxCalls, and settings.changed is audited
// only for a real change.
func TestSharingRecordsTruthfully(t *testing.T) {
	env := xtest.NewEnv(t, xtest.WithConfig(func(c *config.Config) { c.AllowPrivateTargets = config.PrivateTargets{All: true} }))
	ctx := context.Background()
	alice, _ := env.Admin("alice@example.org")
	bob, bu := env.Invite(alice, "bob@example.org")
	av := readyVault(t, env, alice, "alice's long password")
	readyVault(t, env, bob, "bob's long password")
	av.json("PUT", "/integrations/calendar", map[string]string{"type": "http", "baseUrl": "http://127.0.0.1:9", "authHeader": "Authorization", "authValue": "Bearer a"}, nil)
	share := func(body map[string]any) string {
		t.Helper()
		var out struct {
			JTI string `json:"jti"`
		}
		body["subjectEmail"] = "bob@example.org"
		av.json("POST", "/capabilities", body, &out)
		return out.JTI
	}
	auditOf := func(c *api.Client, action string) []api.AuditEvent {
		t.Helper()
		var a struct {
			Events []api.AuditEvent `json:"events"`
		}
		if err := c.JSON(ctx, "GET", "/api/v1/audit?action="+action, nil, &a); err != nil {
			t.Fatal(err)
		}
		return a.Events
	}
	week := 7 * 24 * 3600
	jti1 := share(map[string]any{"resource": "calendar", "scope": []string{"read", "list"}, "expiresIn": week, "maxCalls": 50})
	jti2 := share(map[string]any{"resource": "calendar", "scope": []string{"read"}, "expiresIn": week})

	// The audit detail holds plain values, not JSON.
	granted := auditOf(alice, "sharing.granted")
	if len(granted) != 2 {
		t.Fatalf("grant audit: %+v", granted)
	}
	d := granted[1].Detail
	want := map[string]string{"jti": jti1, "subject": string(bu.ID), "resource": "calendar", "scope": "read,list", "expiresIn": fmt.Sprint(week), "maxCalls": "50"}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("grant audit detail %s = %q, want %q (all: %v)", k, d[k], v, d)
		}
	}
	if _, ok := granted[0].Detail["maxCalls"]; ok {
		t.Errorf("an unlimited share's audit holds maxCalls: %v", granted[0].Detail)
	}

	// Revoking one share: the mail names it and says the other still works.
	revoke := func(jti string) {
		t.Helper()
		if r, err := alice.Do(ctx, "DELETE", "/api/v1/me/agent/vault/capabilities/"+jti, nil); err != nil || r.Status != http.StatusNoContent {
			t.Fatalf("revoke: %v %+v", err, r)
		}
	}
	revoke(jti1)
	var mails []xtest.Mail
	xtest.Eventually(t, 10*time.Second, func() error {
		if mails = env.Mails("bob@example.org"); len(mails) < 2 {
			return errString("mails to Bob so far: " + mustJSONString(mails))
		}
		return nil
	})
	m := mails[1]
	until := time.Now().Add(7 * 24 * time.Hour).UTC().Format("2 January 2006")
	if m.Subject != "alice@example.org stopped a share of their calendar with you" {
		t.Errorf("subject %q", m.Subject)
	}
	for _, w := range []string{"the share of their calendar (see and list, until " + until, "This share no longer works", "another share of it is still active"} {
		if !strings.Contains(m.Body, w) {
			t.Errorf("the mail lacks %q:\n%s", w, m.Body)
		}
	}
	if strings.Contains(m.Body, "can no longer use it") {
		t.Errorf("the mail overstates:\n%s", m.Body)
	}

	// A second revocation of the same share changes nothing and is not
	// audited again; the revocation is in Bob's audit too.
	revoke(jti1)
	if got := auditOf(alice, "sharing.revoked"); len(got) != 1 || got[0].Target != string(bu.ID) || got[0].Detail["jti"] != jti1 {
		t.Errorf("Alice's revocation audit: %+v", got)
	}
	if got := auditOf(bob, "sharing.revoked"); len(got) != 1 {
		t.Errorf("Bob's revocation audit: %+v", got)
	}

	// Only active unseen received shares are new; an unlimited share has no
	// maxCalls.
	jti3 := share(map[string]any{"resource": "calendar", "scope": []string{"read"}, "expiresIn": 1})
	time.Sleep(1100 * time.Millisecond)
	var g struct {
		Received []map[string]any `json:"received"`
		Issued   []map[string]any `json:"issued"`
	}
	if err := bob.JSON(ctx, "GET", "/api/v1/me/grants", nil, &g); err != nil {
		t.Fatal(err)
	}
	byJTI := map[string]map[string]any{}
	for _, x := range g.Received {
		byJTI[fmt.Sprint(x["jti"])] = x
	}
	for jti, wantNew := range map[string]bool{jti1: false, jti2: true, jti3: false} {
		if x := byJTI[jti]; x == nil || (x["new"] == true) != wantNew {
			t.Errorf("received %s (%v): new should be %v", jti, x, wantNew)
		}
	}
	if _, ok := byJTI[jti2]["maxCalls"]; ok {
		t.Errorf("an unlimited share carries maxCalls: %v", byJTI[jti2])
	}
	if byJTI[jti1]["maxCalls"] != float64(50) {
		t.Errorf("a share of 50 calls: %v", byJTI[jti1])
	}
	var seen struct {
		Seen int `json:"seen"`
	}
	if err := bob.JSON(ctx, "POST", "/api/v1/me/grants/seen", nil, &seen); err != nil || seen.Seen != 1 {
		t.Errorf("seen: %+v %v, want 1 (the one active share)", seen, err)
	}

	// settings.changed only for a real change.
	for _, on := range []bool{true, false, false} {
		if err := bob.JSON(ctx, "PUT", "/api/v1/me/settings", map[string]bool{"shareMail": on}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := auditOf(bob, "settings.changed"); len(got) != 1 || got[0].Detail["shareMail"] != "false" {
		t.Errorf("settings audit: %+v", got)
	}
}
