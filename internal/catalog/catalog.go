// Package catalog is corral's one live source of configuration: tenants,
// targets and pools as the store holds them (secrets by reference: each
// replica fills in a target's secrets from its own config), read back into
// an immutable Snapshot that every component uses. A change written by any
// replica (a config file applied at start or on SIGHUP, later the API)
// bumps the store's catalog version; every replica polls that one number
// and reloads within a poll interval, then tells its subscribers.
//
//	config file --Apply--> store rows + version++ --Run (poll)--> Snapshot --> scheduler,
//	                                                                           reconciler,
//	                                                                           webhooks, ledger, API
package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/store"
)

// Snapshot is the configuration at one catalog version. Never modify it.
type Snapshot struct {
	Version int64
	Tenants []corral.Tenant
	// Targets carry this replica's secrets; a target another replica (or
	// the API) added without a secret this replica knows has empty ones.
	Targets []corral.Target
	// Pools in priority order (lower first, then id).
	Pools  []corral.Pool
	Router *route.Matcher

	tenants map[string]corral.Tenant
	targets map[string]corral.Target
	pools   map[string]corral.Pool
}

// Tenant returns a tenant by id.
func (s *Snapshot) Tenant(id string) (corral.Tenant, bool) { t, ok := s.tenants[id]; return t, ok }

// Target returns a target by id.
func (s *Snapshot) Target(id string) (corral.Target, bool) { t, ok := s.targets[id]; return t, ok }

// Pool returns a pool by id.
func (s *Snapshot) Pool(id string) (corral.Pool, bool) { p, ok := s.pools[id]; return p, ok }

// Desired is the configuration a replica's file (or an API write) asks
// for: the whole catalog, replacing what the store has.
type Desired struct {
	Tenants []corral.Tenant
	Targets []corral.Target
	Pools   []corral.Pool
}

// Change lists what an Apply changed, by id.
type Change struct {
	Added, Changed, Removed []string // "pool onprem", "target acme", ...
}

// Empty reports whether nothing changed.
func (c Change) Empty() bool { return len(c.Added)+len(c.Changed)+len(c.Removed) == 0 }

// Config assembles a catalog.
type Config struct {
	Store corral.Store
	// Route holds the routing options (size words, default arch).
	Route route.Options
	// Interval between polls of the store's catalog version (default
	// 500 ms: a change reaches every replica within a second).
	Interval time.Duration
	Logger   *slog.Logger
	// Box opens the credentials written through the API (Target.Sealed);
	// nil: they stay closed (empty) on this replica.
	Box Unsealer
}

// Unsealer opens a sealed value (secretbox.Box).
type Unsealer interface {
	Unseal(name, sealed string) (corral.Secret, error)
}

// SealedName is the name a target's credential is sealed under: the target
// and the field are bound to the ciphertext, so a value copied to another
// target or field does not open.
func SealedName(targetID, field string) string { return "target/" + targetID + "/" + field }

// Catalog holds the current Snapshot.
type Catalog struct {
	cfg Config
	log *slog.Logger
	cur atomic.Pointer[Snapshot]

	mu      sync.Mutex // serializes loads and guards the fields below
	secrets map[string]secrets
	subs    []func(*Snapshot)
	lastErr error
}

type secrets struct{ webhook, token corral.Secret }

// New assembles a catalog. It does no I/O; Load or Apply fills it.
func New(cfg Config) *Catalog {
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{cfg: cfg, log: cfg.Logger.With("component", "catalog"), secrets: map[string]secrets{}}
	empty, _ := c.build(0, nil, nil, nil)
	c.cur.Store(empty)
	return c
}

// Current returns the snapshot in force. It never returns nil.
func (c *Catalog) Current() *Snapshot { return c.cur.Load() }

// Subscribe calls fn with every new snapshot (not the current one), in
// order, from the goroutine that loaded it. fn must not block for long.
func (c *Catalog) Subscribe(fn func(*Snapshot)) {
	c.mu.Lock()
	c.subs = append(c.subs, fn)
	c.mu.Unlock()
}

