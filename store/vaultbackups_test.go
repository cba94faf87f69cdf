package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestVaultBackupsKeepNewest: each user keeps only the newest backups, and
// one user never reads another's.
func TestVaultBackupsKeepNewest(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	st, err := Open(ctx, filepath.Join(t.TempDir(), FileName), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	alice, _ := st.CreateUser(ctx, "alice@example.org", true)
	bob, _ := st.CreateUser(ctx, "bob@example.org", false)
	var ids []string
	for i := range 5 {
		now = now.Add(time.Minute)
		b, err := st.AddVaultBackup(ctx, VaultBackup{UserID: alice.ID, Vault: []byte{byte(i), 1, 2}, Record: "r", Sig: "s", Ed25519: "ed25519:x"}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if b.SizeBytes != 3 || len(b.SHA256) != 64 || b.Vault != nil {
			t.Fatalf("stored: %+v", b)
		}
		ids = append(ids, b.ID)
	}
	if _, err := st.AddVaultBackup(ctx, VaultBackup{UserID: bob.ID, Vault: []byte("bob"), Record: "r", Sig: "s", Ed25519: "ed25519:y"}, 3); err != nil {
		t.Fatal(err)
	}
	list, err := st.VaultBackups(ctx, alice.ID)
	if err != nil || len(list) != 3 || list[0].ID != ids[4] || list[2].ID != ids[2] {
		t.Fatalf("alice's list: %+v %v", list, err)
	}
	got, err := st.VaultBackup(ctx, alice.ID, ids[4])
	if err != nil || !bytes.Equal(got.Vault, []byte{4, 1, 2}) || !got.CreatedAt.Equal(now) {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := st.VaultBackup(ctx, alice.ID, ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a pruned backup: %v", err)
	}
	if _, err := st.VaultBackup(ctx, bob.ID, ids[4]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob reads alice's backup: %v", err)
	}
	// The same bytes again add no copy: the newest is kept, with a new time.
	now = now.Add(time.Minute)
	again, err := st.AddVaultBackup(ctx, VaultBackup{UserID: alice.ID, Vault: []byte{4, 1, 2}, Record: "r", Sig: "s", Ed25519: "ed25519:x"}, 3)
	if err != nil || again.ID != ids[4] || !again.CreatedAt.Equal(now) {
		t.Fatalf("unchanged backup: %+v %v", again, err)
	}
	list, _ = st.VaultBackups(ctx, alice.ID)
	if len(list) != 3 || list[0].ID != ids[4] || !list[0].CreatedAt.Equal(now) || list[2].ID != ids[2] {
		t.Fatalf("list after an unchanged backup: %+v", list)
	}
}
