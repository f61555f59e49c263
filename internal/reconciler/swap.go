package reconciler

import (
	"context"
	"errors"

	"github.com/corral-ci/corral/internal/corral"
)

// Runners take any job their labels cover, so two runners made for two
// jobs of the same labels may take each other's. When corral learns that
// job A runs (or ran) on the runner made for job B, binding A to it leaves
// B without a runner, and the scheduler would start a spare one for B at
// once; without webhooks, B may well be finished already, by the runner
// made for A. confirmDisplaced asks the forge about B first and records
// what it says, so that B is replaced only when it still waits.

// confirmDisplaced is called before ev (a job running or done on the
// runner ev.RunnerName) is recorded.
func (r *Reconciler) confirmDisplaced(ctx context.Context, t corral.Target, f corral.Forge, ev corral.JobEvent) error {
	if ev.RunnerName == "" || (ev.Action != corral.ActionInProgress && ev.Action != corral.ActionCompleted) {
		return nil
	}
	var other corral.Job
	err := r.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		in, err := tx.InstanceByName(ctx, ev.RunnerName)
		if err != nil {
			return err
		}
		if !in.State.Live() || in.JobID == 0 {
			return corral.ErrNotFound
		}
		other, err = tx.Job(ctx, in.JobID)
		return err
	})
	if errors.Is(err, corral.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if other.ForgeJobID == ev.ForgeJobID || other.TargetID != t.ID || other.State != corral.JobRouted {
		return nil // the runner ran the job it was made for, or the other job is accounted for
	}
	oev, err := f.Job(ctx, other.ForgeJobID, other.Repo)
	switch {
	case errors.Is(err, corral.ErrNotFound):
		_, err = r.cfg.Ledger.Finish(ctx, t, other.ForgeJobID, "unknown", "the forge no longer knows it (its runner took another job)")
		return err
	case err != nil:
		return err
	case oev.Action == corral.ActionInProgress || oev.Action == corral.ActionCompleted:
		r.log.Info("runners took each other's jobs: recording the displaced job as the forge has it", "target", t.ID,
			"job", other.ForgeJobID, "state", oev.Action, "runner", ev.RunnerName)
		_, err = r.cfg.Ledger.Observe(ctx, t, oev)
		return err
	}
	return nil // still queued: it is served again
}
