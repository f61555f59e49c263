// Package app assembles corral from its parts: store, live catalog, forges,
// providers, ledger, scheduler, reconciler, webhook endpoint and API, as
// components under one manager and one leader lease. `corral serve` and
// `corral dev` both run an App.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/component"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/leader"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/corral-ci/corral/internal/listener"
	"github.com/corral-ci/corral/internal/metrics"
	"github.com/corral-ci/corral/internal/poller"
	"github.com/corral-ci/corral/internal/reconciler"
	"github.com/corral-ci/corral/internal/rightsize"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/scheduler"
	"github.com/corral-ci/corral/internal/secretbox"
	"github.com/corral-ci/corral/internal/webhook"
)

// LeaseName is the leader lease's name in the store.
const LeaseName = "leader"

// Options are everything an App needs; cmd fills them from the config.
// Tenants, Targets and Pools seed the live catalog (Sync applies them).
type Options struct {
	Store corral.Store
	// SecretBox seals the credentials of targets written through the API
	// and opens them on every replica (the same key everywhere); nil:
	// such writes are refused.
	SecretBox *secretbox.Box
	Forges    corral.Forges
	Providers map[string]corral.Provider
	// ProviderConcurrency caps calls under way per provider instance (its
	// config key concurrency); absent or 0 = no cap.
	ProviderConcurrency map[string]int
	Tenants             []corral.Tenant
	Targets             []corral.Target
	Pools               []corral.Pool
	Sizes               map[string]corral.Flavor
	DefaultArch         string // the arch of jobs that name none; default x64
	MaxInstances        int
	ControllerID        string
	// Holder names this replica in the leader lease; default ControllerID
	// plus a random suffix.
	Holder            string
	SchedulerInterval time.Duration
	ReconcileInterval time.Duration
	// SampleInterval: how often right-sizing samples busy instances;
	// 0 = rightsize.DefaultInterval.
	SampleInterval time.Duration
	LeaseTTL       time.Duration
	// CatalogInterval is how often every replica looks for a catalog
	// change in the store (default 500 ms).
	CatalogInterval time.Duration
	// StoreProbeInterval is how often a heartbeat write checks that the
	// store commits (default 5 s).
	StoreProbeInterval time.Duration
	// NoLeader runs the scheduler and reconciler without taking the lease
	// (tests that race two schedulers on purpose).
	NoLeader bool
	MaxBody  int64
	// Runners, when set, is corral's cache of runner releases: refreshed
	// on every replica, served to machines at /runners/, and the source of
	// RunnerDir for pools with a managed runner.
	Runners   RunnerCache
	RunnerDir func(p corral.Pool, t corral.Target) (string, error)
	// Metadata, when set, is the metadata endpoint of instances that
	// fetch their own bootstrap with a per-instance token (garm
	// providers), served on the public listener.
	Metadata InstanceMetadata
	// Components are extra components to run (Options say where).
	Components []ExtraComponent
	// Recorders observe the components; a nil one is corral's Prometheus
	// metrics (served at /metrics).
	Recorders Recorders
	Clock     corral.Clock
	Logger    *slog.Logger
}

// Recorders are the components' observation hooks, each a small
// interface of its package; the metrics package implements them all.
type Recorders struct {
	Ledger     ledger.Recorder
	Scheduler  scheduler.Recorder
	Reconciler reconciler.Recorder
	Webhooks   webhook.Recorder
	Components component.Recorder
	// Forges observes forge API calls, given to Options.Forges when it
	// takes a recorder (forge.Registry does).
	Forges corral.CallRecorder
}

// ExtraComponent is a component that cmd adds to the App's manager.
type ExtraComponent struct {
	C   component.Component
	Opt component.Options
}

// RunnerCache is the runner-release cache (package runners).
type RunnerCache interface {
	Run(ctx context.Context) error
	Handler() http.Handler
}

// InstanceMetadata answers the instances' metadata GETs and callback
// POSTs (package provider/garm), checking their tokens itself.
type InstanceMetadata interface {
	ServeMetadata(w http.ResponseWriter, r *http.Request)
	ServeCallback(w http.ResponseWriter, r *http.Request)
}

