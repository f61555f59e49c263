package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Leases run on the real clock with short TTLs: a backend may judge expiry
// on its own server's clock (PostgreSQL), which no test can fake.
const leaseTTL = 400 * time.Millisecond

func acquire(t *testing.T, s corral.Store, name, holder string, ttl time.Duration) (corral.Lease, bool) {
	t.Helper()
	ctx := testCtx(t)
	var l corral.Lease
	var held bool
	err := s.Update(ctx, func(tx corral.Tx) error {
		var err error
		l, held, err = tx.AcquireLease(ctx, name, holder, time.Now(), ttl)
		return err
	})
	if err != nil {
		t.Fatalf("AcquireLease(%s, %s): %v", name, holder, err)
	}
	return l, held
}

func testLease(t *testing.T, s corral.Store) {
	// The steps below hold only if each ran inside its window of the real
	// clock; on a machine so loaded that one did not (a renewal that
	// started after the lease had expired), the sequence starts again
	// under a fresh name instead of failing on a timing the test did not
	// get. Every assertion still runs on a sequence whose timing held.
	const attempts = 5
	for i := 1; ; i++ {
		late := leaseSequence(t, s, fmt.Sprint("leader-", i))
		if late == "" || t.Failed() {
			break
		}
		if i == attempts {
			t.Fatalf("%d attempts, each too late for its window (last: %s): the machine is too loaded for a %s lease", attempts, late, leaseTTL)
		}
		t.Logf("attempt %d: %s; starting again", i, late)
	}
	// Leases are independent by name.
	if _, ok := acquire(t, s, "other", "a", leaseTTL); !ok {
		t.Error("a second lease name was not free")
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		if _, err := tx.Lease(ctx, "never"); !errors.Is(err, corral.ErrNotFound) {
			t.Errorf("Lease(never) error = %v, want ErrNotFound", err)
		}
		return nil
	})
}

// leaseSequence acquires, renews, lets expire and steals lease name; it
// returns why its timing did not hold ("" when it did).
func leaseSequence(t *testing.T, s corral.Store, name string) (late string) {
	// The windows: a's first term ends within [t0, aDone] + leaseTTL on
	// the store's clock, the renewed one within [renew, renewed] +
	// leaseTTL. margin absorbs clock reads around the calls.
	const margin = 15 * time.Millisecond
	t0 := time.Now()
	la, ok := acquire(t, s, name, "a", leaseTTL)
	if !ok || la.Holder != "a" || la.Token < 1 {
		t.Fatalf("free lease: held=%v lease=%+v, want a in term >= 1", ok, la)
	}
	aDone := time.Now()
	lb, ok := acquire(t, s, name, "b", leaseTTL)
	if time.Since(t0) >= leaseTTL-margin {
		return "b's attempt on a's lease came near its expiry"
	}
	if ok || lb.Holder != "a" || lb.Token != la.Token {
		t.Errorf("held by a: b got held=%v lease=%+v", ok, lb)
	}
	time.Sleep(time.Until(t0.Add(leaseTTL / 2)))
	renew := time.Now()
	if renew.Sub(t0) >= leaseTTL-margin {
		return "the renewal started near the expiry"
	}
	l, ok := acquire(t, s, name, "a", leaseTTL)
	renewed := time.Now()
	if renewed.Sub(t0) >= leaseTTL-margin {
		return "the renewal ended near the expiry"
	}
	if !ok || l.Token != la.Token {
		t.Errorf("renewal by a: held=%v token %d, want the same term %d", ok, l.Token, la.Token)
	}
	time.Sleep(time.Until(aDone.Add(leaseTTL + margin))) // past the first expiry, before the renewed one
	_, ok = acquire(t, s, name, "b", leaseTTL)
	if time.Since(renew) >= leaseTTL-margin {
		return "b's attempt on the renewed lease came near its expiry"
	}
	if ok {
		t.Error("b stole a lease that a renewed")
	}
	time.Sleep(time.Until(renewed.Add(leaseTTL + 100*time.Millisecond)))
	lb, ok = acquire(t, s, name, "b", leaseTTL)
	if !ok || lb.Token <= la.Token {
		t.Errorf("expired lease: b got held=%v token %d, want a new term above %d", ok, lb.Token, la.Token)
	}
	if _, ok := acquire(t, s, name, "a", leaseTTL); ok {
		t.Error("a took the lease back from b")
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		l, err := tx.Lease(ctx, name)
		if err != nil {
			return err
		}
		if l.Holder != "b" || l.Token != lb.Token || l.Expires.IsZero() {
			t.Errorf("Lease(%s) = %+v, want b in term %d", name, l, lb.Token)
		}
		return nil
	})
	return ""
}

