package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func samplePool(id string) corral.Pool {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		berlin = time.UTC
	}
	return corral.Pool{
		ID:       id,
		TenantID: "acme",
		Targets:  []string{"gh-acme", "gitea-acme"},
		Labels:   []string{"corral", "gpu"},
		Provider: "docker",
		Image:    "ghcr.io/acme/runner:2",
		// Options for the pool's provider type travel as opaque JSON.
		ProviderOptions: json.RawMessage(`{"docker_in_docker":true}`),
		Flavor:          corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 20480, Arch: "x64"},
		Max:             corral.Flavor{CPU: 16, MemoryMB: 65536, DiskMB: 204800, Arch: "x64"},
		Sizes: map[string]corral.Flavor{
			"small": {CPU: 1, MemoryMB: 2048},
			"large": {CPU: 8, MemoryMB: 16384, DiskMB: 102400},
		},
		Priority:     -3,
		MaxInstances: 40,
		MinIdle:      2,
		Schedules: []corral.IdleSchedule{
			{Days: []time.Weekday{time.Monday, time.Friday}, From: 8 * time.Hour, To: 18 * time.Hour, Location: berlin, MinIdle: 6},
			{From: 22 * time.Hour, To: 2 * time.Hour, MinIdle: 1},
		},
		HeadroomCount:   1,
		HeadroomPercent: 25,
		BootTimeout:     5 * time.Minute,
		MaxJobRuntime:   6 * time.Hour,
		IdleTimeout:     10 * time.Minute,
		MaxLifetime:     8 * time.Hour,
	}
}

func sampleTarget(id string) corral.Target {
	return corral.Target{
		ID:            id,
		TenantID:      "acme",
		Kind:          corral.KindGitHub,
		Scope:         corral.ScopeOrg,
		Path:          "acme",
		URL:           "https://api.github.com",
		WebhookSecret: "whsec-must-not-be-stored",
		Token:         "ghp_must-not-be-stored",
		RunnerPrefix:  "corral-",
		Settings:      map[string]string{"runner_group_id": "3", "app_id": "12345"},
	}
}

func testConfigRoundTrip(t *testing.T, s corral.Store) {
	tenants := []corral.Tenant{{ID: "acme", MaxInstances: 50}, {ID: "zeta", FromAPI: true}}
	targets := []corral.Target{sampleTarget("gh-acme"), {ID: "gitea-zeta", TenantID: "zeta", Kind: corral.KindGitea, Scope: corral.ScopeInstance, URL: "http://127.0.0.1:3000"}}
	pools := []corral.Pool{samplePool("big"), {ID: "small", TenantID: "zeta", Provider: "process"}}
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		// Inserted in reverse: listings are ordered by id.
		for i := len(tenants) - 1; i >= 0; i-- {
			if err := tx.PutTenant(ctx, tenants[i]); err != nil {
				return err
			}
		}
		for i := len(targets) - 1; i >= 0; i-- {
			if err := tx.PutTarget(ctx, targets[i]); err != nil {
				return err
			}
		}
		for i := len(pools) - 1; i >= 0; i-- {
			if err := tx.PutPool(ctx, pools[i]); err != nil {
				return err
			}
		}
		return nil
	})
	// Secrets are dropped on Put.
	for i := range targets {
		targets[i].WebhookSecret, targets[i].Token = "", ""
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		gotTenants, err := tx.Tenants(ctx)
		if err != nil {
			return err
		}
		equal(t, "tenants", gotTenants, tenants)
		gotTargets, err := tx.Targets(ctx)
		if err != nil {
			return err
		}
		equal(t, "targets", gotTargets, targets)
		gotPools, err := tx.Pools(ctx)
		if err != nil {
			return err
		}
		equal(t, "pools", gotPools, pools)
		return nil
	})
}

func testConfigReplace(t *testing.T, s corral.Store) {
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		if err := tx.PutTenant(ctx, corral.Tenant{ID: "acme", MaxInstances: 1}); err != nil {
			return err
		}
		if err := tx.PutTarget(ctx, sampleTarget("gh")); err != nil {
			return err
		}
		return tx.PutPool(ctx, samplePool("p"))
	})
	target := sampleTarget("gh")
	target.Path, target.Settings, target.Token = "acme-2", nil, ""
	target.WebhookSecret = ""
	pool := corral.Pool{ID: "p", TenantID: "other", Labels: []string{"x"}}
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		if err := tx.PutTenant(ctx, corral.Tenant{ID: "acme", MaxInstances: 9}); err != nil {
			return err
		}
		if err := tx.PutTarget(ctx, target); err != nil {
			return err
		}
		return tx.PutPool(ctx, pool)
	})
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		tenants, err := tx.Tenants(ctx)
		if err != nil {
			return err
		}
		equal(t, "tenants", tenants, []corral.Tenant{{ID: "acme", MaxInstances: 9}})
		targets, err := tx.Targets(ctx)
		if err != nil {
			return err
		}
		equal(t, "targets", targets, []corral.Target{target})
		pools, err := tx.Pools(ctx)
		if err != nil {
			return err
		}
		equal(t, "pools", pools, []corral.Pool{pool})
		return nil
	})
}

func testDeliveryDedup(t *testing.T, s corral.Store) {
	ctx := testCtx(t)
	insert := func(target, id string) bool {
		t.Helper()
		var fresh bool
		err := s.Update(ctx, func(tx corral.Tx) error {
			var err error
			fresh, err = tx.InsertDelivery(ctx, target, id, T0)
			return err
		})
		if err != nil {
			t.Fatalf("InsertDelivery(%s, %s): %v", target, id, err)
		}
		return fresh
	}
	if !insert("gh", "d-1") {
		t.Error("first delivery reported as duplicate")
	}
	if insert("gh", "d-1") {
		t.Error("second delivery of d-1 reported as new")
	}
	if !insert("gitea", "d-1") {
		t.Error("same delivery id on another target reported as duplicate")
	}
	// Within one transaction too.
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		a, err := tx.InsertDelivery(ctx, "gh", "d-2", T0)
		if err != nil {
			return err
		}
		b, err := tx.InsertDelivery(ctx, "gh", "d-2", T0)
		if err != nil {
			return err
		}
		if !a || b {
			t.Errorf("in one tx: first=%v second=%v, want true false", a, b)
		}
		return nil
	})
}

func testDeliveryPrune(t *testing.T, s corral.Store) {
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		for i, at := range []time.Time{T0.Add(-2 * time.Hour), T0.Add(-time.Hour), T0, T0.Add(time.Hour)} {
			if _, err := tx.InsertDelivery(ctx, "gh", "d-"+string(rune('a'+i)), at); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		n, err := tx.PruneDeliveries(ctx, T0)
		if err != nil {
			return err
		}
		if n != 2 {
			t.Errorf("PruneDeliveries pruned %d, want 2 (strictly before T0)", n)
		}
		// Pruned ids are new again; kept ones are still duplicates.
		fresh, err := tx.InsertDelivery(ctx, "gh", "d-a", T0)
		if err != nil {
			return err
		}
		kept, err := tx.InsertDelivery(ctx, "gh", "d-c", T0)
		if err != nil {
			return err
		}
		if !fresh || kept {
			t.Errorf("after prune: pruned id new=%v (want true), kept id new=%v (want false)", fresh, kept)
		}
		return nil
	})
}
