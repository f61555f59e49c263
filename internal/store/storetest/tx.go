package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

var errFn = errors.New("fn failed on purpose")

func testRollbackOnError(t *testing.T, s corral.Store) {
	ctx := testCtx(t)
	err := s.Update(ctx, func(tx corral.Tx) error {
		j := SampleJob("gh", 1)
		if err := tx.PutJob(ctx, &j); err != nil {
			return err
		}
		if err := tx.AddEvent(ctx, corral.Event{JobID: j.ID, At: T0, Kind: corral.EvQueued}); err != nil {
			return err
		}
		in := SampleInstance("i-1", "big", corral.InstPending)
		if err := tx.PutInstance(ctx, &in); err != nil {
			return err
		}
		if _, err := tx.InsertDelivery(ctx, "gh", "d-1", T0); err != nil {
			return err
		}
		return fmt.Errorf("after writing: %w", errFn)
	})
	wantErr(t, "Update", err, errFn)
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		_, err := tx.JobByForgeID(ctx, "gh", 1)
		wantErr(t, "rolled-back job", err, corral.ErrNotFound)
		_, err = tx.Instance(ctx, "i-1")
		wantErr(t, "rolled-back instance", err, corral.ErrNotFound)
		return nil
	})
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		fresh, err := tx.InsertDelivery(ctx, "gh", "d-1", T0)
		if !fresh {
			t.Error("rolled-back delivery is still recorded")
		}
		return err
	})
}

// testConcurrentMixed runs many Updates at once, every other one failing:
// the failures roll back their own writes only (with group commit they may
// share a transaction with the successes).
func testConcurrentMixed(t *testing.T, s corral.Store) {
	ctx := testCtx(t)
	const n = 32
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.Update(ctx, func(tx corral.Tx) error {
				j := SampleJob("gh", int64(i+1))
				if err := tx.PutJob(ctx, &j); err != nil {
					return err
				}
				in := SampleInstance(fmt.Sprintf("i-%02d", i), "big", corral.InstPending)
				if err := tx.PutInstance(ctx, &in); err != nil {
					return err
				}
				if i%2 == 1 {
					return errFn
				}
				return nil
			})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if i%2 == 1 {
			wantErr(t, fmt.Sprintf("failing Update %d", i), err, errFn)
		} else if err != nil {
			t.Errorf("Update %d: %v", i, err)
		}
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		for i := 0; i < n; i++ {
			_, jerr := tx.JobByForgeID(ctx, "gh", int64(i+1))
			_, ierr := tx.Instance(ctx, fmt.Sprintf("i-%02d", i))
			if i%2 == 1 {
				wantErr(t, fmt.Sprintf("job of failed Update %d", i), jerr, corral.ErrNotFound)
				wantErr(t, fmt.Sprintf("instance of failed Update %d", i), ierr, corral.ErrNotFound)
			} else if jerr != nil || ierr != nil {
				t.Errorf("writes of Update %d lost: job %v, instance %v", i, jerr, ierr)
			}
		}
		n, err := tx.CountInstances(ctx, corral.CountFilter{})
		if n != 16 {
			t.Errorf("CountInstances = %d, want 16", n)
		}
		return err
	})
}

// testGoOnAfterExpectedErrors: ErrConflict and ErrNotFound are answers,
// not broken transactions: fn may go on and commit (PostgreSQL aborts a
// transaction on a failed statement; the store must not let that happen).
func testGoOnAfterExpectedErrors(t *testing.T, s corral.Store) {
	first := putJob(t, s, SampleJob("gh", 1))
	putInstances(t, s, SampleInstance("i-1", "big", corral.InstIdle))
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		dup := SampleJob("gh", 1)
		wantErr(t, "duplicate job", tx.PutJob(ctx, &dup), corral.ErrConflict)
		clash := SampleInstance("i-2", "big", corral.InstPending)
		clash.Name = "corral-i-1"
		wantErr(t, "duplicate name", tx.PutInstance(ctx, &clash), corral.ErrConflict)
		wantErr(t, "event of an unknown job", tx.AddEvent(ctx, corral.Event{JobID: first.ID + 1000, At: T0, Kind: corral.EvNote}), corral.ErrNotFound)
		missing := SampleJob("gh", 9)
		missing.ID = first.ID + 1000
		wantErr(t, "update of a missing job", tx.PutJob(ctx, &missing), corral.ErrNotFound)
		_, err := tx.Job(ctx, first.ID+1000)
		wantErr(t, "missing job", err, corral.ErrNotFound)
		// The transaction still works and commits.
		got, err := tx.JobByForgeID(ctx, "gh", 1)
		if err != nil {
			return err
		}
		if err := tx.AddEvent(ctx, corral.Event{JobID: got.ID, At: T0, Kind: corral.EvRouted}); err != nil {
			return err
		}
		second := SampleJob("gh", 2)
		return tx.PutJob(ctx, &second)
	})
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		if _, err := tx.JobByForgeID(ctx, "gh", 2); err != nil {
			t.Errorf("job written after the expected errors: %v", err)
		}
		events, err := tx.Timeline(ctx, first.ID)
		if len(events) != 1 {
			t.Errorf("timeline has %d events, want 1", len(events))
		}
		return err
	})
}

