package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
)

// create claims a new attempt for a pending instance (after a crash, or a
// create another replica left) and then creates it.
func (s *Scheduler) create(ctx context.Context, in corral.Instance) {
	expected := in.Attempts
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		// Claim the attempt under the pool's limit lock, so that of two
		// schedulers (replicas racing without a leader) only one creates.
		if err := tx.LockLimits(ctx, in.TenantID, in.PoolID); err != nil {
			return err
		}
		cur, err := tx.Instance(ctx, in.ID)
		if err != nil {
			return err
		}
		if cur.State != corral.InstPending || cur.Attempts != expected {
			return errSkip
		}
		cur.Attempts++
		cur.UpdatedAt = s.clock.Now()
		in = cur
		return tx.PutInstance(ctx, &cur)
	})
	if errors.Is(err, errSkip) {
		return
	}
	if err != nil {
		s.log.Warn("record create attempt", "instance", in.ID, "err", err)
		return
	}
	s.createClaimed(ctx, in)
}

// createClaimed mints a runner credential and asks the provider for the
// instance. The attempt is already recorded (with the reservation or by
// create), so that after a crash the instance is adopted (if the provider
// made it) or created again.
func (s *Scheduler) createClaimed(ctx context.Context, in corral.Instance) {
	pool, okPool := s.v().pools[in.PoolID]
	target, okTarget := s.v().targets[in.TargetID]
	if !okPool || !okTarget {
		s.fail(ctx, in, fmt.Errorf("pool %q or target %q is no longer configured", in.PoolID, in.TargetID))
		return
	}
	spec := corral.InstanceSpec{
		InstanceID: in.ID, Name: in.Name, ControllerID: s.cfg.ControllerID, PoolID: pool.ID,
		Image: pool.Image, Flavor: in.Flavor, Labels: in.Labels, Deadline: in.ExpiresAt,
		Options: pool.ProviderOptions,
	}
	provName := s.providerName(in)
	prov, ok := s.cfg.Providers[provName]
	if !ok {
		s.fail(ctx, in, fmt.Errorf("provider %q is not open", provName))
		return
	}
	if pool.ManagedRunner {
		if s.cfg.RunnerDir == nil {
			s.fail(ctx, in, fmt.Errorf("pool %s wants a managed runner, but corral keeps no runner releases (config: runners)", pool.ID))
			return
		}
		dir, err := s.cfg.RunnerDir(pool, target)
		if err != nil {
			s.fail(ctx, in, fmt.Errorf("managed runner for pool %s: %w", pool.ID, err))
			return
		}
		spec.RunnerDir = dir
		if spec.Image == "" {
			spec.Image = dir // providers that run a directory run the runner itself
		}
	}
	forge, err := s.cfg.Forges.Forge(target)
	if err != nil {
		s.fail(ctx, in, err)
		return
	}
	if !s.mayAct(in, "mint a runner credential") {
		return
	}
	rs := corral.RunnerSpec{Name: in.Name, Labels: in.Labels, InstanceID: in.ID, Pool: in.PoolID}
	if in.JobID != 0 && target.Mode == corral.ModeOneJob {
		// The runner is bound to this job: the forge needs its id.
		err := s.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
			j, err := tx.Job(ctx, in.JobID)
			rs.ForgeJobID = j.ForgeJobID
			return err
		})
		if err != nil {
			s.fail(ctx, in, fmt.Errorf("read the job of a one-job runner: %w", err))
			return
		}
	}
	boot, err := forge.MintRunner(ctx, rs)
	if errors.Is(err, corral.ErrConflict) && in.Attempts > 1 {
		// A retried create whose runner is registered and busy: the first
		// attempt's runner is at work (corral died before recording it).
		// Adopt it; never delete an instance whose runner runs a job.
		s.log.Warn("adopting an instance whose runner is already at work", "instance", in.ID, "err", err)
		s.started(ctx, in.ID, "", 0, "adopted: its runner was already at work")
		return
	}
	if err != nil && in.JobID != 0 && errors.Is(err, corral.ErrJobNotWaiting) {
		s.jobNotWaiting(ctx, in, err)
		return
	}
	if err != nil && in.JobID != 0 && jobFault(err) {
		s.refuseJob(ctx, in, fmt.Errorf("mint runner credential: %w", err))
		return
	}
	if err != nil {
		s.fail(ctx, in, fmt.Errorf("mint runner credential: %w", err))
		return
	}
	spec.Bootstrap = boot
	if !s.mayAct(in, "create") {
		return
	}
	pi, err := prov.Create(ctx, spec)
	if err == nil && !s.mayAct(in, "record a create") {
		// The term may have lapsed during the create (this replica was
		// paused inside it): the record below is refused by the fence,
		// and the next leader adopts or deletes the instance.
		s.log.Warn("an instance was created while this replica's term may have lapsed", "instance", in.ID, "provider_id", pi.ProviderID)
	}
	if err != nil {
		s.rec.ProviderError(provName, corral.ProviderCallCreate)
		s.fail(ctx, in, fmt.Errorf("provider %s create: %w", provName, err))
		return
	}
	s.back.ok(pool.ID)
	s.started(ctx, in.ID, pi.ProviderID, boot.RunnerID, "created")
}

