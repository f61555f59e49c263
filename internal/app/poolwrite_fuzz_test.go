package app_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// FuzzPatchPool feeds arbitrary bodies to PATCH /api/v1/pools/{pool}
// through the handler, on a real SQLite store: decoding, the patch's own
// checks, the pool's Problems and the routing table are all on the path.
// Whatever the body: no panic and no 5xx; a refusal is a 400 with a
// message and writes nothing (the catalog's version stays); an accepted
// body leaves a stored pool whose Problems() is empty. After an accepted
// body the pool is set back, so every input starts from the same pool.
func FuzzPatchPool(f *testing.F) {
	for _, body := range []string{
		// TestApp_PatchPool's bodies, accepted and refused.
		`{"max_instances": 7, "min_idle": 2, "labels": ["corral", "big"], "flavor": "4cpu8gb", "headroom": "25%", "boot_timeout": "3m", "concurrency": 16}`,
		`{"max_instances": 7}`,
		`{"min_idle": 9}`,
		`{"max_instances": -1}`,
		`{"flavor": "lots"}`,
		`{"headroom": "x%"}`,
		`{"boot_timeout": "soon"}`,
		`{"idle_timeout": "0s"}`,
		`{"max_lifetime": "1m", "max_job_runtime": "2m"}`,
		`{"labels": []}`,
		`{"provider": "other"}`,
		`{"max_instances": "7"}`,
		`{"max_instances": 7} {}`,
		// More of each key.
		`{"max_flavor": "8cpu16gb100gb", "priority": 2, "price_per_minute": 0.25}`,
		`{"max_flavor": ""}`,
		`{"image": "ghcr.io/acme/runner:1", "headroom": "2"}`,
		`{"max_job_runtime": "1h", "max_lifetime": "2h", "idle_timeout": "5m"}`,
		`{"labels": ["corral", "gpu", "self-hosted"]}`,
		`{"min_idle": 3, "max_instances": 0}`,
		`{"priority": -1}`,
		`{"price_per_minute": -0.5}`,
		`{"concurrency": -3}`,
		`{"headroom": "-1"}`,
		`{}`,
		`null`,
		`[]`,
		``,
	} {
		f.Add([]byte(body))
	}
	fx := newFixture(f)
	ctx := context.Background()
	base := fx.storedPool(f, "linux")
	if base.ID == "" {
		f.Fatal("the fixture has no pool linux")
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v0 := fx.a.Catalog.Current().Version
		code, out := fx.patch(t, "/api/v1/pools/linux", "admin", string(body))
		switch code {
		case 200:
			p := fx.storedPool(t, "linux")
			if probs := p.Problems(); len(probs) > 0 {
				t.Fatalf("accepted %q, but the stored pool has problems %v: %+v", body, probs, p)
			}
			if len(p.Labels) == 0 {
				t.Fatalf("accepted %q: the stored pool has no label", body)
			}
			// Back to the base pool for the next input.
			if _, err := fx.a.Catalog.UpdatePool(ctx, "linux", func(q *corral.Pool) error {
				*q = base
				q.Labels, q.Targets = slices.Clone(base.Labels), slices.Clone(base.Targets)
				return nil
			}); err != nil {
				t.Fatalf("reset the pool: %v", err)
			}
		case 400:
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(out), &e); err != nil || e.Error == "" {
				t.Fatalf("refused %q without a message: %s", body, out)
			}
			if v := fx.a.Catalog.Current().Version; v != v0 {
				t.Fatalf("refused %q, but the catalog went from version %d to %d", body, v0, v)
			}
		default:
			t.Fatalf("PATCH %q: %d %s, want 200 or 400", body, code, out)
		}
	})
}
