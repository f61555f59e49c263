// Package scheduler compares demand with supply per pool and acts on it:
// it binds waiting jobs to free runners, reserves new instances within the
// limits (inside store transactions, so two loops or two replicas can never
// overshoot together), mints runner credentials, asks providers to create
// instances, keeps warm runners per pool and schedule, scales idle ones
// down and deletes what is done.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Config assembles a scheduler.
type Config struct {
	Store        corral.Store
	Forges       corral.Forges
	Providers    map[string]corral.Provider
	Tenants      []corral.Tenant
	Targets      []corral.Target
	Pools        []corral.Pool
	MaxInstances int // global cap, 0 = none
	ControllerID string
	// WarmLabels gives the labels of a warm runner of a pool (package
	// route); nil = the pool's labels.
	WarmLabels func(corral.Pool) []string
	// Covers reports whether runner labels serve a job's labels.
	Covers func(runner, job []string) bool
	// RunnerDir gives the unpacked managed runner release for a pool with
	// ManagedRunner (package runners); nil when corral keeps none.
	RunnerDir func(p corral.Pool, t corral.Target) (string, error)

	Interval    time.Duration // periodic pass; default 2s
	BackoffBase time.Duration // default 1s
	BackoffMax  time.Duration // default 2m
	Concurrency int           // provider calls under way per pool unless the pool says; default 8
	// ProviderConcurrency caps the calls under way at once per provider
	// instance, over all its pools; a name absent or 0 = no cap.
	ProviderConcurrency map[string]int
	ReserveBatch        int    // reservations per pass; default 64
	Seed                uint64 // jitter seed
	// InterruptedAfter: a pending instance whose create attempt started
	// this long ago and is not under way here is treated as cut short by a
	// crash (adopted or created again). 0 suits a single leader; replicas
	// that schedule without a leader need more than a create takes.
	InterruptedAfter time.Duration
	// BeforeDelete, when set, is called with an instance right before its
	// provider deletes it (right-sizing takes its last sample).
	BeforeDelete func(ctx context.Context, in corral.Instance)
	// Recorder observes the scheduler (metrics); nil = no-op.
	Recorder Recorder
	Clock    corral.Clock
	Logger   *slog.Logger
}

// Recorder observes what the scheduler does. Implementations must be
// cheap and safe for concurrent use.
type Recorder interface {
	InstanceReserved(pool string)
	LimitHit(pool string)                 // a reservation found no room in any of the job's pools
	InstanceCreated(pool string)          // a provider made an instance
	PoolBackoff(pool, kind string, n int) // a pool rests after n failures in a row
	// ProviderError: a call of kind (corral.ProviderCalls) to the named
	// provider failed.
	ProviderError(provider, kind string)
}

type nopRecorder struct{}

func (nopRecorder) InstanceReserved(string)         {}
func (nopRecorder) LimitHit(string)                 {}
func (nopRecorder) InstanceCreated(string)          {}
func (nopRecorder) PoolBackoff(string, string, int) {}
func (nopRecorder) ProviderError(string, string)    {}

// Scheduler is the demand/supply loop. Run it on the leader only.
type Scheduler struct {
	cfg     Config
	rec     Recorder
	view    atomic.Pointer[view] // the configuration in force (SetConfig)
	back    *backoff             // provider failures; reset by a successful create
	refused *backoff             // runners the forge refused; never reset by a create
	clock   corral.Clock
	log     *slog.Logger
	wake    chan struct{}
	// claims are instances reserved by a webhook's ingest (ReserveFor),
	// committed and marked in flight, waiting for Run to create them.
	claims chan corral.Instance

	mu       sync.Mutex
	inflight map[string]bool          // instance ids with a provider call under way
	held     map[int64]time.Time      // job ids the forge no longer lists as waiting, until when
	sems     map[string]chan struct{} // per pool and size (key: id/size)
	provSems map[string]chan struct{} // per provider instance with a cap
	wg       sync.WaitGroup
}