var errSkip = errors.New("skip")

// mayAct reports whether this replica may still act in its leader term,
// checked right before an action outside the store (see leader.Fenced.Valid);
// a store without terms (a single replica, tests) always may. A refused
// action is left to the next leader: the instance stays as recorded.
func (s *Scheduler) mayAct(in corral.Instance, what string) bool {
	v, ok := s.cfg.Store.(interface{ Valid() error })
	if !ok {
		return true
	}
	if err := v.Valid(); err != nil {
		s.log.Warn("not acting: "+what, "instance", in.ID, "err", err)
		return false
	}
	return true
}

// providerName is the provider instance that makes and deletes in: the one
// recorded on it or, for rows older than that record, its pool's ("" when
// the pool is gone too).
func (s *Scheduler) providerName(in corral.Instance) string {
	if in.Provider != "" {
		return in.Provider
	}
	return s.v().pools[in.PoolID].Provider
}

// lostAfter: an instance whose provider has refused to delete it as
// unreachable for this long is written off as lost.
const lostAfter = 5 * time.Minute

// started moves a pending instance to starting once its provider made it.
func (s *Scheduler) started(ctx context.Context, id, providerID string, runnerID int64, how string) {
	now := s.clock.Now()
	created := ""
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		created = ""
		cur, err := tx.Instance(ctx, id)
		if err != nil {
			return err
		}
		if cur.ProviderID != "" {
			return nil // recorded already (an adoption racing a create)
		}
		created = cur.PoolID
		cur.ProviderID = providerID
		if runnerID != 0 {
			cur.RunnerID = runnerID
		}
		cur.StartedAt, cur.UpdatedAt = now, now
		if cur.State == corral.InstPending {
			if err := cur.Transition(corral.InstStarting); err != nil {
				return err
			}
		}
		if err := tx.PutInstance(ctx, &cur); err != nil {
			return err
		}
		if cur.JobID == 0 {
			return nil
		}
		return tx.AddEvent(ctx, corral.Event{JobID: cur.JobID, At: now, Kind: corral.EvInstanceCreated,
			InstanceID: id, Detail: cur.Name + " " + how})
	})
	if err != nil {
		s.log.Warn("record instance started", "instance", id, "err", err)
	} else if created != "" {
		s.rec.InstanceCreated(created)
	}
}

// drainFailed sends a pending instance whose create failed to be deleted,
// with the error and the reason; ok is false when it is no longer pending
// (nothing to do).
func drainFailed(ctx context.Context, tx corral.Tx, id, msg, reason string, now time.Time) (corral.Instance, bool, error) {
	cur, err := tx.Instance(ctx, id)
	if err != nil || cur.State != corral.InstPending {
		return cur, false, err
	}
	if err := cur.Transition(corral.InstDraining); err != nil {
		return cur, false, err
	}
	cur.LastError, cur.Reason = msg, reason
	cur.DrainAt, cur.UpdatedAt = now, now
	return cur, true, tx.PutInstance(ctx, &cur)
}