func testUpdateCanceled(t *testing.T, s corral.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := s.Update(ctx, func(tx corral.Tx) error { called = true; return nil })
	wantErr(t, "Update with a canceled context", err, context.Canceled)
	if called {
		t.Error("fn ran under a canceled context")
	}
	err = s.View(ctx, func(tx corral.ReadTx) error { return nil })
	wantErr(t, "View with a canceled context", err, context.Canceled)
}

func testReadsOwnWrites(t *testing.T, s corral.Store) {
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		j := SampleJob("gh", 1)
		if err := tx.PutJob(ctx, &j); err != nil {
			return err
		}
		got, err := tx.JobByForgeID(ctx, "gh", 1)
		if err != nil {
			return err
		}
		equal(t, "job read in its own tx", got, j)
		in := SampleInstance("i-1", "big", corral.InstPending)
		if err := tx.PutInstance(ctx, &in); err != nil {
			return err
		}
		n, err := tx.CountInstances(ctx, corral.CountFilter{PoolID: "big"})
		if n != 1 {
			t.Errorf("count in own tx = %d, want 1", n)
		}
		return err
	})
}

// testConcurrentReservations: 8 goroutines reserve instances in a pool of
// at most 5 under LockLimits, while some of them free capacity again; the
// live count never exceeds 5, seen from inside and after.
func testConcurrentReservations(t *testing.T, s corral.Store) {
	ctx := testCtx(t)
	const (
		workers = 8
		tries   = 30
		max     = 5
	)
	var (
		mu       sync.Mutex
		inserted int
	)
	start := make(chan struct{})
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var mine []string // live instances this worker reserved
			for i := 0; i < tries; i++ {
				if i%4 == 3 && len(mine) > 0 {
					// Free one: a deletion needs no lock.
					id := mine[0]
					err := s.Update(ctx, func(tx corral.Tx) error {
						in, err := tx.Instance(ctx, id)
						if err != nil {
							return err
						}
						in.State = corral.InstDeleted
						return tx.PutInstance(ctx, &in)
					})
					if err != nil {
						errs <- fmt.Errorf("free %s: %w", id, err)
						return
					}
					mine = mine[1:]
					continue
				}
				id := fmt.Sprintf("r-%d-%d", w, i)
				var got bool
				err := s.Update(ctx, func(tx corral.Tx) error {
					got = false
					if err := tx.LockLimits(ctx, "acme", "big"); err != nil {
						return err
					}
					n, err := tx.CountInstances(ctx, corral.CountFilter{PoolID: "big"})
					if err != nil {
						return err
					}
					if n > max {
						return fmt.Errorf("before insert: %d live instances, max %d", n, max)
					}
					if n == max {
						return nil
					}
					// The tenant's count too (every instance here is in that
					// pool): frees may lower it meanwhile (they take no
					// lock), but no reservation may raise it. A second read
					// also widens the window a missing lock would leave.
					if nt, err := tx.CountInstances(ctx, corral.CountFilter{TenantID: "acme"}); err != nil {
						return err
					} else if nt > n {
						return fmt.Errorf("tenant counts %d live instances, pool %d a moment before", nt, n)
					}
					in := corral.Instance{ID: id, Name: id, TenantID: "acme", PoolID: "big", State: corral.InstPending}
					if err := tx.PutInstance(ctx, &in); err != nil {
						return err
					}
					if n, err = tx.CountInstances(ctx, corral.CountFilter{PoolID: "big"}); err != nil {
						return err
					} else if n > max {
						return fmt.Errorf("after insert: %d live instances, max %d", n, max)
					}
					got = true
					return nil
				})
				if err != nil {
					errs <- fmt.Errorf("reserve %s: %w", id, err)
					return
				}
				if got {
					mine = append(mine, id)
					mu.Lock()
					inserted++
					mu.Unlock()
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if inserted <= max {
		t.Errorf("only %d reservations succeeded: the test did not contend", inserted)
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		n, err := tx.CountInstances(ctx, corral.CountFilter{PoolID: "big"})
		if n > max {
			t.Errorf("after: %d live instances, max %d", n, max)
		}
		return err
	})
}