// New validates the config and assembles a scheduler. It does no I/O.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Store == nil || cfg.Forges == nil {
		return nil, errors.New("scheduler: store and forges are required")
	}
	if cfg.ControllerID == "" {
		return nil, errors.New("scheduler: controller id is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 2 * time.Minute
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.ReserveBatch <= 0 {
		cfg.ReserveBatch = 64
	}
	if cfg.Clock == nil {
		cfg.Clock = corral.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WarmLabels == nil {
		cfg.WarmLabels = func(p corral.Pool) []string { return p.Labels }
	}
	if cfg.Covers == nil {
		return nil, errors.New("scheduler: a label matcher (Covers) is required")
	}
	s := &Scheduler{
		cfg: cfg, clock: cfg.Clock,
		log:  cfg.Logger.With("component", "scheduler"),
		wake: make(chan struct{}, 1), claims: make(chan corral.Instance, claimQueue), inflight: map[string]bool{}, sems: map[string]chan struct{}{},
		provSems: map[string]chan struct{}{}, held: map[int64]time.Time{},
		back:    newBackoff(BackoffProvider, cfg.BackoffBase, cfg.BackoffMax, cfg.Seed),
		refused: newBackoff(BackoffRefused, cfg.BackoffBase, cfg.BackoffMax, cfg.Seed+1),
	}
	s.back.save, s.refused.save = s.saveBackoff, s.saveBackoff
	s.rec = cfg.Recorder
	if s.rec == nil {
		s.rec = nopRecorder{}
	}
	for _, p := range cfg.Pools {
		if _, ok := cfg.Providers[p.Provider]; !ok {
			return nil, fmt.Errorf("scheduler: pool %s: no provider %q", p.ID, p.Provider)
		}
	}
	s.SetConfig(cfg.Tenants, cfg.Targets, cfg.Pools)
	return s, nil
}

// view is the configuration the scheduler works with; SetConfig replaces
// it whole, so a pass sees one version throughout.
type view struct {
	pools   map[string]corral.Pool
	order   []string // pool ids by priority
	targets map[string]corral.Target
	tenants map[string]corral.Tenant
}

// SetConfig replaces the tenants, targets and pools (the live catalog
// changed): the next reservation obeys the new limits, labels and flavors.
// A pool that is gone drains: its idle runners are retired, busy ones
// finish their jobs.
func (s *Scheduler) SetConfig(tenants []corral.Tenant, targets []corral.Target, pools []corral.Pool) {
	v := &view{pools: map[string]corral.Pool{}, targets: map[string]corral.Target{}, tenants: map[string]corral.Tenant{}}
	for _, p := range pools {
		v.pools[p.ID] = p
		v.order = append(v.order, p.ID)
	}
	sort.SliceStable(v.order, func(i, j int) bool {
		a, b := v.pools[v.order[i]], v.pools[v.order[j]]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.ID < b.ID
	})
	for _, t := range targets {
		v.targets[t.ID] = t
	}
	for _, t := range tenants {
		v.tenants[t.ID] = t
	}
	s.view.Store(v)
	s.Wake()
}

func (s *Scheduler) v() *view { return s.view.Load() }

// Wake asks for a pass at once. It never blocks.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Kinds of backoff rows in the store.
const (
	BackoffProvider = "provider" // provider create failures
	BackoffRefused  = "refused"  // runners the forge refused
)

// saveBackoff records a pool's rest in the store, so that the next leader
// continues it instead of hammering a failing provider again.
func (s *Scheduler) saveBackoff(b corral.Backoff, ended bool) {
	if !ended {
		s.rec.PoolBackoff(b.PoolID, b.Kind, b.Failures)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		if ended {
			return tx.DeleteBackoff(ctx, b.PoolID, b.Kind)
		}
		return tx.PutBackoff(ctx, b)
	})
	if err != nil {
		s.log.Warn("could not record the pool's backoff", "pool", b.PoolID, "kind", b.Kind, "err", err)
	}
}

// LoadBackoffs continues the backoffs a previous leader recorded (Run
// calls it first).
func (s *Scheduler) LoadBackoffs(ctx context.Context) error {
	var rows []corral.Backoff
	err := s.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		rows, err = tx.Backoffs(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("scheduler: load backoffs: %w", err)
	}
	s.back.load(rows)
	s.refused.load(rows)
	for _, r := range rows {
		if r.Until.After(s.clock.Now()) {
			s.log.Info("pool still backs off after the last leader's failures", "pool", r.PoolID, "kind", r.Kind,
				"until", r.Until, "failures", r.Failures)
		}
	}
	return nil
}

// Run passes on every wake and every interval until ctx ends, then waits
// for the provider calls under way. Wakes coalesce: however many come
// during a pass, one more pass follows it and serves them all. It first
// continues the backoffs recorded in the store.
func (s *Scheduler) Run(ctx context.Context) error {
	defer s.wg.Wait()
	if err := s.LoadBackoffs(ctx); err != nil {
		return err
	}
	claimsDone := make(chan struct{})
	go func() { defer close(claimsDone); s.serveClaims(ctx) }()
	defer func() { <-claimsDone }() // before wg.Wait: no call starts after it
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduler pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-t.C:
		}
	}
}

// Wait blocks until every provider call started by Pass has returned.
func (s *Scheduler) Wait() { s.wg.Wait() }

// Pass runs one round: read the ledger, bind, reserve, scale down, and
// start the provider calls for what is pending or draining.
func (s *Scheduler) Pass(ctx context.Context) error {
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	p := s.plan(snap)
	reserved, err := s.apply(ctx, snap, p)
	if err != nil {
		return err
	}
	if p.more && reserved > 0 {
		// Demand is left beyond the batch and room was found: pass again
		// now rather than at the next interval. (No room: no busy loop.)
		s.Wake()
	}
	// New reservations are created by apply; launch the rest (crashed
	// creates, deletes) from the snapshot.
	s.launch(ctx, snap)
	return nil
}

