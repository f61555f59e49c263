// Package reconciler repairs what webhooks and the happy path missed: the
// forge sweep (jobs no webhook brought, jobs the forge finished), the
// runner sweep (ghost registrations), the provider sweep (orphans and
// exited runners), boot timeouts, max job runtime and max lifetime. Run it
// on the leader only.
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
)

// Retirer sends an instance to be deleted; without force it first removes
// the runner's registration, which the forge refuses while it is busy.
type Retirer interface {
	Retire(ctx context.Context, in corral.Instance, reason string, force bool) error
}

// Config assembles a reconciler.
type Config struct {
	Store        corral.Store
	Forges       corral.Forges
	Providers    map[string]corral.Provider
	Targets      []corral.Target
	Pools        []corral.Pool
	ControllerID string
	Ledger       *ledger.Ledger
	Retirer      Retirer
	Wake         func() // wakes the scheduler after a change
	Interval     time.Duration
	// ExitWait is how long an exited runner whose job the ledger still
	// shows waiting or running is left as it is, for the forge's webhook
	// about the job to arrive (0: no wait). After it, the forge is asked
	// about a job still shown waiting, and a runner whose job is still
	// shown running is drained and its registration removed. The instance
	// keeps covering its job meanwhile, so the job is not served twice;
	// only its deletion waits. While the target's webhooks arrive late
	// (Ledger.WebhookLag: a burst queued at the forge), the wait is that
	// much longer, by 30 s at most.
	ExitWait time.Duration
	// AbsentGrace: a job the forge sweep no longer finds open, but whose
	// ledger record changed less than AbsentGrace ago, is asked about at
	// the next sweep, not at once: the webhook about its end is most
	// likely on the way (0: asked at once). It is put off once at most.
	// Nothing is served meanwhile that would not be without the sweep.
	AbsentGrace time.Duration
	// Recorder observes each pass (metrics); nil = no-op.
	Recorder Recorder
	Clock    corral.Clock
	Logger   *slog.Logger
}

// DefaultExitWait is the ExitWait corral serve uses: a webhook usually
// lands within a second of the job starting; in a burst it queues behind
// the burst's own webhooks.
const DefaultExitWait = 5 * time.Second

// Recorder observes the reconciler. Implementations must be cheap and safe
// for concurrent use.
type Recorder interface {
	// PassDone reports one pass: how long it took and whether it failed.
	PassDone(took time.Duration, err error)
	// Action: the reconciler repaired something; kind is one of Actions.
	Action(kind string)
	// ProviderError: a call of kind (corral.ProviderCalls) to the named
	// provider failed.
	ProviderError(provider, kind string)
}

// What the reconciler repairs (Recorder.Action), a fixed list.
const (
	ActRescued     = "rescued"        // the forge sweep recorded a queued job no webhook brought
	ActFinished    = "finished"       // the forge sweep finished a job the forge finished or forgot
	ActGhost       = "ghost_removed"  // a runner registration without a live instance was removed
	ActOrphan      = "orphan_removed" // an instance the store does not know was deleted
	ActVanished    = "vanished"       // an instance its provider lost was drained
	ActBootTimeout = "boot_timeout"   // a runner did not come online in time
	ActJobTimeout  = "job_timeout"    // a job passed its pool's max job runtime
	ActLifetime    = "lifetime"       // an instance reached (or came too close to) its max lifetime
	ActPoolRemoved = "pool_removed"   // an instance's pool is no longer configured
)

// Actions lists every action kind.
var Actions = []string{ActRescued, ActFinished, ActGhost, ActOrphan, ActVanished, ActBootTimeout, ActJobTimeout, ActLifetime, ActPoolRemoved}

type nopRecorder struct{}

func (nopRecorder) PassDone(time.Duration, error) {}
func (nopRecorder) Action(string)                 {}
func (nopRecorder) ProviderError(string, string)  {}

// Reconciler runs the periodic sweeps.
type Reconciler struct {
	cfg   Config
	rec   Recorder
	view  atomic.Pointer[view] // the configuration in force (SetConfig)
	exits <-chan string        // every provider's exits, fanned in once
	clock corral.Clock
	log   *slog.Logger

	capsOnce sync.Once // the redelivery capabilities are logged once

	exitMu   sync.Mutex
	exitSeen map[string]time.Time // exits waiting for the job's webhook (ExitWait), by instance

	absentMu sync.Mutex
	deferred map[string]map[int64]bool // per target: the absent jobs the last forge sweep did not ask about (AbsentGrace)
}

