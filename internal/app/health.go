package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// HealthChecker is implemented by providers (and forges) that can say
// whether they work: an engine answers, a hypervisor is there, the
// isolation the provider promised is in force.
type HealthChecker interface {
	Health(ctx context.Context) error
}

// Describer is implemented by providers that say what they give (say,
// which isolation is on); shown in /readyz.
type Describer interface {
	Describe() string
}

// CredentialReporter is implemented by forge clients that know whether
// their credential works (the last answer to an authenticated call).
type CredentialReporter interface {
	CredentialError() error
}

// health keeps the results of the periodic probes for /readyz.
type health struct {
	a *App
	// StoreEvery and ProviderEvery are the probe periods.
	storeEvery, providerEvery time.Duration

	mu        sync.Mutex
	storeErr  error
	storeAt   time.Time // last probe
	providers map[string]probe
}

type probe struct {
	err error
	at  time.Time
}

func newHealth(a *App) *health {
	h := &health{a: a, storeEvery: a.opt.StoreProbeInterval, providerEvery: 30 * time.Second, providers: map[string]probe{}}
	if h.storeEvery <= 0 {
		h.storeEvery = 5 * time.Second
	}
	return h
}

// probeStore writes a heartbeat row every few seconds: a store that cannot
// commit (a full disk, a lost connection) shows in /readyz at once, and
// a store that commits again clears it.
func (h *health) probeStore(ctx context.Context) error {
	t := time.NewTicker(h.storeEvery)
	defer t.Stop()
	name := "probe/" + h.a.opt.Holder
	for {
		pctx, cancel := context.WithTimeout(ctx, h.storeEvery)
		err := h.a.opt.Store.Update(pctx, func(tx corral.Tx) error {
			_, _, err := tx.AcquireLease(pctx, name, h.a.opt.Holder, h.a.opt.Clock.Now(), time.Minute)
			return err
		})
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		h.mu.Lock()
		was := h.storeErr
		h.storeErr, h.storeAt = err, h.a.opt.Clock.Now()
		h.mu.Unlock()
		switch {
		case err != nil && was == nil:
			h.a.log.Error("the store cannot commit", "component", "store-probe", "err", err)
		case err == nil && was != nil:
			h.a.log.Info("the store commits again", "component", "store-probe")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// probeProviders asks every provider that can tell whether it works.
func (h *health) probeProviders(ctx context.Context) error {
	t := time.NewTicker(h.providerEvery)
	defer t.Stop()
	for {
		for name, p := range h.a.opt.Providers {
			hc, ok := p.(HealthChecker)
			if !ok {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := hc.Health(pctx)
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			h.mu.Lock()
			was, seen := h.providers[name]
			h.providers[name] = probe{err: err, at: h.a.opt.Clock.Now()}
			h.mu.Unlock()
			if err != nil && (!seen || was.err == nil) {
				h.a.log.Warn("provider health check failed", "component", "provider-health", "provider", name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (h *health) addChecks() {
	m := h.a.Components
	m.AddCheck("store", true, h.checkStore)
	m.AddCheck("leader", true, h.checkLeader)
	m.AddCheck("catalog", false, func(context.Context) (string, error) {
		c := h.a.Catalog
		s := c.Current()
		return fmt.Sprintf("version %d: %d targets, %d pools", s.Version, len(s.Targets), len(s.Pools)), c.Err()
	})
	names := make([]string, 0, len(h.a.opt.Providers))
	for name := range h.a.opt.Providers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m.AddCheck("provider "+name, false, func(context.Context) (string, error) { return h.checkProvider(name) })
	}
	m.AddCheck("targets", false, h.checkTargets)
	m.AddCheck("poller", false, h.a.Poller.Check)
	m.AddCheck("scaleset", false, h.a.Listener.Check)
}

func (h *health) checkStore(ctx context.Context) (string, error) {
	var v int64
	if err := h.a.opt.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		v, err = tx.CatalogVersion(ctx)
		return err
	}); err != nil {
		return "", fmt.Errorf("read: %w", err)
	}
	h.mu.Lock()
	err, at := h.storeErr, h.storeAt
	h.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("reads work but the last write failed (%s): %w", at.UTC().Format(time.RFC3339), err)
	}
	if at.IsZero() {
		return fmt.Sprintf("reads work (catalog version %d); no write probed yet", v), nil
	}
	return fmt.Sprintf("reads and writes work (last write probe %s)", at.UTC().Format(time.RFC3339)), nil
}

func (h *health) checkLeader(context.Context) (string, error) {
	if h.a.opt.NoLeader {
		return "no lease: every replica schedules (test mode)", nil
	}
	s := h.a.Lead.Get()
	switch {
	case s.Err != nil:
		return "", fmt.Errorf("the lease cannot be read or renewed: %w", s.Err)
	case s.Leading:
		return fmt.Sprintf("this replica leads (term %d)", s.Token), nil
	case s.Holder != "":
		return fmt.Sprintf("%s leads (lease until %s)", s.Holder, s.Expires.UTC().Format(time.RFC3339)), nil
	default:
		return "", errors.New("no replica leads yet")
	}
}

func (h *health) checkProvider(name string) (string, error) {
	p := h.a.opt.Providers[name]
	desc := ""
	if d, ok := p.(Describer); ok {
		desc = d.Describe()
	}
	if _, ok := p.(HealthChecker); !ok {
		return desc, nil
	}
	h.mu.Lock()
	pr, seen := h.providers[name]
	h.mu.Unlock()
	if !seen {
		return desc + " (not probed yet)", nil
	}
	if pr.err != nil {
		return desc, fmt.Errorf("at %s: %w", pr.at.UTC().Format(time.RFC3339), pr.err)
	}
	if desc == "" {
		desc = "healthy"
	}
	return desc, nil
}

// checkTargets reports, per target, what this replica can tell without a
// forge call: a webhook secret to check deliveries with, a client that
// opens, the credential's last answer and the rate-limit budget.
func (h *health) checkTargets(context.Context) (string, error) {
	var bad []error
	ok := 0
	for _, t := range h.a.Catalog.Current().Targets {
		if t.TakesWebhooks() && t.WebhookSecret == "" {
			bad = append(bad, fmt.Errorf("target %s: this replica has no webhook secret for it", t.ID))
			continue
		}
		f, err := h.a.opt.Forges.Forge(t)
		if err != nil {
			bad = append(bad, fmt.Errorf("target %s: %w", t.ID, err))
			continue
		}
		if cr, yes := f.(CredentialReporter); yes {
			if err := cr.CredentialError(); err != nil {
				bad = append(bad, fmt.Errorf("target %s: credential: %w", t.ID, err))
				continue
			}
		}
		if b, yes := f.(budgeter); yes {
			if n, reset := b.Budget(); n == 0 {
				bad = append(bad, fmt.Errorf("target %s: rate limit spent until %s", t.ID, reset.UTC().Format(time.RFC3339)))
				continue
			}
		}
		ok++
	}
	return fmt.Sprintf("%d of %d targets ok", ok, ok+len(bad)), errors.Join(bad...)
}
