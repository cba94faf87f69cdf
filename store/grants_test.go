package store

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
)

// TestMigrationShareNotices: a database at version 4 with a user and a
// grant migrates to 5; the user's share mails are on and the grant counts
// as not yet seen.
func TestMigrationShareNotices(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	db, err := sql.Open("sqlite3", "file:"+path+"?_foreign_keys=on")
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO users(id, email, admin, created_at) VALUES('usr_a','a@example.org',1,1), ('usr_b','b@example.org',0,1)`,
		`INSERT INTO peer_grants(jti, issuer_id, subject_id, resource, scope, expires_at, created_at) VALUES('j1','usr_a','usr_b','calendar','read',9999999999999,1)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	st, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, _ := st.SchemaVersion(ctx); v < 5 {
		t.Fatalf("schema version %d, want ≥ 5", v)
	}
	if on, err := st.ShareMail(ctx, "usr_b"); err != nil || !on {
		t.Fatalf("share mail after the migration: %v %v, want on", on, err)
	}
	gs, err := st.PeerGrants(ctx, "usr_b", false)
	if err != nil || len(gs) != 1 || !gs[0].SeenAt.IsZero() {
		t.Fatalf("received grants after the migration: %+v %v", gs, err)
	}
}

func TestPeerGrantsSeenAndRevoke(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, _ := st.CreateUser(ctx, "a@example.org", false)
	b, _ := st.CreateUser(ctx, "b@example.org", false)
	c, _ := st.CreateUser(ctx, "c@example.org", false)
	put := func(jti string, issuer, subject UserID) {
		t.Helper()
		if err := st.PutPeerGrant(ctx, PeerGrant{JTI: jti, IssuerID: issuer, SubjectID: subject, Resource: "calendar", Scope: []string{"read"}, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	put("j1", a.ID, b.ID)
	put("j2", a.ID, b.ID)
	put("j3", b.ID, c.ID) // Bob's own issued grant
	unseen := func(u UserID) int {
		gs, err := st.PeerGrants(ctx, u, false)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range gs {
			if g.SeenAt.IsZero() {
				n++
			}
		}
		return n
	}
	// Alice marking "her" received grants seen touches none of Bob's.
	if n, err := st.MarkPeerGrantsSeen(ctx, a.ID); err != nil || n != 0 || unseen(b.ID) != 2 {
		t.Fatalf("another user's mark: %d %v; Bob's unseen %d", n, err, unseen(b.ID))
	}
	if n, err := st.MarkPeerGrantsSeen(ctx, b.ID); err != nil || n != 2 || unseen(b.ID) != 0 {
		t.Fatalf("Bob's mark: %d %v; unseen %d", n, err, unseen(b.ID))
	}
	if unseen(c.ID) != 1 {
		t.Fatal("Bob's mark touched the grant he issued")
	}
	if n, _ := st.MarkPeerGrantsSeen(ctx, b.ID); n != 0 {
		t.Fatalf("second mark: %d new", n)
	}

	if _, _, err := st.RevokePeerGrant(ctx, b.ID, "j1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke by the subject: %v, want not found", err)
	}
	g, revoked, err := st.RevokePeerGrant(ctx, a.ID, "j1")
	if err != nil || !revoked || g.SubjectID != b.ID || g.Resource != "calendar" || g.RevokedAt.IsZero() {
		t.Fatalf("revoke: %+v %v %v", g, revoked, err)
	}
	if _, revoked, err := st.RevokePeerGrant(ctx, a.ID, "j1"); err != nil || revoked {
		t.Fatalf("second revoke: %v %v, want no error and not revoked again", revoked, err)
	}

	if on, _ := st.ShareMail(ctx, b.ID); !on {
		t.Fatal("share mail is off by default")
	}
	if changed, err := st.SetShareMail(ctx, b.ID, true); err != nil || changed {
		t.Fatalf("setting it on again: changed=%v %v, want unchanged", changed, err)
	}
	if changed, err := st.SetShareMail(ctx, b.ID, false); err != nil || !changed {
		t.Fatalf("turning it off: changed=%v %v", changed, err)
	}
	if on, _ := st.ShareMail(ctx, b.ID); on {
		t.Fatal("share mail still on")
	}
	if _, err := st.SetShareMail(ctx, "usr_nobody", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

// TestPeerGrantNew: a received grant is new while it is unseen and active;
// revoked and expired ones are not, and marking seen counts only new ones
// (but marks them all).
func TestPeerGrantNew(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, _ := st.CreateUser(ctx, "a@example.org", false)
	b, _ := st.CreateUser(ctx, "b@example.org", false)
	now := time.Now()
	for jti, exp := range map[string]time.Time{"active": now.Add(time.Hour), "revoked": now.Add(time.Hour), "expired": now.Add(-time.Second)} {
		if err := st.PutPeerGrant(ctx, PeerGrant{JTI: jti, IssuerID: a.ID, SubjectID: b.ID, Resource: "calendar", Scope: []string{"read"}, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.RevokePeerGrant(ctx, a.ID, "revoked"); err != nil {
		t.Fatal(err)
	}
	gs, err := st.PeerGrants(ctx, b.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.New(time.Now()) != (g.JTI == "active") {
			t.Errorf("grant %s: New = %v", g.JTI, g.New(time.Now()))
		}
	}
	if n, err := st.MarkPeerGrantsSeen(ctx, b.ID); err != nil || n != 1 {
		t.Fatalf("mark seen: %d %v, want 1 new", n, err)
	}
	gs, _ = st.PeerGrants(ctx, b.ID, false)
	for _, g := range gs {
		if g.SeenAt.IsZero() {
			t.Errorf("grant %s not marked seen", g.JTI)
		}
	}
}