func testLeaseRelease(t *testing.T, s corral.Store) {
	la, _ := acquire(t, s, "leader", "a", time.Hour)
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		if err := tx.ReleaseLease(ctx, "leader", "b"); err != nil { // not b's: no effect
			return err
		}
		return nil
	})
	if _, ok := acquire(t, s, "leader", "b", time.Hour); ok {
		t.Fatal("b took a lease that a holds for an hour (released by the wrong holder)")
	}
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.ReleaseLease(ctx, "leader", "a") })
	lb, ok := acquire(t, s, "leader", "b", time.Hour)
	if !ok || lb.Token <= la.Token {
		t.Fatalf("after a released: b held=%v token %d, want a new term above %d", ok, lb.Token, la.Token)
	}
}

func fence(s corral.Store, name string, token int64) error {
	return fenceWrite(s, name, token, "fenced-write")
}

// fenceWrite writes tenant id and checks the fence last, as leader.Fenced
// does.
func fenceWrite(s corral.Store, name string, token int64, id string) error {
	ctx := context.Background()
	return s.Update(ctx, func(tx corral.Tx) error {
		if err := tx.PutTenant(ctx, corral.Tenant{ID: id}); err != nil {
			return err
		}
		return tx.CheckFence(ctx, name, token)
	})
}

// terms returns the named lease's terms by token.
func terms(t *testing.T, s corral.Store, name string) map[int64]corral.LeaseTerm {
	t.Helper()
	out := map[int64]corral.LeaseTerm{}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		ts, err := tx.LeaseTerms(ctx, name)
		for i, lt := range ts {
			if i > 0 && lt.Term <= ts[i-1].Term {
				t.Errorf("LeaseTerms not in term order: %+v", ts)
			}
			out[lt.Term] = lt
		}
		return err
	})
	return out
}

// testReplicasStaleTermCounted: every fenced write that commits is
// counted in its term, in the same transaction; a write fenced with a
// stale (or a future) term is refused, leaves nothing, and is counted
// nowhere.
func testReplicasStaleTermCounted(t *testing.T, a, b corral.Store) {
	la, ok := acquire(t, a, "leader", "a", leaseTTL)
	if !ok {
		t.Fatal("a could not take a free lease")
	}
	for i, id := range []string{"a-1", "a-2"} {
		if err := fenceWrite(a, "leader", la.Token, id); err != nil {
			t.Fatalf("a's write %d in its own term: %v", i+1, err)
		}
	}
	time.Sleep(leaseTTL + 100*time.Millisecond) // a is "paused" past its lease
	lb, ok := acquire(t, b, "leader", "b", time.Hour)
	if !ok {
		t.Fatal("b could not take an expired lease")
	}
	before := terms(t, b, "leader")
	if got := before[la.Token]; got.Writes != 2 || got.Holder != "a" || got.Started.IsZero() {
		t.Errorf("a's term after two writes: %+v, want holder a, 2 writes, a start", got)
	}
	if got, ok := before[lb.Token]; !ok || got.Writes != 0 || got.Holder != "b" {
		t.Errorf("b's new term: %+v (recorded %v), want holder b, 0 writes", got, ok)
	}
	for _, tok := range []int64{la.Token, lb.Token + 1} {
		if err := fenceWrite(a, "leader", tok, "stale"); !errors.Is(err, corral.ErrFenced) {
			t.Errorf("a's write fenced with term %d while b leads in %d: %v, want ErrFenced", tok, lb.Token, err)
		}
	}
	if err := fenceWrite(b, "leader", lb.Token, "b-1"); err != nil {
		t.Fatalf("b's write in its term: %v", err)
	}
	after := terms(t, a, "leader")
	if len(after) != len(before) {
		t.Errorf("terms after the refused writes: %v, want only %v", after, before)
	}
	if after[la.Token].Writes != 2 {
		t.Errorf("a's stale term counts %d writes after its refused write, want 2", after[la.Token].Writes)
	}
	if after[lb.Token].Writes != 1 {
		t.Errorf("b's term counts %d writes, want 1", after[lb.Token].Writes)
	}
	view(t, a, func(ctx context.Context, tx corral.ReadTx) error {
		ts, err := tx.Tenants(ctx)
		var ids []string
		for _, tn := range ts {
			ids = append(ids, tn.ID)
		}
		if !slices.Equal(ids, []string{"a-1", "a-2", "b-1"}) {
			t.Errorf("tenants = %v, want [a-1 a-2 b-1] (the refused write must leave nothing)", ids)
		}
		return err
	})
}