// fail records a failed create: the pool backs off, the instance is sent to
// be deleted (whatever part of it exists), and its job waits for the next
// pass, in this pool after the rest or in another that accepts it.
func (s *Scheduler) fail(ctx context.Context, in corral.Instance, cause error) {
	now := s.clock.Now()
	rest := s.back.fail(in.PoolID, now, cause)
	s.log.Warn("instance create failed", "instance", in.ID, "pool", in.PoolID, "rest", rest, "err", cause)
	msg := cause.Error()
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		cur, ok, err := drainFailed(ctx, tx, in.ID, msg, "create failed", now)
		if err != nil || !ok {
			return err
		}
		if cur.JobID == 0 {
			return nil
		}
		return tx.AddEvent(ctx, corral.Event{JobID: cur.JobID, At: now, Kind: corral.EvNote, InstanceID: in.ID,
			Detail: fmt.Sprintf("instance create failed (pool %s rests %s): %s", in.PoolID, rest.Round(1e6), msg)})
	})
	if err != nil {
		s.log.Warn("record create failure", "instance", in.ID, "err", err)
	}
	s.Wake()
}

// destroy deletes a draining instance at its provider, removes its runner
// registration and marks it deleted.
func (s *Scheduler) destroy(ctx context.Context, in corral.Instance) {
	provs := s.cfg.Providers
	if name := s.providerName(in); name != "" {
		p, ok := s.cfg.Providers[name]
		if !ok {
			// Its provider is neither configured nor retired (its stored
			// definition could not be opened): report, never forget it.
			s.log.Debug("instance left: its provider is not open", "provider", name, "instance", in.ID)
			return
		}
		provs = map[string]corral.Provider{name: p}
	}
	// An instance from before instances recorded their provider, of a
	// pool gone from the config: ask every provider to delete it
	// (deleting what one does not hold is a no-op).
	if !s.mayAct(in, "delete") {
		return
	}
	if s.cfg.BeforeDelete != nil {
		s.cfg.BeforeDelete(ctx, in)
	}
	lost := false
	for name, prov := range provs {
		err := prov.Delete(ctx, corral.ProviderInstance{ProviderID: in.ProviderID, InstanceID: in.ID, PoolID: in.PoolID})
		if err == nil {
			continue
		}
		s.rec.ProviderError(name, corral.ProviderCallDelete)
		if errors.Is(err, corral.ErrUnavailable) && (in.ProviderID == "" || s.clock.Now().Sub(in.DrainAt) > lostAfter) {
			// Its engine or host has been unreachable for long, or the
			// instance's create never succeeded (a create on an engine
			// that had just gone): the instance is lost. It stops
			// counting against the limits; if the engine comes back
			// with something of it, the provider sweep finds it unknown
			// and deletes it then, and the runner sweep its
			// registration.
			s.log.Warn("instance lost: its provider has been unreachable since it was to be deleted", "provider", name, "instance", in.ID, "err", err)
			lost = true
			continue
		}
		s.log.Warn("provider delete failed", "provider", name, "instance", in.ID, "err", err)
		return
	}

	// An ephemeral runner that finished its job is deregistered by the
	// forge itself: no call for it (the runner sweep removes any that a
	// forge left behind). Every other instance's registration is removed.
	if t, ok := s.v().targets[in.TargetID]; ok && in.Reason != ledger.ReasonJobCompleted {
		if f, err := s.cfg.Forges.Forge(t); err == nil {
			err = f.RemoveRunner(ctx, corral.Runner{ID: in.RunnerID, Name: in.Name})
			if err != nil && !errors.Is(err, corral.ErrNotFound) {
				// The instance is gone; the runner sweep removes the
				// registration once the forge lets it go.
				s.log.Info("runner registration left for the runner sweep", "instance", in.ID, "err", err)
			}
		}
	}
	now := s.clock.Now()
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		cur, err := tx.Instance(ctx, in.ID)
		if err != nil {
			return err
		}
		if cur.State == corral.InstDeleted {
			return nil // deleted already (a second delete from an older snapshot)
		}
		if lost {
			cur.Reason = "lost (provider unreachable): " + cur.Reason
		}
		if err := cur.Transition(corral.InstDeleted); err != nil {
			return err
		}
		cur.DeletedAt, cur.UpdatedAt = now, now
		if err := tx.PutInstance(ctx, &cur); err != nil {
			return err
		}
		if cur.JobID == 0 {
			return nil
		}
		return tx.AddEvent(ctx, corral.Event{JobID: cur.JobID, At: now, Kind: corral.EvInstanceDeleted,
			InstanceID: in.ID, Detail: cur.Reason})
	})
	if err != nil {
		s.log.Warn("record instance deleted", "instance", in.ID, "err", err)
	}
}