// App is one assembled corral replica.
type App struct {
	opt        Options
	Catalog    *catalog.Catalog
	Ledger     *ledger.Ledger
	Scheduler  *scheduler.Scheduler
	Reconciler *reconciler.Reconciler
	Poller     *poller.Poller
	Listener   *listener.Listener
	Sampler    *rightsize.Sampler
	Webhooks   *webhook.Handler
	Components *component.Manager
	Metrics    *metrics.Metrics
	Lead       *leader.State
	fenced     *leader.Fenced
	health     *health
	reroute    chan struct{}
	leading    atomic.Bool
	log        *slog.Logger
}

// New assembles an App. It does no I/O.
func New(opt Options) (*App, error) {
	if opt.Clock == nil {
		opt.Clock = corral.SystemClock{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Holder == "" {
		opt.Holder = opt.ControllerID + "/" + randomSuffix()
	}
	var interrupted time.Duration
	if opt.NoLeader {
		// Another replica may be creating this very instance right now.
		interrupted = time.Minute
	}
	m, err := route.New(opt.Pools, route.Options{Sizes: opt.Sizes, DefaultArch: opt.DefaultArch})
	if err != nil {
		return nil, fmt.Errorf("pools: %w", err)
	}
	a := &App{opt: opt, log: opt.Logger, Lead: &leader.State{}, reroute: make(chan struct{}, 1), Metrics: metrics.New()}
	rec := &opt.Recorders
	if rec.Ledger == nil {
		rec.Ledger = a.Metrics
	}
	if rec.Scheduler == nil {
		rec.Scheduler = a.Metrics
	}
	if rec.Reconciler == nil {
		rec.Reconciler = a.Metrics
	}
	if rec.Webhooks == nil {
		rec.Webhooks = a.Metrics
	}
	if rec.Components == nil {
		rec.Components = a.Metrics
	}
	if rec.Forges == nil {
		rec.Forges = a.Metrics
	}
	if fr, ok := opt.Forges.(interface{ SetRecorder(corral.CallRecorder) }); ok {
		fr.SetRecorder(rec.Forges)
	}
	a.Catalog = catalog.New(catalog.Config{Store: opt.Store, Route: route.Options{Sizes: opt.Sizes, DefaultArch: opt.DefaultArch}, Interval: opt.CatalogInterval, Logger: opt.Logger, Box: unsealer(opt.SecretBox)})
	a.Catalog.SetSecrets(opt.Targets)
	// The leader's writes are fenced by its term; without a leader (tests
	// racing replicas on purpose) they go straight to the store.
	var leaderStore corral.Store = opt.Store
	if !opt.NoLeader {
		a.fenced = leader.NewFenced(opt.Store, LeaseName)
		leaderStore = a.fenced
	}
	a.Ledger = ledger.New(opt.Store, m, opt.Clock, opt.Logger)
	a.Sampler = rightsize.NewSampler(rightsize.SamplerConfig{Store: leaderStore, Providers: opt.Providers,
		Interval: opt.SampleInterval, Clock: opt.Clock, Logger: opt.Logger})
	a.Listener, err = listener.New(listener.Config{Forges: opt.Forges, Observer: a.Ledger, Store: opt.Store,
		Targets: opt.Targets, Pools: opt.Pools, Owner: opt.ControllerID, Recorder: a.Metrics, Logger: opt.Logger})
	if err != nil {
		return nil, err
	}
	a.Scheduler, err = scheduler.New(scheduler.Config{
		// Scale-set targets mint runners through their pool's scale set.
		Store: leaderStore, Forges: a.Listener.Forges(opt.Forges), Providers: opt.Providers, ProviderConcurrency: opt.ProviderConcurrency,
		Tenants: opt.Tenants, Targets: opt.Targets, Pools: opt.Pools,
		MaxInstances: opt.MaxInstances, ControllerID: opt.ControllerID,
		WarmLabels: route.WarmLabels, Covers: route.Covers, RunnerDir: opt.RunnerDir,
		Interval: opt.SchedulerInterval, InterruptedAfter: interrupted, Recorder: opt.Recorders.Scheduler,
		BeforeDelete: a.Sampler.BeforeDelete,
		Clock:        opt.Clock, Logger: opt.Logger,
	})
	if err != nil {
		return nil, err
	}
	a.Ledger.OnChange = a.Scheduler.Wake
	// A leader's queued webhook reserves its instance in the ingest's own
	// commit; a follower only records it.
	a.Ledger.Leader = func() (corral.Store, ledger.Reserver) {
		if !a.leading.Load() {
			return nil, nil
		}
		return leaderStore, a.Scheduler
	}
	a.Ledger.Recorder = opt.Recorders.Ledger
	a.Reconciler, err = reconciler.New(reconciler.Config{
		Store: leaderStore, Forges: opt.Forges, Providers: opt.Providers,
		Targets: opt.Targets, Pools: opt.Pools, ControllerID: opt.ControllerID,
		Ledger: a.Ledger, Retirer: a.Scheduler, Wake: a.Scheduler.Wake,
		Interval: opt.ReconcileInterval, ExitWait: reconciler.DefaultExitWait, AbsentGrace: opt.ReconcileInterval,
		Recorder: opt.Recorders.Reconciler, Clock: opt.Clock, Logger: opt.Logger,
	})
	if err != nil {
		return nil, err
	}
	a.Poller, err = poller.New(poller.Config{Forges: opt.Forges, Observer: a.Ledger, Targets: opt.Targets,
		Recorder: a.Metrics, Logger: opt.Logger})
	if err != nil {
		return nil, err
	}
	a.Webhooks = webhook.New(opt.Targets, opt.Forges, a.Ledger, opt.MaxBody, opt.Recorders.Webhooks, opt.Logger)
	a.Catalog.Subscribe(a.applySnapshot)
	a.Metrics.WatchState(a)
	a.Components = component.New(opt.Logger, opt.Clock, opt.Recorders.Components)
	a.health = newHealth(a)
	a.addComponents()
	return a, nil
}

// applySnapshot hands a new catalog to every component that uses it.
func (a *App) applySnapshot(s *catalog.Snapshot) {
	a.Ledger.SetRouter(s.Router)
	a.Webhooks.SetTargets(s.Targets)
	a.Scheduler.SetConfig(s.Tenants, s.Targets, s.Pools)
	a.Reconciler.SetConfig(s.Targets, s.Pools)
	a.Poller.SetTargets(s.Targets)
	a.Listener.SetConfig(s.Targets, s.Pools)
	select { // the leader routes waiting jobs again with the new pools
	case a.reroute <- struct{}{}:
	default:
	}
}

// Sync applies the configured tenants, targets and pools to the live
// catalog (the store) and routes waiting jobs again with them.
func (a *App) Sync(ctx context.Context) error {
	_, err := a.Apply(ctx, catalog.Desired{Tenants: a.opt.Tenants, Targets: a.opt.Targets, Pools: a.opt.Pools})
	if err != nil {
		return err
	}
	return a.rerouteNow(ctx)
}

// Apply makes the live catalog match d (a config file re-read on SIGHUP,
// later an API write). Every pool must name a provider this replica has
// opened. The change reaches every component and replica; nothing
// restarts.
func (a *App) Apply(ctx context.Context, d catalog.Desired) (catalog.Change, error) {
	for _, p := range d.Pools {
		if _, ok := a.opt.Providers[p.Provider]; !ok {
			return catalog.Change{}, fmt.Errorf("pool %s: provider %q is not open in this corral (providers are opened at start)", p.ID, p.Provider)
		}
	}
	ch, err := a.Catalog.Apply(ctx, d)
	if err != nil {
		return ch, err
	}
	if !ch.Empty() {
		a.log.Info("catalog changed", "added", ch.Added, "changed", ch.Changed, "removed", ch.Removed,
			"version", a.Catalog.Current().Version)
	}
	return ch, nil
}

func (a *App) rerouteNow(ctx context.Context) error {
	n, err := a.Ledger.Reroute(ctx)
	if err != nil {
		return fmt.Errorf("re-route waiting jobs: %w", err)
	}
	if n > 0 {
		a.log.Info("re-routed waiting jobs with the current pools", "jobs", n)
	}
	return nil
}

func (a *App) addComponents() {
	m := a.Components
	m.Add(a.Catalog, component.Options{})
	m.Add(component.Func("store-probe", a.health.probeStore), component.Options{})
	m.Add(component.Func("provider-health", a.health.probeProviders), component.Options{})
	if a.opt.Runners != nil {
		m.Add(component.Func("runner-cache", a.opt.Runners.Run), component.Options{})
	}
	m.Add(component.Func("scheduler", a.Scheduler.Run), component.Options{LeaderOnly: true})
	m.Add(component.Func("reconciler", a.Reconciler.Run), component.Options{LeaderOnly: true})
	m.Add(component.Func("poller", a.Poller.Run), component.Options{LeaderOnly: true})
	m.Add(component.Func("scaleset-listener", a.Listener.Run), component.Options{LeaderOnly: true})
	m.Add(component.Func("rightsizing", a.Sampler.Run), component.Options{LeaderOnly: true})
	m.Add(component.Func("reroute", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-a.reroute:
				if err := a.rerouteNow(ctx); err != nil && ctx.Err() == nil {
					return err
				}
			}
		}
	}), component.Options{LeaderOnly: true})
	for _, c := range a.opt.Components {
		m.Add(c.C, c.Opt)
	}
	a.health.addChecks()
}