// Name is the component's name.
func (c *Catalog) Name() string { return "catalog" }

// Err is the last load error, nil after a good load.
func (c *Catalog) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// SetSecrets records this replica's secrets of its targets (by id).
func (c *Catalog) SetSecrets(ts []corral.Target) {
	m := make(map[string]secrets, len(ts))
	for _, t := range ts {
		m[t.ID] = secrets{t.WebhookSecret, t.Token}
	}
	c.mu.Lock()
	c.secrets = m
	c.mu.Unlock()
}

// Apply makes the store's catalog match d in one transaction (rows that d
// lacks are removed: a removed pool drains, its instances finish their
// jobs and go), bumps the version if anything changed, and loads it. The
// targets' secrets become this replica's. d is checked first (pools must
// route), and nothing is written if it is bad.
func (c *Catalog) Apply(ctx context.Context, d Desired) (Change, error) {
	if _, err := route.New(d.Pools, c.cfg.Route); err != nil {
		return Change{}, fmt.Errorf("catalog: pools: %w", err)
	}
	c.SetSecrets(d.Targets)
	var ch Change
	err := c.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		ch = Change{}
		var err error
		if err = applyTenants(ctx, tx, d.Tenants, &ch); err != nil {
			return err
		}
		if err = applyTargets(ctx, tx, d.Targets, &ch); err != nil {
			return err
		}
		if err = applyPools(ctx, tx, d.Pools, &ch); err != nil {
			return err
		}
		if !ch.Empty() {
			_, err = tx.BumpCatalogVersion(ctx)
		}
		return err
	})
	if err != nil {
		return Change{}, fmt.Errorf("catalog: apply: %w", err)
	}
	return ch, c.Load(ctx)
}

// UpdatePool changes one pool of the store's catalog: fn edits the stored
// pool (read inside the transaction, so concurrent writers do not undo each
// other) and may refuse it with an error. The result must pass the pool's
// own checks and route with every other pool; then it is written with a
// version bump and loaded, so it takes effect on every replica within a
// poll interval. A missing pool is corral.ErrNotFound; an edit that
// changes nothing writes nothing.
func (c *Catalog) UpdatePool(ctx context.Context, id string, fn func(*corral.Pool) error) (corral.Pool, error) {
	var out corral.Pool
	changed := false
	err := c.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		changed = false
		pools, err := tx.Pools(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(pools, func(p corral.Pool) bool { return p.ID == id })
		if i < 0 {
			return fmt.Errorf("pool %q: %w", id, corral.ErrNotFound)
		}
		old := pools[i]
		p := old
		p.Labels, p.Targets = slices.Clone(old.Labels), slices.Clone(old.Targets)
		if err := fn(&p); err != nil {
			return err
		}
		if p.ID != old.ID || p.TenantID != old.TenantID {
			return fmt.Errorf("pool %q: its id and tenant cannot change: %w", id, corral.ErrBadInput)
		}
		if probs := p.Problems(); len(probs) > 0 {
			msgs := make([]string, len(probs))
			for j, pr := range probs {
				msgs[j] = pr.Key + ": " + pr.Msg
			}
			return fmt.Errorf("pool %s: %s: %w", id, strings.Join(msgs, "; "), corral.ErrBadInput)
		}
		pools[i] = p
		if _, err := route.New(pools, c.cfg.Route); err != nil {
			return fmt.Errorf("pool %s: %v: %w", id, err, corral.ErrBadInput)
		}
		out = p
		if same(store.EncodePool, old, p) {
			return nil
		}
		changed = true
		if err := tx.PutPool(ctx, p); err != nil {
			return err
		}
		_, err = tx.BumpCatalogVersion(ctx)
		return err
	})
	if err != nil {
		return corral.Pool{}, err
	}
	if !changed {
		return out, nil
	}
	return out, c.Load(ctx)
}

