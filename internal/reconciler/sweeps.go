package reconciler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
)

// repoObserver is a forge that sweeps per repository and wants to know the
// repositories corral has seen jobs of (GitHub organization and enterprise
// targets).
type repoObserver interface{ ObserveRepo(repo string) }

// redeliverer is a forge that can have its failed webhook deliveries sent
// again (a GitHub App): a queued event that never arrived is rescued in
// seconds instead of at the next job sweep.
type redeliverer interface {
	RedeliverFailed(ctx context.Context, since time.Time) (int, error)
}

// maxLookups bounds the single-job calls one forge sweep makes per target,
// so a burst of finished jobs whose webhooks were lost costs the forge a
// bounded number of calls per sweep.
const maxLookups = 100

// ForgeSweep lists each target's open jobs at the forge: it records the
// ones no webhook brought and finishes the ones the forge no longer lists.
func (r *Reconciler) ForgeSweep(ctx context.Context) error {
	var errs []error
	for _, t := range r.v().targets {
		if err := r.sweepTarget(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("forge sweep of %s: %w", t.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) sweepTarget(ctx context.Context, t corral.Target) error {
	f, err := r.cfg.Forges.Forge(t)
	if err != nil {
		return err
	}
	start := r.clock.Now()
	var known []corral.Job
	err = r.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		known, err = tx.Jobs(ctx, corral.JobFilter{TargetID: t.ID, Brief: true, States: []corral.JobState{
			corral.JobPending, corral.JobQueued, corral.JobRouted, corral.JobUnroutable, corral.JobRunning}})
		return err
	})
	if err != nil {
		return err
	}
	if o, ok := f.(repoObserver); ok {
		for _, j := range known {
			if j.Repo != "" {
				o.ObserveRepo(j.Repo)
			}
		}
	}
	var open []corral.JobEvent
	var skipped map[int64]bool
	if sk, ok := f.(corral.RunSkimmer); ok {
		runs := map[int64]bool{}
		for _, j := range known {
			if j.RunID != 0 {
				runs[j.RunID] = true
			}
		}
		open, skipped, err = sk.OpenJobsKnowing(ctx, runs)
	} else {
		open, err = f.OpenJobs(ctx)
	}
	if err != nil {
		return err
	}
	byID := make(map[int64]corral.Job, len(known))
	for _, j := range known {
		byID[j.ForgeJobID] = j
	}
	seen := make(map[int64]bool, len(open))
	var errs []error
	for _, ev := range open {
		seen[ev.ForgeJobID] = true
		j, ok := byID[ev.ForgeJobID]
		if ok && (ev.Action != corral.ActionInProgress || j.State == corral.JobRunning) {
			continue // nothing new
		}
		if err := r.confirmDisplaced(ctx, t, f, ev); err != nil {
			errs = append(errs, err)
		}
		res, err := r.cfg.Ledger.Observe(ctx, t, ev)
		if err != nil {
			errs = append(errs, err)
		}
		if res.Created {
			r.rec.Action(ActRescued)
		}
	}
	// A job gone from the open list is asked about once more: paged
	// listings shift while they are read, so absence alone proves nothing.
	// One that changed within AbsentGrace waits for the next sweep, once:
	// a record that keeps changing cannot put the question off for ever.
	var absent []corral.Job
	deferred := map[int64]bool{}
	r.absentMu.Lock()
	before := r.deferred[t.ID]
	r.absentMu.Unlock()
	for _, j := range known {
		if seen[j.ForgeJobID] || !j.CreatedAt.Before(start) || (j.RunID != 0 && skipped[j.RunID]) {
			continue // listed, new, or of a run left unlisted (the ledger's view stands)
		}
		if start.Sub(j.UpdatedAt) < r.cfg.AbsentGrace && !before[j.ForgeJobID] {
			deferred[j.ForgeJobID] = true
			continue
		}
		absent = append(absent, j)
	}
	r.absentMu.Lock()
	r.deferred[t.ID] = deferred
	r.absentMu.Unlock()
	if len(absent) > maxLookups {
		// The rest wait for a later sweep; shuffled, so no job is
		// skipped forever behind the same hundred.
		rand.Shuffle(len(absent), func(a, b int) { absent[a], absent[b] = absent[b], absent[a] })
		absent = absent[:maxLookups]
	}
	for _, j := range absent {
		r.log.Debug("open job absent from the forge's listing; asking the forge", "target", t.ID, "job", j.ForgeJobID, "state", j.State)
		ev, err := f.Job(ctx, j.ForgeJobID, j.Repo)
		finished := false
		switch {
		case errors.Is(err, corral.ErrNotFound):
			finished, err = r.cfg.Ledger.Finish(ctx, t, j.ForgeJobID, ledger.ConclusionUnknown, "sweep: the forge no longer knows it")
		case err != nil:
		case ev.Action == corral.ActionCompleted,
			ev.Action == corral.ActionInProgress && j.State != corral.JobRunning:
			var res ledger.Result
			res, err = r.cfg.Ledger.Observe(ctx, t, ev)
			finished = res.Changed && ev.Action == corral.ActionCompleted
		}
		if finished {
			r.rec.Action(ActFinished)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RunnerSweep removes registrations of corral's that have no live instance
// (ghosts), never a busy one, and notes runners that came online.
func (r *Reconciler) RunnerSweep(ctx context.Context) error {
	var errs []error
	for _, t := range r.v().targets {
		if err := r.sweepRunners(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("runner sweep of %s: %w", t.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) sweepRunners(ctx context.Context, t corral.Target) error {
	f, runners, err := r.listRunners(ctx, t)
	if err != nil {
		return err
	}
	// Read the ledger after the forge: a runner is minted only for an
	// instance row that exists already, so a runner listed above with no
	// live row read below is a ghost.
	ins, err := r.liveInstances(ctx)
	if err != nil {
		return err
	}
	return r.runnersAgainst(ctx, t, f, runners, ins)
}

func (r *Reconciler) listRunners(ctx context.Context, t corral.Target) (corral.Forge, []corral.Runner, error) {
	f, err := r.cfg.Forges.Forge(t)
	if err != nil {
		return nil, nil, err
	}
	runners, err := f.Runners(ctx)
	return f, runners, err
}

// runnersAgainst compares a target's runners, listed before ins was read,
// with the live instances.
func (r *Reconciler) runnersAgainst(ctx context.Context, t corral.Target, f corral.Forge, runners []corral.Runner, ins []corral.Instance) error {
	byName := make(map[string]*corral.Instance, len(ins))
	for i := range ins {
		byName[ins[i].Name] = &ins[i]
	}
	now := r.clock.Now()
	var errs []error
	for _, rn := range runners {
		in, ok := byName[rn.Name]
		if !ok {
			if rn.Busy {
				r.log.Warn("runner without a live instance is busy; left alone", "target", t.ID, "runner", rn.Name)
				continue
			}
			if err := f.RemoveRunner(ctx, rn); err != nil && !errors.Is(err, corral.ErrNotFound) {
				errs = append(errs, fmt.Errorf("remove ghost runner %s: %w", rn.Name, err))
			} else {
				r.rec.Action(ActGhost)
				r.log.Info("removed ghost runner", "target", t.ID, "runner", rn.Name)
			}
			continue
		}
		if in.State == corral.InstStarting && rn.Online {
			if err := r.online(ctx, in.ID, rn.ID, now); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// online marks a starting instance's runner online (idle).
func (r *Reconciler) online(ctx context.Context, id string, runnerID int64, now time.Time) error {
	return r.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		in, err := tx.Instance(ctx, id)
		if err != nil {
			return err
		}
		if in.State != corral.InstStarting {
			return nil
		}
		if err := in.Transition(corral.InstIdle); err != nil {
			return err
		}
		in.OnlineAt, in.UpdatedAt = now, now
		if runnerID != 0 {
			in.RunnerID = runnerID
		}
		if err := tx.PutInstance(ctx, &in); err != nil {
			return err
		}
		if in.JobID == 0 {
			return nil
		}
		// A note, not runner_online: the runner may take another job of
		// the same labels; the job it takes gets runner_online (ledger).
		return tx.AddEvent(ctx, corral.Event{JobID: in.JobID, At: now, Kind: corral.EvNote, InstanceID: id,
			Detail: "runner " + in.Name + " made for this job is online"})
	})
}

// ProviderSweep deletes instances tagged with this controller that the
// store does not know or has deleted (orphans), drains instances whose
// runner exited, and forgets instances their provider lost.
func (r *Reconciler) ProviderSweep(ctx context.Context) error {
	var errs []error
	for name, p := range r.cfg.Providers {
		if err := r.sweepProvider(ctx, name, p); err != nil {
			errs = append(errs, fmt.Errorf("provider sweep of %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) sweepProvider(ctx context.Context, name string, p corral.Provider) error {
	start := r.clock.Now()
	// List before reading the store: an instance row is written before
	// its provider call, so a listed instance unknown to the store read
	// afterwards is an orphan, never a create under way.
	pis, err := p.List(ctx, r.cfg.ControllerID)
	if err != nil {
		r.rec.ProviderError(name, corral.ProviderCallList)
		return err
	}
	ins, err := r.liveInstances(ctx)
	if err != nil {
		return err
	}
	return r.providerAgainst(ctx, name, p, pis, ins, start)
}

// providerAgainst compares what a provider listed at start (before ins was
// read) with the live instances.
func (r *Reconciler) providerAgainst(ctx context.Context, name string, p corral.Provider, pis []corral.ProviderInstance, ins []corral.Instance, start time.Time) error {
	live := make(map[string]*corral.Instance, len(ins))
	for i := range ins {
		live[ins[i].ID] = &ins[i]
	}
	listed := make(map[string]bool, len(pis))
	var errs []error
	for _, pi := range pis {
		listed[pi.InstanceID] = true
		in, ok := live[pi.InstanceID]
		if !ok {
			if err := p.Delete(ctx, pi); err != nil {
				r.rec.ProviderError(name, corral.ProviderCallDelete)
				errs = append(errs, fmt.Errorf("delete orphan %s: %w", pi.InstanceID, err))
			} else {
				r.rec.Action(ActOrphan)
				r.log.Info("deleted orphan instance", "provider", name, "instance", pi.InstanceID)
			}
			continue
		}
		if !pi.Running && in.State != corral.InstPending && in.State != corral.InstDraining {
			if err := r.exited(ctx, in.ID, []corral.InstanceState{corral.InstStarting, corral.InstIdle, corral.InstBusy}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, in := range ins {
		if r.providerName(in) != name || listed[in.ID] {
			continue
		}
		switch in.State {
		case corral.InstStarting, corral.InstIdle, corral.InstBusy:
			if in.StartedAt.Before(start) {
				if err := r.drain(ctx, in.ID, "instance vanished at its provider", []corral.InstanceState{in.State}); err != nil {
					errs = append(errs, err)
				} else {
					r.rec.Action(ActVanished)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Timeouts replaces runners that never came online, stops jobs past the
// max job runtime and instances past their max lifetime.
func (r *Reconciler) Timeouts(ctx context.Context) error {
	ins, err := r.liveInstances(ctx)
	if err != nil {
		return err
	}
	return r.timeouts(ctx, ins)
}

func (r *Reconciler) timeouts(ctx context.Context, ins []corral.Instance) error {
	now := r.clock.Now()
	var errs []error
	for _, in := range ins {
		if in.State == corral.InstDraining {
			continue
		}
		pool, ok := r.v().pools[in.PoolID]
		reason, force, act := "", false, ""
		switch {
		case !ok:
			reason, act = "its pool is no longer configured", ActPoolRemoved
		case in.State == corral.InstBusy && pool.MaxJobRuntime > 0 && now.Sub(in.BusyAt) > pool.MaxJobRuntime:
			reason, force, act = "max job runtime exceeded", true, ActJobTimeout
		case !in.ExpiresAt.IsZero() && now.After(in.ExpiresAt):
			// The instance stopped itself at its deadline; clean up.
			reason, force, act = "max lifetime reached", true, ActLifetime
		case in.State != corral.InstBusy && in.State != corral.InstPending && !in.ExpiresAt.IsZero() &&
			now.After(in.ExpiresAt.Add(-pool.MaxJobRuntime)):
			// Too close to its deadline to finish a job it might take.
			reason, act = "too close to its max lifetime to take a job", ActLifetime
		case in.State == corral.InstStarting && pool.BootTimeout > 0 && now.Sub(in.StartedAt) > pool.BootTimeout:
			reason, act = "runner did not come online within the boot timeout", ActBootTimeout
		default:
			continue
		}
		if err := r.cfg.Retirer.Retire(ctx, in, reason, force); err != nil {
			errs = append(errs, fmt.Errorf("retire %s (%s): %w", in.ID, reason, err))
		} else {
			r.rec.Action(act)
			r.log.Info("retired instance", "instance", in.ID, "reason", reason)
		}
	}
	return errors.Join(errs...)
}

// providerName is the provider instance that makes and deletes in: the one
// recorded on it or, for rows older than that record, its pool's ("" when
// the pool is gone too).
func (r *Reconciler) providerName(in corral.Instance) string {
	if in.Provider != "" {
		return in.Provider
	}
	return r.v().pools[in.PoolID].Provider
}