// Run runs every component until ctx ends: on every replica the catalog,
// health probes and runner cache; on the leader (while it holds the lease)
// the scheduler and reconciler. It returns nil when ctx ends, or the error
// of a component that must stop corral.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- a.Components.Run(ctx) }()
	go func() {
		if a.opt.NoLeader {
			a.leading.Store(true)
			defer a.leading.Store(false)
			errs <- a.Components.RunTerm(ctx)
			return
		}
		leader.Run(ctx, leader.Config{Store: a.opt.Store, Name: LeaseName, Holder: a.opt.Holder,
			TTL: a.opt.LeaseTTL, Clock: a.opt.Clock, Logger: a.opt.Logger, State: a.Lead, Fence: a.fenced},
			func(ctx context.Context, term leader.Term) {
				a.fenced.Set(term.Token)
				a.leading.Store(true)
				defer func() {
					a.leading.Store(false)
					a.fenced.Set(0)
				}()
				if err := a.Components.RunTerm(ctx); err != nil {
					errs <- err
				}
			})
		errs <- nil
	}()
	first := <-errs
	cancel()
	second := <-errs
	return errors.Join(first, second)
}

// Leading reports whether this replica leads now.
func (a *App) Leading() bool { return a.leading.Load() }

// DeleteAll deletes every instance this controller owns, busy or not, and
// removes their runner registrations: the clean stop of `corral dev`. It
// takes the lease for the time it works (only a leader deletes).
func (a *App) DeleteAll(ctx context.Context) error {
	if a.fenced != nil {
		var l corral.Lease
		var held bool
		err := a.opt.Store.Update(ctx, func(tx corral.Tx) error {
			var err error
			l, held, err = tx.AcquireLease(ctx, LeaseName, a.opt.Holder, a.opt.Clock.Now(), time.Minute)
			return err
		})
		if err != nil {
			return fmt.Errorf("delete all: take the lease: %w", err)
		}
		if !held {
			return fmt.Errorf("delete all: %s leads: %w", l.Holder, corral.ErrFenced)
		}
		a.fenced.Set(l.Token)
		defer func() {
			a.fenced.Set(0)
			_ = a.opt.Store.Update(context.WithoutCancel(ctx), func(tx corral.Tx) error {
				return tx.ReleaseLease(ctx, LeaseName, a.opt.Holder)
			})
		}()
	}
	var ins []corral.Instance
	err := a.opt.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		ins, err = tx.Instances(ctx, corral.InstanceFilter{States: corral.LiveInstanceStates})
		return err
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range ins {
		if in.State != corral.InstDraining {
			if err := a.Scheduler.Retire(ctx, in, "corral is stopping", true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := a.Scheduler.DeleteDraining(ctx); err != nil {
		errs = append(errs, err)
	}
	// Whatever a provider still holds (orphans of earlier runs) goes too.
	for name, p := range a.opt.Providers {
		pis, err := p.List(ctx, a.opt.ControllerID)
		if err != nil {
			errs = append(errs, fmt.Errorf("provider %s list: %w", name, err))
			continue
		}
		for _, pi := range pis {
			if err := p.Delete(ctx, pi); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := a.Reconciler.RunnerSweep(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// unsealer keeps a nil box a nil interface.
func unsealer(b *secretbox.Box) catalog.Unsealer {
	if b == nil {
		return nil
	}
	return b
}