type snapshot struct {
	cfg  *view // the configuration in force for this pass
	now  time.Time
	jobs []corral.Job // routed, waiting for a runner
	// insts are the live instances a pass may act on or give a job: every
	// live state but busy, in id order. A busy instance only counts (in
	// live and busy): a large fleet is mostly busy, and reading it whole
	// at every pass is what a pass would spend its time and memory on.
	insts []corral.Instance
	live  map[string]int // live instances per pool, busy ones included
	busy  map[string]int // running jobs per pool
	// states are the pools paused or draining (through the API).
	states map[string]corral.PoolState
	// pausedTargets are the targets paused through the API: their jobs
	// wait, neither taking a free runner nor getting a new one.
	pausedTargets map[string]bool
}

func (s *Scheduler) snapshot(ctx context.Context) (snapshot, error) {
	snap := snapshot{cfg: s.v(), now: s.clock.Now(), live: map[string]int{}, busy: map[string]int{}}
	err := s.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		snap.jobs, err = tx.Jobs(ctx, corral.JobFilter{States: []corral.JobState{corral.JobRouted}})
		if err != nil {
			return err
		}
		for _, st := range actedOn {
			// One state at a time: each walks the state index.
			ins, err := tx.Instances(ctx, corral.InstanceFilter{States: []corral.InstanceState{st}})
			if err != nil {
				return err
			}
			snap.insts = append(snap.insts, ins...)
		}
		counts, err := tx.InstanceCounts(ctx)
		if err != nil {
			return err
		}
		for _, c := range counts {
			snap.live[c.PoolID] += c.N
			if c.State == corral.InstBusy {
				snap.busy[c.PoolID] += c.N
			}
		}
		if snap.states, err = tx.PoolStates(ctx); err != nil {
			return err
		}
		snap.pausedTargets, err = tx.PausedTargets(ctx)
		return err
	})
	if err != nil {
		return snap, fmt.Errorf("scheduler snapshot: %w", err)
	}
	slices.SortFunc(snap.insts, func(a, b corral.Instance) int { return strings.Compare(a.ID, b.ID) })
	return snap, nil
}

// actedOn are the live states whose instances a pass reads whole: free or
// bound ones it may give a job, pending ones it may create, draining ones
// it deletes. Busy ones it counts.
var actedOn = []corral.InstanceState{corral.InstPending, corral.InstStarting, corral.InstIdle, corral.InstDraining}

// launch starts a provider call for every pending instance (create) and
// every draining instance (delete) that has none under way.
func (s *Scheduler) launch(ctx context.Context, snap snapshot) {
	var adopt []corral.Instance
	for _, in := range snap.insts {
		switch in.State {
		case corral.InstPending:
			// Every reservation records its first attempt, so a pending
			// instance with no call under way here was cut short.
			if snap.now.Sub(in.UpdatedAt) >= s.cfg.InterruptedAfter {
				adopt = append(adopt, in)
			}
		case corral.InstDraining:
			s.goCall(ctx, in, s.destroy)
		}
	}
	if len(adopt) > 0 {
		s.retryInterrupted(ctx, adopt)
	}
}

// goCall runs fn for the instance in a goroutine unless a call for it is
// under way, bounded per pool (the pool's concurrency, else the default)
// and per provider instance (when it has a cap).
func (s *Scheduler) goCall(ctx context.Context, in corral.Instance, fn func(context.Context, corral.Instance)) {
	s.mu.Lock()
	if s.inflight[in.ID] {
		s.mu.Unlock()
		return
	}
	s.inflight[in.ID] = true
	s.mu.Unlock()
	s.goClaimed(ctx, in, fn)
}

// goClaimed is goCall for an instance already marked in flight.
func (s *Scheduler) goClaimed(ctx context.Context, in corral.Instance, fn func(context.Context, corral.Instance)) {
	size := s.cfg.Concurrency
	if p, ok := s.v().pools[in.PoolID]; ok && p.Concurrency > 0 {
		size = p.Concurrency
	}
	prov := s.providerName(in)
	s.mu.Lock()
	// A pool whose concurrency changed (reload) gets a new semaphore; calls
	// under way keep the old one until they end.
	key := in.PoolID + "/" + strconv.Itoa(size)
	sem := s.sems[key]
	if sem == nil {
		sem = make(chan struct{}, size)
		s.sems[key] = sem
	}
	var psem chan struct{}
	if n := s.cfg.ProviderConcurrency[prov]; n > 0 {
		if psem = s.provSems[prov]; psem == nil {
			psem = make(chan struct{}, n)
			s.provSems[prov] = psem
		}
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.inflight, in.ID)
			s.mu.Unlock()
		}()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-sem }()
		if psem != nil {
			select {
			case psem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-psem }()
		}
		fn(ctx, in)
	}()
}

// DeleteDraining deletes every draining instance and waits for it, without
// creating anything: the last step of a clean stop.
func (s *Scheduler) DeleteDraining(ctx context.Context) error {
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	for _, in := range snap.insts {
		if in.State == corral.InstDraining {
			s.goCall(ctx, in, s.destroy)
		}
	}
	s.wg.Wait()
	return nil
}