// PutTarget adds or changes one target of the store's catalog: fn gets the
// stored target (exists false: none yet, a zero target with the id) and
// returns the target to store, or refuses with an error. The write bumps
// the version and is loaded, so it takes effect on every replica within a
// poll interval.
func (c *Catalog) PutTarget(ctx context.Context, id string, fn func(cur corral.Target, exists bool) (corral.Target, error)) (corral.Target, error) {
	var out corral.Target
	err := c.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		targets, err := tx.Targets(ctx)
		if err != nil {
			return err
		}
		cur, exists := corral.Target{ID: id}, false
		if i := slices.IndexFunc(targets, func(t corral.Target) bool { return t.ID == id }); i >= 0 {
			cur, exists = targets[i], true
		}
		t, err := fn(cur, exists)
		if err != nil {
			return err
		}
		if t.ID != id {
			return fmt.Errorf("target %q: its id cannot change: %w", id, corral.ErrBadInput)
		}
		out = t
		if exists && cur.TenantID == t.TenantID && same(store.EncodeTarget, cur, t) {
			return nil
		}
		if err := tx.PutTarget(ctx, t); err != nil {
			return err
		}
		_, err = tx.BumpCatalogVersion(ctx)
		return err
	})
	if err != nil {
		return corral.Target{}, err
	}
	return out, c.Load(ctx)
}

// DeleteTarget removes one target from the store's catalog, with its pause
// state. check may refuse (say, the caller's tenant). A target a pool
// still names is refused with corral.ErrConflict: change the pool first.
func (c *Catalog) DeleteTarget(ctx context.Context, id string, check func(corral.Target) error) error {
	err := c.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		targets, err := tx.Targets(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(targets, func(t corral.Target) bool { return t.ID == id })
		if i < 0 {
			return fmt.Errorf("target %q: %w", id, corral.ErrNotFound)
		}
		if err := check(targets[i]); err != nil {
			return err
		}
		pools, err := tx.Pools(ctx)
		if err != nil {
			return err
		}
		for _, p := range pools {
			if slices.Contains(p.Targets, id) {
				return fmt.Errorf("target %q: pool %s serves it; change the pool's targets first: %w", id, p.ID, corral.ErrConflict)
			}
		}
		if err := tx.DeleteTarget(ctx, id); err != nil {
			return err
		}
		if err := tx.SetTargetPaused(ctx, id, false, time.Now()); err != nil {
			return err
		}
		_, err = tx.BumpCatalogVersion(ctx)
		return err
	})
	if err != nil {
		return err
	}
	return c.Load(ctx)
}

// PutTenant adds or changes one tenant of the store's catalog: fn gets the
// stored tenant (exists false: none yet, a zero tenant with the id) and
// returns the tenant to store, or refuses with an error. The write bumps
// the version and is loaded, so it takes effect on every replica within a
// poll interval (a new max_instances caps the next scheduling pass).
func (c *Catalog) PutTenant(ctx context.Context, id string, fn func(cur corral.Tenant, exists bool) (corral.Tenant, error)) (corral.Tenant, error) {
	var out corral.Tenant
	changed := false
	err := c.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		changed = false
		tenants, err := tx.Tenants(ctx)
		if err != nil {
			return err
		}
		cur, exists := corral.Tenant{ID: id}, false
		if i := slices.IndexFunc(tenants, func(t corral.Tenant) bool { return t.ID == id }); i >= 0 {
			cur, exists = tenants[i], true
		}
		t, err := fn(cur, exists)
		if err != nil {
			return err
		}
		if t.ID != id {
			return fmt.Errorf("tenant %q: its id cannot change: %w", id, corral.ErrBadInput)
		}
		out = t
		if exists && cur == t {
			return nil
		}
		changed = true
		if err := tx.PutTenant(ctx, t); err != nil {
			return err
		}
		_, err = tx.BumpCatalogVersion(ctx)
		return err
	})
	if err != nil {
		return corral.Tenant{}, err
	}
	if !changed {
		return out, nil
	}
	return out, c.Load(ctx)
}