// view is the configuration a pass works with.
type view struct {
	targets  []corral.Target
	targetBy map[string]corral.Target
	pools    map[string]corral.Pool
}

// SetConfig replaces the targets and pools (the live catalog changed).
func (r *Reconciler) SetConfig(targets []corral.Target, pools []corral.Pool) {
	v := &view{targets: targets, targetBy: map[string]corral.Target{}, pools: map[string]corral.Pool{}}
	for _, p := range pools {
		v.pools[p.ID] = p
	}
	for _, t := range targets {
		v.targetBy[t.ID] = t
	}
	r.view.Store(v)
}

func (r *Reconciler) v() *view { return r.view.Load() }

// New validates and assembles. It does no I/O.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Store == nil || cfg.Forges == nil || cfg.Ledger == nil || cfg.Retirer == nil {
		return nil, errors.New("reconciler: store, forges, ledger and retirer are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = corral.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Wake == nil {
		cfg.Wake = func() {}
	}
	if cfg.Recorder == nil {
		cfg.Recorder = nopRecorder{}
	}
	r := &Reconciler{cfg: cfg, rec: cfg.Recorder, clock: cfg.Clock, log: cfg.Logger.With("component", "reconciler"),
		exitSeen: map[string]time.Time{}, deferred: map[string]map[int64]bool{}}
	r.SetConfig(cfg.Targets, cfg.Pools)
	r.exits = fanIn(cfg.Providers)
	return r, nil
}

// Run passes at once and then every interval until ctx ends. Exits that
// providers report are handled as they come.
func (r *Reconciler) Run(ctx context.Context) error {
	exits := r.exits
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	rec := r.rec
	pass := func() {
		start := time.Now()
		err := r.Pass(ctx)
		rec.PassDone(time.Since(start), err)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("reconcile pass had errors", "err", err)
		}
	}
	var recheck <-chan time.Time
	if r.cfg.ExitWait > 0 {
		tick := time.NewTicker(min(max(r.cfg.ExitWait/10, 100*time.Millisecond), time.Second))
		defer tick.Stop()
		recheck = tick.C
	}
	pass()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			pass()
		case id := <-exits:
			r.HandleExit(ctx, id)
		case <-recheck:
			r.RecheckExits(ctx)
		}
	}
}

// RecheckExits handles again the exits left waiting for their job's
// webhook (ExitWait): an exit whose job the webhook has moved on, or
// whose wait is over, is drained now.
func (r *Reconciler) RecheckExits(ctx context.Context) {
	r.exitMu.Lock()
	ids := make([]string, 0, len(r.exitSeen))
	for id := range r.exitSeen {
		ids = append(ids, id)
	}
	r.exitMu.Unlock()
	for _, id := range ids {
		r.HandleExit(ctx, id)
	}
}

// maxLagWait bounds how much longer than ExitWait an exit waits for a
// webhook because the target's webhooks arrive late (Ledger.WebhookLag).
const maxLagWait = 30 * time.Second

// waitForWebhook says whether the exit of instance id (of target) should
// wait longer for the webhook about its job; the first call starts the
// wait. The wait is ExitWait, plus how late the target's webhooks arrive
// now (up to maxLagWait): in a burst the job's webhook queues behind the
// burst's own at the forge, and asking the forge instead costs a call per
// job.
func (r *Reconciler) waitForWebhook(id, target string) bool {
	if r.cfg.ExitWait <= 0 {
		return false
	}
	now := r.clock.Now()
	r.exitMu.Lock()
	first, ok := r.exitSeen[id]
	if !ok {
		r.exitSeen[id] = now
	}
	r.exitMu.Unlock()
	if !ok {
		return true
	}
	wait := r.cfg.ExitWait
	if r.cfg.Ledger != nil {
		wait += min(r.cfg.Ledger.WebhookLag(target), maxLagWait)
	}
	return now.Sub(first) < wait
}

// exitDone forgets the wait of instance id.
func (r *Reconciler) exitDone(id string) {
	r.exitMu.Lock()
	delete(r.exitSeen, id)
	r.exitMu.Unlock()
}

// fanIn merges the exit notices of every provider that gives them. It is
// made once per reconciler, not per leadership term, so no notice is lost
// to a forwarder of an earlier term.
func fanIn(provs map[string]corral.Provider) <-chan string {
	out := make(chan string, 64)
	for _, p := range provs {
		if n, ok := p.(corral.ExitNotifier); ok {
			go func(c <-chan string) {
				for id := range c {
					out <- id
				}
			}(n.Exited())
		}
	}
	return out
}

