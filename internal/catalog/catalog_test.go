package catalog_test

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store/postgres"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func pool(id string, max int, labels ...string) corral.Pool {
	return corral.Pool{ID: id, TenantID: "default", Labels: labels, Provider: "process", MaxInstances: max,
		Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}}
}

var target = corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, Scope: corral.ScopeOrg, Path: "acme",
	WebhookSecret: "whsec", Token: "tok"}

// Two replicas on one PostgreSQL database: a change applied by one reaches
// the other's snapshot (and its subscribers) within a second; applying the
// same file again changes nothing; secrets never reach the store but each
// replica fills in its own.
func TestCatalog_Replicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	open := func() corral.Store {
		s, err := postgres.Open(ctx, dsn, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := catalog.New(catalog.Config{Store: open(), Interval: 100 * time.Millisecond})
	b := catalog.New(catalog.Config{Store: open(), Interval: 100 * time.Millisecond})
	b.SetSecrets([]corral.Target{{ID: "acme", WebhookSecret: "b-has-its-own"}})
	var seen atomic.Int64
	b.Subscribe(func(s *catalog.Snapshot) { seen.Store(s.Version) })
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = b.Run(rctx) }()

	d := catalog.Desired{Tenants: []corral.Tenant{{ID: "default"}}, Targets: []corral.Target{target},
		Pools: []corral.Pool{pool("linux", 8, "corral")}}
	ch, err := a.Apply(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Added) != 3 || a.Current().Version == 0 {
		t.Fatalf("first apply: %+v, version %d", ch, a.Current().Version)
	}
	v1 := a.Current().Version
	// Again: nothing changes, the version stays.
	if ch, err := a.Apply(ctx, d); err != nil || !ch.Empty() || a.Current().Version != v1 {
		t.Fatalf("same file again: %+v %v, version %d want %d", ch, err, a.Current().Version, v1)
	}
	// A change: max 2, labels, and a second pool; B sees it within a second.
	d.Pools = []corral.Pool{pool("linux", 2, "corral", "batch"), pool("big", 1, "corral", "big")}
	start := time.Now()
	ch, err = a.Apply(ctx, d)
	if err != nil || len(ch.Changed) != 1 || len(ch.Added) != 1 {
		t.Fatalf("change: %+v %v", ch, err)
	}
	v2 := a.Current().Version
	for seen.Load() != v2 {
		if time.Since(start) > time.Second {
			t.Fatalf("replica b did not see version %d within a second (has %d)", v2, b.Current().Version)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("replica b saw the change after %v", time.Since(start).Round(time.Millisecond))
	snap := b.Current()
	p, ok := snap.Pool("linux")
	if !ok || p.MaxInstances != 2 || len(p.Labels) != 2 || len(snap.Pools) != 2 {
		t.Fatalf("b's snapshot: %+v", snap.Pools)
	}
	if tg, _ := snap.Target("acme"); tg.WebhookSecret != "b-has-its-own" || tg.Token != "" {
		t.Errorf("b's target secrets = %q/%q, want its own webhook secret and no token (secrets are never stored)", tg.WebhookSecret, tg.Token)
	}
	if d := snap.Router.Route("default", "acme", []string{"corral"}); len(d.Routes) != 0 {
		t.Errorf("b routes a job without the new label: %+v", d.Routes)
	}
	// A removed pool is gone from the next snapshot.
	d.Pools = d.Pools[:1]
	if ch, err := a.Apply(ctx, d); err != nil || len(ch.Removed) != 1 {
		t.Fatalf("remove: %+v %v", ch, err)
	}
	if _, ok := a.Current().Pool("big"); ok {
		t.Error("pool big still in a's catalog")
	}
	// Bad pools are refused whole; nothing is written.
	v := a.Current().Version
	bad := d
	bad.Pools = []corral.Pool{{ID: "broken", TenantID: "default", Labels: []string{"corral"}, Flavor: corral.Flavor{CPU: 8}, Max: corral.Flavor{CPU: 2}}}
	if _, err := a.Apply(ctx, bad); err == nil {
		t.Error("a pool whose flavor exceeds its max was accepted")
	}
	if a.Current().Version != v {
		t.Error("a refused apply changed the version")
	}
}