// DeleteTenant removes one tenant from the store's catalog. A tenant that
// still owns a target or a pool is refused with corral.ErrConflict: delete
// those first.
func (c *Catalog) DeleteTenant(ctx context.Context, id string) error {
	err := c.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		tenants, err := tx.Tenants(ctx)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(tenants, func(t corral.Tenant) bool { return t.ID == id }) {
			return fmt.Errorf("tenant %q: %w", id, corral.ErrNotFound)
		}
		targets, err := tx.Targets(ctx)
		if err != nil {
			return err
		}
		for _, t := range targets {
			if t.TenantID == id {
				return fmt.Errorf("tenant %q: it owns target %s; delete its targets and pools first: %w", id, t.ID, corral.ErrConflict)
			}
		}
		pools, err := tx.Pools(ctx)
		if err != nil {
			return err
		}
		for _, p := range pools {
			if p.TenantID == id {
				return fmt.Errorf("tenant %q: it owns pool %s; delete its targets and pools first: %w", id, p.ID, corral.ErrConflict)
			}
		}
		if err := tx.DeleteTenant(ctx, id); err != nil {
			return err
		}
		_, err = tx.BumpCatalogVersion(ctx)
		return err
	})
	if err != nil {
		return err
	}
	return c.Load(ctx)
}

func applyTenants(ctx context.Context, tx corral.Tx, want []corral.Tenant, ch *Change) error {
	have, err := tx.Tenants(ctx)
	if err != nil {
		return err
	}
	old := map[string]corral.Tenant{}
	for _, t := range have {
		old[t.ID] = t
	}
	for _, t := range want {
		o, ok := old[t.ID]
		delete(old, t.ID)
		if ok && o == t {
			continue
		}
		if err := tx.PutTenant(ctx, t); err != nil {
			return err
		}
		note(ch, ok, "tenant "+t.ID)
	}
	for id, o := range old {
		if o.FromAPI {
			continue // added through the API, not the file's to remove
		}
		if err := tx.DeleteTenant(ctx, id); err != nil {
			return err
		}
		ch.Removed = append(ch.Removed, "tenant "+id)
	}
	return nil
}

func applyTargets(ctx context.Context, tx corral.Tx, want []corral.Target, ch *Change) error {
	have, err := tx.Targets(ctx)
	if err != nil {
		return err
	}
	old := map[string]corral.Target{}
	for _, t := range have {
		old[t.ID] = t
	}
	for _, t := range want {
		o, ok := old[t.ID]
		delete(old, t.ID)
		if ok && o.TenantID == t.TenantID && same(store.EncodeTarget, o, t) {
			continue
		}
		if err := tx.PutTarget(ctx, t); err != nil {
			return err
		}
		note(ch, ok, "target "+t.ID)
	}
	for id, o := range old {
		if o.FromAPI {
			continue // added through the API, not the file's to remove
		}
		if err := tx.DeleteTarget(ctx, id); err != nil {
			return err
		}
		ch.Removed = append(ch.Removed, "target "+id)
	}
	return nil
}

func applyPools(ctx context.Context, tx corral.Tx, want []corral.Pool, ch *Change) error {
	have, err := tx.Pools(ctx)
	if err != nil {
		return err
	}
	old := map[string]corral.Pool{}
	for _, p := range have {
		old[p.ID] = p
	}
	for _, p := range want {
		o, ok := old[p.ID]
		delete(old, p.ID)
		if ok && same(store.EncodePool, o, p) {
			continue
		}
		if err := tx.PutPool(ctx, p); err != nil {
			return err
		}
		note(ch, ok, "pool "+p.ID)
	}
	for id := range old {
		if err := tx.DeletePool(ctx, id); err != nil {
			return err
		}
		ch.Removed = append(ch.Removed, "pool "+id)
	}
	return nil
}

// same reports whether two rows are stored alike (the store's own
// encoding: time zones by name, secrets dropped).
func same[T any](enc func(T) (string, error), a, b T) bool {
	x, err1 := enc(a)
	y, err2 := enc(b)
	return err1 == nil && err2 == nil && x == y
}

