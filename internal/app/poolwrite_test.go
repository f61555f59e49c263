package app_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func (f *fixture) patch(t testing.TB, url, who, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("PATCH", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.tok[who])
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func (f *fixture) storedPool(t testing.TB, id string) corral.Pool {
	t.Helper()
	var out corral.Pool
	if err := f.st.View(context.Background(), func(tx corral.ReadTx) error {
		ps, err := tx.Pools(context.Background())
		for _, p := range ps {
			if p.ID == id {
				out = p
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestApp_PatchPool: a pool's settings change through the API in the
// store's catalog (one version bump, the live catalog loaded at once);
// an edit that changes nothing writes nothing; every bad value is refused
// with its key and nothing is written; another tenant's pool is not found.
func TestApp_PatchPool(t *testing.T) {
	f := newFixture(t)
	v0 := f.a.Catalog.Current().Version
	code, out := f.patch(t, "/api/v1/pools/linux", "tenant-admin",
		`{"max_instances": 7, "min_idle": 2, "labels": ["corral", "big"], "flavor": "4cpu8gb", "headroom": "25%", "boot_timeout": "3m", "concurrency": 16}`)
	if code != 200 || !strings.Contains(out, `"max_instances":7`) || !strings.Contains(out, `"min_idle":2`) {
		t.Fatalf("patch: %d %s", code, out)
	}
	p := f.storedPool(t, "linux")
	want := corral.Flavor{CPU: 4, MemoryMB: 8192, Arch: "x64"}
	if p.MaxInstances != 7 || p.MinIdle != 2 || strings.Join(p.Labels, ",") != "corral,big" || p.Flavor != want ||
		p.HeadroomPercent != 25 || p.BootTimeout != 3*time.Minute || p.Concurrency != 16 || p.PricePerMinute != 0.5 {
		t.Fatalf("stored pool: %+v", p)
	}
	cur := f.a.Catalog.Current()
	if cur.Version != v0+1 {
		t.Fatalf("catalog version %d, want %d", cur.Version, v0+1)
	}
	if lp, _ := cur.Pool("linux"); lp.MaxInstances != 7 {
		t.Fatalf("live catalog not loaded: %+v", lp)
	}
	// The same values again: nothing written.
	if code, out := f.patch(t, "/api/v1/pools/linux", "admin", `{"max_instances": 7}`); code != 200 {
		t.Fatalf("no-op patch: %d %s", code, out)
	}
	if v := f.a.Catalog.Current().Version; v != v0+1 {
		t.Fatalf("a no-op patch bumped the version to %d", v)
	}
	for _, c := range []struct{ body, want string }{
		{`{"min_idle": 9}`, "min_idle: 9 exceeds max_instances 7"},
		{`{"max_instances": -1}`, "max_instances: must not be negative"},
		{`{"flavor": "lots"}`, `flavor: want a capacity word like 4cpu8gb40gb, got "lots"`},
		{`{"headroom": "x%"}`, "headroom: want a count"},
		{`{"boot_timeout": "soon"}`, `boot_timeout: want a positive duration`},
		{`{"idle_timeout": "0s"}`, `idle_timeout: want a positive duration`},
		{`{"max_lifetime": "1m", "max_job_runtime": "2m"}`, "max_lifetime: 1m must exceed max_job_runtime 2m"},
		{`{"labels": []}`, "labels: a pool needs at least one label"},
		{`{"provider": "other"}`, `unknown field "provider" (settable: labels, image`},
		{`{"max_instances": "7"}`, "body: json: cannot unmarshal string"},
		{`{"max_instances": 7} {}`, "one JSON object expected"},
	} {
		code, out := f.patch(t, "/api/v1/pools/linux", "tenant-admin", c.body)
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(out), &e)
		if code != 400 || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s: %d %s, want 400 with %q", c.body, code, out, c.want)
		}
	}
	if p2 := f.storedPool(t, "linux"); p2.MaxInstances != 7 || p2.MinIdle != 2 || f.a.Catalog.Current().Version != v0+1 {
		t.Fatalf("a refused patch wrote: %+v", p2)
	}
	if code, _ := f.patch(t, "/api/v1/pools/linux", "other-tenant-admin", `{"max_instances": 1}`); code != 404 {
		t.Errorf("another tenant's pool: %d, want 404", code)
	}
	if code, _ := f.patch(t, "/api/v1/pools/nope", "admin", `{"max_instances": 1}`); code != 404 {
		t.Errorf("a missing pool: %d, want 404", code)
	}
	if f.storedPool(t, "linux").MaxInstances != 7 {
		t.Fatal("another tenant changed the pool")
	}
}
