package store

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
)

// TestMigrationRelayRevocationScope: a relay database at version 5 keeps
// its revocations (with no signer user: matched by key) and snapshots
// when revocations and snapshot slots become per issuer (issue 8).
func TestMigrationRelayRevocationScope(t *testing.T) {
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
	if _, err := p.UpTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	far := time.Now().Add(time.Hour).UnixMilli()
	if _, err := db.ExecContext(ctx, `INSERT INTO relay_revocations(jti, issuer, ts, reason, revocation, sig, created_at) VALUES('j1','ed25519:A',1,'','r','s',1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO relay_snapshots(jti, issuer, subject, blob, sig, updated_at, expires_at) VALUES('j2','ed25519:A','ed25519:B',x'01','s',1,?)`, far); err != nil {
		t.Fatal(err)
	}
	db.Close()

	st, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs, err := st.Revocations(ctx, "j1")
	if err != nil || len(rs) != 1 || rs[0].IssuerUser != "" || rs[0].Issuer != "ed25519:A" || rs[0].Revocation != "r" {
		t.Fatalf("revocations after the migration: %+v %v", rs, err)
	}
	if sn, err := st.Snapshot(ctx, "j2", "ed25519:B", ""); err != nil || sn.Issuer != "ed25519:A" {
		t.Fatalf("snapshot after the migration: %+v %v", sn, err)
	}
	// Same jti, another signer: a second record, not a no-op.
	if added, err := st.PutRevocation(ctx, RelayRevocation{JTI: "j1", IssuerUser: "usr_c", Issuer: "ed25519:C"}); err != nil || !added {
		t.Fatalf("second signer: %v %v", added, err)
	}
	if added, err := st.PutRevocation(ctx, RelayRevocation{JTI: "j1", IssuerUser: "usr_c", Issuer: "ed25519:C"}); err != nil || added {
		t.Fatalf("duplicate: %v %v", added, err)
	}
	// Another issuer's snapshot of the same jti gets its own slot.
	if err := st.PutSnapshot(ctx, RelaySnapshot{JTI: "j2", Issuer: "ed25519:C", Subject: "ed25519:B", Blob: []byte{2}, ExpiresAt: time.UnixMilli(far)}); err != nil {
		t.Fatal(err)
	}
	if sn, err := st.Snapshot(ctx, "j2", "ed25519:B", "ed25519:A"); err != nil || sn.Blob[0] != 1 {
		t.Fatalf("Alice's slot: %+v %v", sn, err)
	}
}
