package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// Two handles on one database stand in for two replicas; each runs this
// many goroutines.
const replicaWorkers = 4

// testReplicasLostUpdate: goroutines of two replicas increment one
// instance's Attempts and one job's RunAttempt by read-modify-write of the
// whole row inside Update, as the core does. Every increment must survive:
// a read in Update must see the latest committed row and keep it from
// changing until the transaction ends.
func testReplicasLostUpdate(t *testing.T, a, b corral.Store) {
	const rounds = 25
	in := SampleInstance("i-1", "big", corral.InstIdle)
	in.Attempts = 0
	putInstances(t, a, in)
	j := SampleJob("gh", 1)
	j.RunAttempt = 0
	putJob(t, a, j)

	ctx := testCtx(t)
	start := make(chan struct{})
	errs := make(chan error, 2*replicaWorkers)
	var wg sync.WaitGroup
	for _, s := range []corral.Store{a, b} {
		for w := 0; w < replicaWorkers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < rounds; i++ {
					err := s.Update(ctx, func(tx corral.Tx) error {
						in, err := tx.Instance(ctx, "i-1")
						if err != nil {
							return err
						}
						in.Attempts++
						return tx.PutInstance(ctx, &in)
					})
					if err == nil {
						err = s.Update(ctx, func(tx corral.Tx) error {
							j, err := tx.JobByForgeID(ctx, "gh", 1)
							if err != nil {
								return err
							}
							j.RunAttempt++
							return tx.PutJob(ctx, &j)
						})
					}
					if err != nil {
						errs <- fmt.Errorf("round %d: %w", i, err)
						return
					}
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	const want = 2 * replicaWorkers * rounds
	for _, s := range []corral.Store{a, b} {
		view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
			in, err := tx.Instance(ctx, "i-1")
			if err != nil {
				return err
			}
			j, err := tx.JobByForgeID(ctx, "gh", 1)
			if err != nil {
				return err
			}
			if in.Attempts != want || j.RunAttempt != want {
				t.Errorf("instance Attempts = %d, job RunAttempt = %d; want %d each (lost updates)", in.Attempts, j.RunAttempt, want)
			}
			return nil
		})
	}
}

// testReplicasFirstInsert: goroutines of two replicas ingest the first
// event of the same new job at once; each finds no job and inserts it. The
// losers' PutJob is ErrConflict and their transaction goes on: reading the
// job again finds the winner's row, which they then update. Exactly one job
// exists at the end and no update is lost.
func testReplicasFirstInsert(t *testing.T, a, b corral.Store) {
	const rounds = 10
	ctx := testCtx(t)
	var conflicts atomic.Int64
	for r := 0; r < rounds; r++ {
		forgeID := BigForgeID + int64(r)
		start := make(chan struct{})
		errs := make(chan error, 2*replicaWorkers)
		var wg sync.WaitGroup
		for _, s := range []corral.Store{a, b} {
			for w := 0; w < replicaWorkers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					errs <- s.Update(ctx, func(tx corral.Tx) error {
						j, err := tx.JobByForgeID(ctx, "gh", forgeID)
						if errors.Is(err, corral.ErrNotFound) {
							j = SampleJob("gh", forgeID)
							j.RunAttempt = 0
							err = tx.PutJob(ctx, &j)
							if errors.Is(err, corral.ErrConflict) {
								conflicts.Add(1)
								if j, err = tx.JobByForgeID(ctx, "gh", forgeID); err != nil {
									return fmt.Errorf("read after a conflict: %w", err)
								}
							}
						}
						if err != nil {
							return err
						}
						j.RunAttempt++
						return tx.PutJob(ctx, &j)
					})
				}()
			}
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("round %d: %v", r, err)
			}
		}
		view(t, a, func(ctx context.Context, tx corral.ReadTx) error {
			jobs, err := tx.Jobs(ctx, corral.JobFilter{TargetID: "gh"})
			var n int
			for _, j := range jobs {
				if j.ForgeJobID == forgeID {
					n++
					if j.RunAttempt != 2*replicaWorkers {
						t.Errorf("round %d: RunAttempt = %d, want %d", r, j.RunAttempt, 2*replicaWorkers)
					}
				}
			}
			if n != 1 {
				t.Errorf("round %d: %d jobs with forge id %d, want 1", r, n, forgeID)
			}
			return err
		})
	}
	t.Logf("%d conflicting first inserts in %d rounds", conflicts.Load(), rounds)
}
