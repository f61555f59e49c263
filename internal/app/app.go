// Package app assembles corral from its parts: store, forges, providers,
// ledger, scheduler, reconciler, webhook endpoint and API, under one
// leader lease. `corral serve` and `corral dev` both run an App.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/leader"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/corral-ci/corral/internal/reconciler"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/scheduler"
	"github.com/corral-ci/corral/internal/webhook"
)

// Options are everything an App needs; cmd fills them from the config.
type Options struct {
	Store        corral.Store
	Forges       corral.Forges
	Providers    map[string]corral.Provider
	Tenants      []corral.Tenant
	Targets      []corral.Target
	Pools        []corral.Pool
	Sizes        map[string]corral.Flavor
	DefaultArch  string // the arch of jobs that name none; default x64
	MaxInstances int
	ControllerID string
	// Holder names this replica in the leader lease; default ControllerID
	// plus a random suffix.
	Holder            string
	SchedulerInterval time.Duration
	ReconcileInterval time.Duration
	LeaseTTL          time.Duration
	// NoLeader runs the scheduler and reconciler without taking the lease
	// (tests that race two schedulers on purpose).
	NoLeader bool
	MaxBody  int64
	// Runners, when set, is corral's cache of runner releases: refreshed
	// on every replica, served to machines at /runners/, and the source of
	// RunnerDir for pools with a managed runner.
	Runners   RunnerCache
	RunnerDir func(p corral.Pool, t corral.Target) (string, error)
	Clock     corral.Clock
	Logger    *slog.Logger
}

// RunnerCache is the runner-release cache (package runners).
type RunnerCache interface {
	Run(ctx context.Context) error
	Handler() http.Handler
}

// App is one assembled corral replica.
type App struct {
	opt        Options
	Matcher    *route.Matcher
	Ledger     *ledger.Ledger
	Scheduler  *scheduler.Scheduler
	Reconciler *reconciler.Reconciler
	Webhooks   *webhook.Handler
	log        *slog.Logger

	mu      sync.Mutex
	leading bool
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
	a := &App{opt: opt, Matcher: m, log: opt.Logger}
	a.Ledger = ledger.New(opt.Store, m, opt.Clock, opt.Logger)
	a.Scheduler, err = scheduler.New(scheduler.Config{
		Store: opt.Store, Forges: opt.Forges, Providers: opt.Providers,
		Tenants: opt.Tenants, Targets: opt.Targets, Pools: opt.Pools,
		MaxInstances: opt.MaxInstances, ControllerID: opt.ControllerID,
		WarmLabels: route.WarmLabels, Covers: route.Covers, RunnerDir: opt.RunnerDir,
		Interval: opt.SchedulerInterval, InterruptedAfter: interrupted, Clock: opt.Clock, Logger: opt.Logger,
	})
	if err != nil {
		return nil, err
	}
	a.Ledger.OnChange = a.Scheduler.Wake
	a.Reconciler, err = reconciler.New(reconciler.Config{
		Store: opt.Store, Forges: opt.Forges, Providers: opt.Providers,
		Targets: opt.Targets, Pools: opt.Pools, ControllerID: opt.ControllerID,
		Ledger: a.Ledger, Retirer: a.Scheduler, Wake: a.Scheduler.Wake,
		Interval: opt.ReconcileInterval, Clock: opt.Clock, Logger: opt.Logger,
	})
	if err != nil {
		return nil, err
	}
	a.Webhooks = webhook.New(opt.Targets, opt.Forges, a.Ledger, opt.MaxBody, nil, opt.Logger)
	return a, nil
}

// Sync writes the configured tenants, targets and pools into the store
// and routes waiting jobs again with the current pools.
func (a *App) Sync(ctx context.Context) error {
	err := a.opt.Store.Update(ctx, func(tx corral.Tx) error {
		for _, t := range a.opt.Tenants {
			if err := tx.PutTenant(ctx, t); err != nil {
				return err
			}
		}
		for _, t := range a.opt.Targets {
			if err := tx.PutTarget(ctx, t); err != nil {
				return err
			}
		}
		for _, p := range a.opt.Pools {
			if err := tx.PutPool(ctx, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync config into the store: %w", err)
	}
	n, err := a.Ledger.Reroute(ctx)
	if err != nil {
		return fmt.Errorf("re-route waiting jobs: %w", err)
	}
	if n > 0 {
		a.log.Info("re-routed waiting jobs with the current pools", "jobs", n)
	}
	return nil
}

// Run leads (scheduler and reconciler) while it holds the lease, until
// ctx ends. Webhooks are served by Handler on every replica regardless.
func (a *App) Run(ctx context.Context) error {
	lead := func(ctx context.Context) {
		a.setLeading(true)
		defer a.setLeading(false)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = a.Scheduler.Run(ctx)
		}()
		go func() {
			defer wg.Done()
			_ = a.Reconciler.Run(ctx)
		}()
		wg.Wait()
	}
	if a.opt.Runners != nil {
		go func() {
			if err := a.opt.Runners.Run(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("runner release cache stopped", "err", err)
			}
		}()
	}
	if a.opt.NoLeader {
		lead(ctx)
		return nil
	}
	leader.Run(ctx, leader.Config{Store: a.opt.Store, Name: "leader", Holder: a.opt.Holder,
		TTL: a.opt.LeaseTTL, Clock: a.opt.Clock, Logger: a.opt.Logger}, lead)
	return nil
}

func (a *App) setLeading(v bool) {
	a.mu.Lock()
	a.leading = v
	a.mu.Unlock()
}

// Leading reports whether this replica leads now.
func (a *App) Leading() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leading
}

// DeleteAll deletes every instance this controller owns, busy or not, and
// removes their runner registrations: the clean stop of `corral dev`.
func (a *App) DeleteAll(ctx context.Context) error {
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

// Handler serves the webhook endpoint, health and the read API.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/{target}", a.Webhooks)
	mux.HandleFunc("POST /webhooks/app/{app}", a.Webhooks.ServeApp)
	if a.opt.Runners != nil {
		mux.Handle("GET /runners/", http.StripPrefix("/runners", a.opt.Runners.Handler()))
	}
	a.apiRoutes(mux)
	return mux
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
