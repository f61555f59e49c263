package ledger

import (
	"context"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Reserver reserves an instance for a job in the transaction that routed
// it (the scheduler implements it). ReserveFor checks the limits inside tx
// as any reservation does; it returns nil when it leaves the job to the
// scheduler's next pass (say, a pool that keeps warm runners, or no room).
// Otherwise the caller must call done exactly once after the transaction
// ended, with whether it committed: only then may the instance be created.
type Reserver interface {
	ReserveFor(ctx context.Context, tx corral.Tx, j corral.Job, now time.Time) (done func(committed bool), err error)
}

// claims holds the reservations of one ingest until its transaction ends.
type claims struct{ done []func(bool) }

// reserve asks rs for the instance of the job that a queued event just
// routed (the last change in seen); it reports whether one was reserved.
func (c *claims) reserve(ctx context.Context, tx corral.Tx, rs Reserver, action corral.JobAction, seen []jobChange, now time.Time) (bool, error) {
	if action != corral.ActionQueued || len(seen) == 0 {
		return false, nil
	}
	ch := seen[len(seen)-1]
	if ch.job.State != corral.JobRouted || ch.from == corral.JobRouted {
		return false, nil
	}
	done, err := rs.ReserveFor(ctx, tx, ch.job, now)
	if err != nil || done == nil {
		return false, err
	}
	c.done = append(c.done, done)
	return true, nil
}

// end tells every reservation held whether its transaction committed.
func (c *claims) end(committed bool) {
	for _, d := range c.done {
		d(committed)
	}
	c.done = c.done[:0]
}