func note(ch *Change, existed bool, what string) {
	if existed {
		ch.Changed = append(ch.Changed, what)
	} else {
		ch.Added = append(ch.Added, what)
	}
}

// Load reads the catalog from the store if its version moved (or nothing
// was loaded yet), builds the snapshot and tells the subscribers.
func (c *Catalog) Load(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.load(ctx)
	c.lastErr = err
	return err
}

func (c *Catalog) load(ctx context.Context) error {
	var (
		version int64
		tenants []corral.Tenant
		targets []corral.Target
		pools   []corral.Pool
		stale   bool
	)
	cur := c.cur.Load()
	err := c.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		if version, err = tx.CatalogVersion(ctx); err != nil {
			return err
		}
		if version == cur.Version || version == 0 {
			// Unchanged, or nothing was ever applied to this store: the
			// components keep the configuration they were built with.
			stale = true
			return nil
		}
		if tenants, err = tx.Tenants(ctx); err != nil {
			return err
		}
		if targets, err = tx.Targets(ctx); err != nil {
			return err
		}
		pools, err = tx.Pools(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: load: %w", err)
	}
	if stale {
		return nil
	}
	for i, t := range targets {
		if s, ok := c.secrets[t.ID]; ok {
			targets[i].WebhookSecret, targets[i].Token = s.webhook, s.token
		}
		// Credentials written through the API are newer than the file's.
		for field, dst := range map[string]*corral.Secret{"webhook_secret": &targets[i].WebhookSecret, "token": &targets[i].Token} {
			sealed, ok := t.Sealed[field]
			if !ok {
				continue
			}
			if c.cfg.Box == nil {
				c.log.Warn("a target's credential is sealed, but this replica has no secret key", "target", t.ID, "field", field)
				*dst = ""
				continue
			}
			v, err := c.cfg.Box.Unseal(SealedName(t.ID, field), sealed)
			if err != nil {
				c.log.Warn("a target's sealed credential does not open", "target", t.ID, "field", field, "err", err)
			}
			*dst = v
		}
	}
	snap, err := c.build(version, tenants, targets, pools)
	if err != nil {
		// Another writer stored pools that do not route here (say, a newer
		// corral's): keep serving with the catalog in force.
		return fmt.Errorf("catalog version %d: %w", version, err)
	}
	c.cur.Store(snap)
	c.log.Info("catalog loaded", "version", version, "tenants", len(tenants), "targets", len(targets), "pools", len(pools))
	for _, fn := range c.subs {
		fn(snap)
	}
	return nil
}

func (c *Catalog) build(version int64, tenants []corral.Tenant, targets []corral.Target, pools []corral.Pool) (*Snapshot, error) {
	sorted := append([]corral.Pool(nil), pools...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Priority != sorted[j].Priority {
			return sorted[i].Priority < sorted[j].Priority
		}
		return sorted[i].ID < sorted[j].ID
	})
	m, err := route.New(sorted, c.cfg.Route)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Version: version, Tenants: tenants, Targets: targets, Pools: sorted, Router: m,
		tenants: map[string]corral.Tenant{}, targets: map[string]corral.Target{}, pools: map[string]corral.Pool{}}
	for _, t := range tenants {
		s.tenants[t.ID] = t
	}
	for _, t := range targets {
		s.targets[t.ID] = t
	}
	for _, p := range sorted {
		s.pools[p.ID] = p
	}
	return s, nil
}

// Run polls the store's catalog version every interval and reloads on a
// change, until ctx ends. A failing store is logged (once per run of
// failures) and retried; Err reports it meanwhile.
func (c *Catalog) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := c.Load(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			c.log.Warn("catalog reload failed; keeping the catalog in force", "err", err)
			failing = true
		case err == nil && failing:
			c.log.Info("catalog reload works again")
			failing = false
		}
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil
		}
	}
}