// Pass runs every sweep once; one failing sweep does not stop the others.
//
// The forge sweep (redeliveries first) reads the jobs and talks to the
// forges; the other sweeps read the instances and talk to the providers.
// They run side by side, so a pass over a large fleet takes the longer of
// the two rather than their sum; the forge sweep's changes reach the
// ledger meanwhile as a webhook's would.
func (r *Reconciler) Pass(ctx context.Context) error {
	var forgeErr error
	var wg sync.WaitGroup
	wg.Go(func() { forgeErr = errors.Join(r.Redeliver(ctx), r.ForgeSweep(ctx)) })
	err := r.fleetSweeps(ctx)
	wg.Wait()
	return errors.Join(err, forgeErr)
}

// fleetSweeps runs the provider and runner sweeps, the timeouts and the
// pruning of old delivery ids. The provider and runner listings are all
// taken first and the live instances read once after them, so that one
// read serves every sweep (a fleet of 10,000 instances is read once per
// pass, not three times).
func (r *Reconciler) fleetSweeps(ctx context.Context) error {
	var errs []error
	start := r.clock.Now()
	type listing struct {
		p   corral.Provider
		pis []corral.ProviderInstance
	}
	provs := map[string]listing{}
	for name, p := range r.cfg.Providers {
		pis, err := p.List(ctx, r.cfg.ControllerID)
		if err != nil {
			r.rec.ProviderError(name, corral.ProviderCallList)
			errs = append(errs, fmt.Errorf("provider sweep of %s: %w", name, err))
			continue
		}
		provs[name] = listing{p, pis}
	}
	type regs struct {
		f       corral.Forge
		runners []corral.Runner
	}
	targets := map[string]regs{}
	for _, t := range r.v().targets {
		f, runners, err := r.listRunners(ctx, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("runner sweep of %s: %w", t.ID, err))
			continue
		}
		targets[t.ID] = regs{f, runners}
	}
	ins, err := r.liveInstances(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for name, l := range provs {
		if err := r.providerAgainst(ctx, name, l.p, l.pis, ins, start); err != nil {
			errs = append(errs, fmt.Errorf("provider sweep of %s: %w", name, err))
		}
	}
	for _, t := range r.v().targets {
		if g, ok := targets[t.ID]; ok {
			if err := r.runnersAgainst(ctx, t, g.f, g.runners, ins); err != nil {
				errs = append(errs, fmt.Errorf("runner sweep of %s: %w", t.ID, err))
			}
		}
	}
	errs = append(errs, r.timeouts(ctx, ins))
	_, err = r.pruneDeliveries(ctx)
	errs = append(errs, err)
	return errors.Join(errs...)
}

func (r *Reconciler) pruneDeliveries(ctx context.Context) (int, error) {
	var n int
	err := r.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		var err error
		n, err = tx.PruneDeliveries(ctx, r.clock.Now().Add(-7*24*time.Hour))
		return err
	})
	return n, err
}

// HandleExit drains the instance whose runner exited (its job is done or
// it died): nothing runs there any more.
func (r *Reconciler) HandleExit(ctx context.Context, instanceID string) {
	if err := r.exited(ctx, instanceID, []corral.InstanceState{corral.InstStarting, corral.InstIdle, corral.InstBusy}); err != nil {
		r.log.Warn("handle runner exit", "instance", instanceID, "err", err)
	}
}

