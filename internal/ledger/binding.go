package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// start marks a job running and binds it to the instance whose runner took
// it. The runner may have been created for another job with the same
// labels: that job simply loses its instance and the scheduler covers it
// again; instances created for this job are freed for others.
func (l *Ledger) start(ctx context.Context, tx corral.Tx, j *corral.Job, ev corral.JobEvent, now time.Time, stamp func(corral.EventKind, string, string)) error {
	if err := j.Transition(corral.JobRunning); err != nil {
		return err
	}
	j.StartedAt = ev.At
	if j.StartedAt.IsZero() {
		j.StartedAt = now
	}
	j.RunnerName = ev.RunnerName
	j.Reason = ""
	inst, ok, err := ourInstance(ctx, tx, ev.RunnerName)
	if err != nil {
		return err
	}
	if err := l.freeIntents(ctx, tx, j.ID, inst.ID, now); err != nil {
		return err
	}
	if !ok {
		stamp(corral.EvJobStarted, "", "on runner "+ev.RunnerName)
		return nil
	}
	j.InstanceID, j.PoolID = inst.ID, inst.PoolID
	if inst.State == corral.InstDraining {
		stamp(corral.EvJobStarted, inst.ID, "on draining runner "+inst.Name)
		return nil
	}
	switch {
	case inst.State == corral.InstStarting || inst.State == corral.InstPending:
		inst.OnlineAt = now
		stamp(corral.EvRunnerOnline, inst.ID, inst.Name)
	case inst.State == corral.InstIdle:
		// Online before (the runner sweep noted it on the job it was
		// made for, which it may not run); the job it runs learns it here.
		stamp(corral.EvRunnerOnline, inst.ID, inst.Name+" (online since "+inst.OnlineAt.UTC().Format(time.TimeOnly)+")")
	}
	if inst.State == corral.InstPending {
		// The runner runs although the create call never returned (a
		// crash between the provider call and the commit).
		if err := inst.Transition(corral.InstStarting); err != nil {
			return err
		}
	}
	if err := inst.Transition(corral.InstBusy); err != nil {
		return err
	}
	inst.JobID = j.ID
	if ev.RunnerID != 0 {
		inst.RunnerID = ev.RunnerID
	}
	inst.BusyAt, inst.UpdatedAt = now, now
	if err := tx.PutInstance(ctx, &inst); err != nil {
		return err
	}
	stamp(corral.EvJobStarted, inst.ID, "on runner "+inst.Name)
	return nil
}

// complete marks a job completed and sends its instance to be deleted: an
// ephemeral runner that finished its job is done.
func (l *Ledger) complete(ctx context.Context, tx corral.Tx, j *corral.Job, ev corral.JobEvent, now time.Time, stamp func(corral.EventKind, string, string)) error {
	if err := j.Transition(corral.JobCompleted); err != nil {
		return err
	}
	j.Conclusion = ev.Conclusion
	if j.Conclusion == "" {
		j.Conclusion = ConclusionUnknown
	}
	j.CompletedAt = ev.At
	if j.CompletedAt.IsZero() {
		j.CompletedAt = now
	}
	if j.RunnerName == "" {
		j.RunnerName = ev.RunnerName
	}
	var inst corral.Instance
	ok := false
	if j.InstanceID != "" {
		in, err := tx.Instance(ctx, j.InstanceID)
		if err != nil && !errors.Is(err, corral.ErrNotFound) {
			return err
		}
		inst, ok = in, err == nil
	} else if j.RunnerName != "" {
		in, found, err := ourInstance(ctx, tx, j.RunnerName)
		if err != nil {
			return err
		}
		inst, ok = in, found
	}
	if err := l.freeIntents(ctx, tx, j.ID, inst.ID, now); err != nil {
		return err
	}
	stamp(corral.EvJobCompleted, inst.ID, j.Conclusion)
	if !ok || inst.State == corral.InstDraining || inst.State == corral.InstDeleted {
		return nil
	}
	j.InstanceID, j.PoolID = inst.ID, inst.PoolID
	if err := inst.Transition(corral.InstDraining); err != nil {
		return err
	}
	inst.JobID = j.ID
	inst.Reason = ReasonJobCompleted
	inst.DrainAt, inst.UpdatedAt = now, now
	return tx.PutInstance(ctx, &inst)
}

// ourInstance finds the live instance carrying the named runner.
func ourInstance(ctx context.Context, tx corral.Tx, runnerName string) (corral.Instance, bool, error) {
	if runnerName == "" {
		return corral.Instance{}, false, nil
	}
	in, err := tx.InstanceByName(ctx, runnerName)
	if errors.Is(err, corral.ErrNotFound) {
		return corral.Instance{}, false, nil
	}
	if err != nil {
		return corral.Instance{}, false, err
	}
	if !in.State.Live() {
		return corral.Instance{}, false, nil
	}
	return in, true, nil
}

// freeIntents unbinds the not-yet-busy instances created for a job that
// another runner took, so the scheduler can give them to other jobs or
// scale them down.
func (l *Ledger) freeIntents(ctx context.Context, tx corral.Tx, jobID int64, except string, now time.Time) error {
	if jobID == 0 {
		return nil
	}
	ins, err := tx.Instances(ctx, corral.InstanceFilter{JobID: jobID,
		States: []corral.InstanceState{corral.InstPending, corral.InstStarting, corral.InstIdle}})
	if err != nil {
		return err
	}
	for i := range ins {
		if ins[i].ID == except {
			continue
		}
		l.log.Info("instance freed: its job runs elsewhere or is done", "instance", ins[i].ID, "job", jobID, "state", ins[i].State)
		ins[i].JobID = 0
		ins[i].UpdatedAt = now
		if err := tx.PutInstance(ctx, &ins[i]); err != nil {
			return err
		}
	}
	return nil
}
