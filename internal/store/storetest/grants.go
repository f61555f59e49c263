package storetest

import (
	"context"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// testInstanceGrants: grants round-trip by the hash of their token, give
// each piece once (also to concurrent callers), replace the instance's
// earlier grant, and are deleted by instance and by sweep.
func testInstanceGrants(t *testing.T, s corral.Store) {
	h1, h2, h3 := sha256.Sum256([]byte("tok-1")), sha256.Sum256([]byte("tok-2")), sha256.Sum256([]byte("tok-3"))
	a := corral.InstanceGrant{Hash: h1[:], InstanceID: "i-a", Sealed: []byte("sealed-a"), FetchBy: T0.Add(time.Minute), CallBy: T0.Add(time.Hour)}
	b := corral.InstanceGrant{Hash: h2[:], InstanceID: "i-b", Sealed: []byte("sealed-b"), FetchBy: T0.Add(time.Minute), CallBy: T0.Add(2 * time.Hour)}
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		if err := tx.PutInstanceGrant(ctx, a); err != nil {
			return err
		}
		return tx.PutInstanceGrant(ctx, b)
	})
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.InstanceGrant(ctx, h1[:])
		equal(t, "grant by hash", got, a)
		if err != nil {
			return err
		}
		_, err = tx.InstanceGrant(ctx, h3[:])
		wantErr(t, "unknown hash", err, corral.ErrNotFound)
		return nil
	})
	ctx := testCtx(t)
	// Each piece once, though eight callers race for it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 8 {
		wg.Go(func() {
			err := s.Update(ctx, func(tx corral.Tx) error { return tx.UseInstanceGrant(ctx, h1[:], "credentials/runner") })
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won++
			} else {
				wantErr(t, "second use", err, corral.ErrConflict)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("the piece was given %d times, want once", won)
	}
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.UseInstanceGrant(ctx, h1[:], "done") })
	wantErr(t, "use of an unknown grant", s.Update(ctx, func(tx corral.Tx) error { return tx.UseInstanceGrant(ctx, h3[:], "x") }), corral.ErrNotFound)
	a.Used = []string{"credentials/runner", "done"}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.InstanceGrant(ctx, h1[:])
		equal(t, "grant after uses", got, a)
		return err
	})
	// A new grant of i-a replaces the old one.
	a2 := corral.InstanceGrant{Hash: h3[:], InstanceID: "i-a", Sealed: []byte("sealed-a2"), FetchBy: T0.Add(time.Minute), CallBy: T0.Add(time.Hour)}
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.PutInstanceGrant(ctx, a2) })
	dup := b
	dup.InstanceID = "i-c" // b's hash for another instance
	wantErr(t, "put of an existing hash", s.Update(ctx, func(tx corral.Tx) error { return tx.PutInstanceGrant(ctx, dup) }), corral.ErrConflict)
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		_, err := tx.InstanceGrant(ctx, h1[:])
		wantErr(t, "replaced grant", err, corral.ErrNotFound)
		return nil
	})
	// Sweep: b (call by T0+2h) outlives a sweep at T0+90m, a2 does not.
	var n int
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		var err error
		n, err = tx.SweepInstanceGrants(ctx, T0.Add(90*time.Minute))
		return err
	})
	equal(t, "swept", n, 1)
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.DeleteInstanceGrants(ctx, "i-b") })
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		for _, h := range [][]byte{h2[:], h3[:]} {
			_, err := tx.InstanceGrant(ctx, h)
			wantErr(t, "deleted grant", err, corral.ErrNotFound)
		}
		return nil
	})
}