// exited drains an instance whose runner exited. An ephemeral runner exits
// after its job, often before the forge's webhooks about that job arrive:
// while the ledger shows the instance's job waiting or running, the
// instance is left as it is for up to ExitWait (RecheckExits comes back to
// it). If the webhook has not moved the job on by then, the forge is asked
// about a job still shown waiting, so the job is not served a second time.
func (r *Reconciler) exited(ctx context.Context, id string, from []corral.InstanceState) error {
	var in corral.Instance
	var job corral.Job
	err := r.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		if in, err = tx.Instance(ctx, id); err != nil {
			return err
		}
		if in.JobID != 0 {
			job, err = tx.Job(ctx, in.JobID)
		}
		return err
	})
	if errors.Is(err, corral.ErrNotFound) {
		r.exitDone(id)
		return nil
	}
	if err != nil {
		return err
	}
	reason := "runner exited"
	tookJob := !in.BusyAt.IsZero()
	t, okTarget := r.v().targetBy[in.TargetID]
	var f corral.Forge
	if okTarget {
		f, _ = r.cfg.Forges.Forge(t)
	}
	// Wait for the webhook that moves the job on: in_progress for a job
	// the ledger shows waiting, completed for one it shows running (the
	// ledger then drains the instance as its job's end, and the forge's
	// own deregistration of the ephemeral runner is trusted: no DELETE).
	if f != nil && in.JobID != 0 && (job.State == corral.JobRouted || job.State == corral.JobRunning) &&
		slices.Contains(from, in.State) && r.waitForWebhook(id, in.TargetID) {
		return nil
	}
	if f != nil && in.JobID != 0 && job.State == corral.JobRouted {
		r.log.Debug("runner exited while its job is shown waiting; asking the forge", "instance", id, "job", job.ForgeJobID,
			"instance_state", in.State, "busy", !in.BusyAt.IsZero())
		ev, err := f.Job(ctx, job.ForgeJobID, job.Repo)
		if err == nil && (ev.Action == corral.ActionInProgress || ev.Action == corral.ActionCompleted) {
			tookJob = true
			if err := r.confirmDisplaced(ctx, t, f, ev); err != nil {
				r.log.Warn("confirm the job displaced by the job of an exited runner", "instance", id, "err", err)
			}
			if _, err := r.cfg.Ledger.Observe(ctx, t, ev); err != nil {
				r.log.Warn("record the job of an exited runner", "instance", id, "err", err)
			}
		}
	}
	if f != nil && !tookJob {
		// The runner left without taking a job (a warm one too): say why,
		// if its output tells (a runner version the forge refuses).
		if why := r.diagnose(ctx, f, in); why != nil {
			reason = "runner could not take jobs: " + why.Error()
			r.log.Error("runner refused by the forge; its pool backs off", "pool", in.PoolID, "instance", id, "err", why)
			if pf, ok := r.cfg.Retirer.(poolFaulter); ok {
				pf.PoolFault(in.PoolID, why)
			}
		}
	}
	r.exitDone(id)
	return r.drain(ctx, id, reason, from)
}

// poolFaulter makes a pool back off after an error that is not the
// provider's (a runner the forge refuses).
type poolFaulter interface {
	PoolFault(poolID string, err error)
}

// diagnose reads the end of an exited runner's output, when the provider
// can show it, and asks the forge what it means.
func (r *Reconciler) diagnose(ctx context.Context, f corral.Forge, in corral.Instance) error {
	d, ok := f.(corral.RunnerDiagnoser)
	if !ok {
		return nil
	}
	name := r.providerName(in)
	lr, ok := r.cfg.Providers[name].(corral.LogReader)
	if !ok {
		return nil
	}
	out, err := lr.RunnerLog(ctx, corral.ProviderInstance{ProviderID: in.ProviderID, InstanceID: in.ID, PoolID: in.PoolID}, 16<<10)
	if err != nil {
		r.rec.ProviderError(name, corral.ProviderCallLog)
		return nil
	}
	return d.DiagnoseRunner(out)
}

// drain moves an instance in one of the given states to draining.
func (r *Reconciler) drain(ctx context.Context, id, reason string, from []corral.InstanceState) error {
	now := r.clock.Now()
	changed := false
	err := r.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		changed = false
		in, err := tx.Instance(ctx, id)
		if errors.Is(err, corral.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok := false
		for _, s := range from {
			ok = ok || in.State == s
		}
		if !ok {
			return nil
		}
		if err := in.Transition(corral.InstDraining); err != nil {
			return err
		}
		in.Reason, in.DrainAt, in.UpdatedAt = reason, now, now
		changed = true
		return tx.PutInstance(ctx, &in)
	})
	if err != nil {
		return fmt.Errorf("drain instance %s: %w", id, err)
	}
	if changed {
		r.cfg.Wake()
	}
	return nil
}

// liveInstances reads every live instance, briefly (the fields the sweeps
// compare, corral.InstanceFilter.Brief): every write re-reads its row.
func (r *Reconciler) liveInstances(ctx context.Context) ([]corral.Instance, error) {
	var ins []corral.Instance
	err := r.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		ins, err = tx.Instances(ctx, corral.InstanceFilter{States: corral.LiveInstanceStates, Brief: true})
		return err
	})
	return ins, err
}