func testLeaseFence(t *testing.T, s corral.Store) {
	if err := fence(s, "leader", 1); !errors.Is(err, corral.ErrFenced) {
		t.Errorf("fence on a lease never taken: %v, want ErrFenced", err)
	}
	la, _ := acquire(t, s, "leader", "a", leaseTTL)
	if err := fence(s, "leader", la.Token); err != nil {
		t.Errorf("fence in a's live term: %v", err)
	}
	if err := fence(s, "leader", la.Token+1); !errors.Is(err, corral.ErrFenced) {
		t.Errorf("fence with a future token: %v, want ErrFenced", err)
	}
	time.Sleep(leaseTTL + 100*time.Millisecond)
	// Expired but not taken: no other leader exists, the term goes on.
	if err := fence(s, "leader", la.Token); err != nil {
		t.Errorf("fence after the term expired, nobody else leading: %v", err)
	}
	lb, _ := acquire(t, s, "leader", "b", time.Hour)
	if err := fence(s, "leader", la.Token); !errors.Is(err, corral.ErrFenced) {
		t.Errorf("a's old term after b took over: %v, want ErrFenced", err)
	}
	if err := fence(s, "leader", lb.Token); err != nil {
		t.Errorf("b's term: %v", err)
	}
}

// testReplicasFence: a leader of replica a loses its lease to replica b;
// a's writes in its old term are refused by the store itself.
func testReplicasFence(t *testing.T, a, b corral.Store) {
	la, ok := acquire(t, a, "leader", "a", leaseTTL)
	if !ok {
		t.Fatal("a could not take a free lease")
	}
	if err := fence(a, "leader", la.Token); err != nil {
		t.Fatalf("a's own term: %v", err)
	}
	time.Sleep(leaseTTL + 100*time.Millisecond) // a is "paused" past its lease
	lb, ok := acquire(t, b, "leader", "b", time.Hour)
	if !ok {
		t.Fatal("b could not take an expired lease")
	}
	if err := fence(a, "leader", la.Token); !errors.Is(err, corral.ErrFenced) {
		t.Errorf("a wrote after b took over: %v, want ErrFenced", err)
	}
	if err := fence(b, "leader", lb.Token); err != nil {
		t.Errorf("b's term: %v", err)
	}
}

func testCatalogVersion(t *testing.T, s corral.Store) {
	var v0, v1 int64
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		var err error
		v0, err = tx.CatalogVersion(ctx)
		return err
	})
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		if err := tx.PutTenant(ctx, corral.Tenant{ID: "acme"}); err != nil {
			return err
		}
		if err := tx.PutTarget(ctx, sampleTarget("gh")); err != nil {
			return err
		}
		if err := tx.PutPool(ctx, samplePool("p1")); err != nil {
			return err
		}
		if err := tx.PutPool(ctx, samplePool("p2")); err != nil {
			return err
		}
		var err error
		v1, err = tx.BumpCatalogVersion(ctx)
		return err
	})
	if v1 != v0+1 {
		t.Errorf("BumpCatalogVersion = %d, want %d", v1, v0+1)
	}
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		for _, err := range []error{tx.DeletePool(ctx, "p1"), tx.DeleteTarget(ctx, "gh"), tx.DeleteTenant(ctx, "acme"),
			tx.DeletePool(ctx, "absent")} {
			if err != nil {
				return err
			}
		}
		_, err := tx.BumpCatalogVersion(ctx)
		return err
	})
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		v, err := tx.CatalogVersion(ctx)
		if err != nil {
			return err
		}
		if v != v1+1 {
			t.Errorf("CatalogVersion = %d, want %d", v, v1+1)
		}
		pools, _ := tx.Pools(ctx)
		targets, _ := tx.Targets(ctx)
		tenants, _ := tx.Tenants(ctx)
		if len(pools) != 1 || pools[0].ID != "p2" || len(targets) != 0 || len(tenants) != 0 {
			t.Errorf("after deletes: pools %v, %d targets, %d tenants; want [p2], 0, 0", pools, len(targets), len(tenants))
		}
		return nil
	})
}

func testBackoffRoundTrip(t *testing.T, s corral.Store) {
	want := []corral.Backoff{
		{PoolID: "a", Kind: "provider", Failures: 3, Until: T0.Add(time.Minute), LastError: "engine down"},
		{PoolID: "a", Kind: "refused", Failures: 1, Until: T0.Add(time.Second), LastError: "runner too old"},
		{PoolID: "b", Kind: "provider", Failures: 1, Until: T0, LastError: ""},
	}
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		for _, b := range want {
			if err := tx.PutBackoff(ctx, b); err != nil {
				return err
			}
		}
		// Replace one.
		return tx.PutBackoff(ctx, corral.Backoff{PoolID: "b", Kind: "provider", Failures: 2, Until: T0.Add(time.Hour), LastError: "again"})
	})
	want[2] = corral.Backoff{PoolID: "b", Kind: "provider", Failures: 2, Until: T0.Add(time.Hour), LastError: "again"}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Backoffs(ctx)
		equal(t, "backoffs", got, want)
		return err
	})
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.DeleteBackoff(ctx, "a", "provider") })
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Backoffs(ctx)
		equal(t, "backoffs after delete", got, want[1:])
		return err
	})
}
