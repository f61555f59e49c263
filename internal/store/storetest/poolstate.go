package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// testPoolStates: a pool's state is recorded, replaced, and forgotten
// when set back to active; pools never touched are absent (active).
func testPoolStates(t *testing.T, s corral.Store) {
	get := func() map[string]corral.PoolState {
		t.Helper()
		var got map[string]corral.PoolState
		if err := s.View(context.Background(), func(tx corral.ReadTx) error {
			var err error
			got, err = tx.PoolStates(context.Background())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := get(); len(got) != 0 {
		t.Fatalf("pool states of a new store: %v", got)
	}
	set := func(pool string, st corral.PoolState) {
		t.Helper()
		update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.SetPoolState(ctx, pool, st, T0) })
	}
	set("a", corral.PoolPaused)
	set("b", corral.PoolDraining)
	set("a", corral.PoolDraining)
	if got := fmt.Sprint(get()); got != "map[a:draining b:draining]" {
		t.Fatalf("after pause a, drain b, drain a: %s", got)
	}
	set("a", corral.PoolActive)
	set("c", corral.PoolActive) // never set: nothing to forget
	if got := fmt.Sprint(get()); got != "map[b:draining]" {
		t.Fatalf("after resume a: %s", got)
	}
}

// testTargetStates: a target is paused, paused again (no error), resumed;
// targets never touched are absent (they take jobs).
func testTargetStates(t *testing.T, s corral.Store) {
	get := func() map[string]bool {
		t.Helper()
		var got map[string]bool
		if err := s.View(context.Background(), func(tx corral.ReadTx) error {
			var err error
			got, err = tx.PausedTargets(context.Background())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := get(); len(got) != 0 {
		t.Fatalf("paused targets of a new store: %v", got)
	}
	set := func(target string, paused bool) {
		t.Helper()
		update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.SetTargetPaused(ctx, target, paused, T0) })
	}
	set("a", true)
	set("b", true)
	set("a", true)
	if got := fmt.Sprint(get()); got != "map[a:true b:true]" {
		t.Fatalf("after pause a, b, a: %s", got)
	}
	set("a", false)
	set("c", false) // never paused: nothing to forget
	if got := fmt.Sprint(get()); got != "map[b:true]" {
		t.Fatalf("after resume a: %s", got)
	}
}
