package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestRecoveryRequests: contacts see the open requests of owners who chose
// them; one approval per contact; an owner has one open request; expired,
// cancelled and completed requests refuse approvals and closing, and
// their sealed shares are gone.
func TestRecoveryRequests(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	st, err := Open(ctx, filepath.Join(t.TempDir(), FileName), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ids []UserID
	for _, e := range []string{"a@example.org", "b@example.org", "c@example.org", "d@example.org"} {
		u, err := st.CreateUser(ctx, e, false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	owner, b, c, d := ids[0], ids[1], ids[2], ids[3]
	if err := st.PutSocialSetup(ctx, SocialSetup{Owner: owner, Threshold: 2, Epoch: 7, Contacts: []UserID{b, c}}); err != nil {
		t.Fatal(err)
	}
	ss, err := st.SocialSetupOf(ctx, owner)
	if err != nil || ss.Threshold != 2 || len(ss.Contacts) != 2 {
		t.Fatalf("setup: %+v %v", ss, err)
	}
	mk := func(id string) RecoveryRequest {
		r := RecoveryRequest{ID: id, Owner: owner, PublicKey: "pk", Threshold: 2, Epoch: 7, CreatedAt: now, ExpiresAt: now.Add(72 * time.Hour)}
		if err := st.CreateRecoveryRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	mk("r1")
	if err := st.AddRecoveryApproval(ctx, "r1", b, []byte("sealed-b")); err != nil {
		t.Fatal(err)
	}
	if err := st.AddRecoveryApproval(ctx, "r1", b, []byte("again")); !errors.Is(err, ErrUsed) {
		t.Fatalf("second approval: %v", err)
	}
	if rs, _ := st.RecoveryRequestsFor(ctx, c); len(rs) != 1 || len(rs[0].Approvals) != 1 || rs[0].Approvals[0].SealedShare != nil {
		t.Fatalf("c's inbox: %+v", rs)
	}
	if rs, _ := st.RecoveryRequestsFor(ctx, d); len(rs) != 0 {
		t.Fatalf("d (not a contact) sees %+v", rs)
	}
	// A new request cancels the old one and drops its shares.
	mk("r2")
	r1, _ := st.RecoveryRequestByID(ctx, "r1")
	if r1.Status != RecoveryCancelled || r1.Approvals[0].SealedShare != nil {
		t.Fatalf("r1 after r2: %+v", r1)
	}
	if err := st.AddRecoveryApproval(ctx, "r1", c, []byte("x")); !errors.Is(err, ErrConflict) {
		t.Fatalf("approval of a cancelled request: %v", err)
	}
	st.AddRecoveryApproval(ctx, "r2", c, []byte("sealed-c"))
	if r2, _ := st.RecoveryRequestByID(ctx, "r2"); string(r2.Approvals[0].SealedShare) != "sealed-c" {
		t.Fatalf("r2: %+v", r2)
	}
	now = now.Add(73 * time.Hour)
	r2, _ := st.RecoveryRequestByID(ctx, "r2")
	if r2.Effective(now) != RecoveryExpired || r2.Approvals[0].SealedShare != nil {
		t.Fatalf("expired r2: %+v", r2)
	}
	if err := st.AddRecoveryApproval(ctx, "r2", b, []byte("x")); !errors.Is(err, ErrExpired) {
		t.Fatalf("approval of an expired request: %v", err)
	}
	if err := st.CloseRecoveryRequest(ctx, "r2", RecoveryCompleted); !errors.Is(err, ErrExpired) {
		t.Fatalf("completing an expired request: %v", err)
	}
	var n int
	st.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM recovery_approvals WHERE sealed_share IS NOT NULL`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d sealed shares kept", n)
	}
	if err := st.DeleteSocialSetup(ctx, owner); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SocialSetupOf(ctx, owner); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}