// Retire sends a starting or idle instance to be deleted. Unless force is
// set, it first removes the runner's registration at the forge, which the
// forge refuses while the runner is busy: a busy runner is never killed.
func (s *Scheduler) Retire(ctx context.Context, in corral.Instance, reason string, force bool) error {
	return s.retire(ctx, in, reason, force)
}

func (s *Scheduler) retire(ctx context.Context, in corral.Instance, reason string, force bool) error {
	if !force && in.State != corral.InstPending {
		t, ok := s.v().targets[in.TargetID]
		if !ok {
			return fmt.Errorf("target %q is no longer configured", in.TargetID)
		}
		f, err := s.cfg.Forges.Forge(t)
		if err != nil {
			return err
		}
		if !s.mayAct(in, "remove a runner registration") {
			return fmt.Errorf("retire %s: %w", in.ID, corral.ErrFenced)
		}
		if err := f.RemoveRunner(ctx, corral.Runner{ID: in.RunnerID, Name: in.Name}); err != nil && !errors.Is(err, corral.ErrNotFound) {
			return fmt.Errorf("remove runner %s before retiring: %w", in.Name, err)
		}
	}
	now := s.clock.Now()
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		cur, err := tx.Instance(ctx, in.ID)
		if err != nil {
			return err
		}
		if cur.State == corral.InstDraining || cur.State == corral.InstDeleted {
			return nil
		}
		if cur.State == corral.InstBusy && !force {
			return fmt.Errorf("instance %s became busy: %w", in.ID, corral.ErrBusy)
		}
		if err := cur.Transition(corral.InstDraining); err != nil {
			return err
		}
		cur.Reason, cur.DrainAt, cur.UpdatedAt = reason, now, now
		return tx.PutInstance(ctx, &cur)
	})
	if err == nil {
		s.log.Info("retiring instance", "instance", in.ID, "state", in.State, "job", in.JobID, "reason", reason, "forced", force)
		s.Wake()
	}
	return err
}

// retryInterrupted handles pending instances whose create was cut short by
// a crash: adopt those the provider made, create the others again.
func (s *Scheduler) retryInterrupted(ctx context.Context, ins []corral.Instance) {
	byProv := map[string][]corral.Instance{}
	for _, in := range ins {
		s.mu.Lock()
		busy := s.inflight[in.ID]
		s.mu.Unlock()
		if busy {
			continue
		}
		if _, ok := s.v().pools[in.PoolID]; !ok {
			continue
		}
		name := s.providerName(in)
		byProv[name] = append(byProv[name], in)
	}
	for name, list := range byProv {
		prov, ok := s.cfg.Providers[name]
		if !ok {
			continue
		}
		have, err := prov.List(ctx, s.cfg.ControllerID)
		if err != nil {
			s.rec.ProviderError(name, corral.ProviderCallList)
			s.log.Warn("provider list for adoption failed", "provider", name, "err", err)
			continue
		}
		found := map[string]corral.ProviderInstance{}
		for _, pi := range have {
			found[pi.InstanceID] = pi
		}
		for _, in := range list {
			if pi, ok := found[in.ID]; ok && pi.Running {
				s.started(ctx, in.ID, pi.ProviderID, 0, "adopted after restart")
				continue
			}
			if _, ok := found[in.ID]; ok {
				// Made but not running: delete the remains, then retry.
				if err := prov.Delete(ctx, found[in.ID]); err != nil {
					s.rec.ProviderError(name, corral.ProviderCallDelete)
				}
			}
			s.goCall(ctx, in, s.create)
		}
	}
}

// PoolFault makes a pool back off after an error the reconciler found (a
// runner the forge refuses): its jobs say why they wait, and go to other
// pools that accept them.
func (s *Scheduler) PoolFault(poolID string, err error) {
	// Kept apart from provider failures: a create that succeeds says
	// nothing about whether the forge takes the runner it made.
	rest := s.refused.fail(poolID, s.clock.Now(), err)
	s.log.Warn("pool backs off", "pool", poolID, "rest", rest, "err", err)
	s.Wake()
}
