package app_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
)

// TestApp_Rightsizing: recorded job usage comes back per repository and
// job name with the advice of the pool's size table, and a tenant token
// sees its own tenant's rows only.
func TestApp_Rightsizing(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	for _, u := range []corral.JobUsage{
		{JobID: f.jobA, TenantID: "default", PoolID: "linux", Repo: "acme/app", JobName: "lint", Flavor: corral.Flavor{CPU: 8, MemoryMB: 16384},
			PeakCPU: 1.2, P95CPU: 1.1, PeakMemoryBytes: 900 << 20, Duration: time.Minute, Samples: 7, RecordedAt: now},
		{JobID: f.jobB, TenantID: "other", PoolID: "beta-linux", Repo: "beta/x", JobName: "build", Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096},
			PeakCPU: 3, P95CPU: 3, PeakMemoryBytes: 3 << 30, Duration: time.Minute, Samples: 7, RecordedAt: now},
	} {
		if err := f.st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutJobUsage(context.Background(), u) }); err != nil {
			t.Fatal(err)
		}
	}
	get := func(who string) []app.RightsizingRow {
		t.Helper()
		code, out := f.call(t, "GET", "/api/v1/rightsizing", who)
		var body struct{ Jobs []app.RightsizingRow }
		if err := json.Unmarshal([]byte(out), &body); err != nil || code != 200 {
			t.Fatalf("rightsizing as %s: %d %s %v", who, code, out, err)
		}
		return body.Jobs
	}
	all := get("admin")
	if len(all) != 2 {
		t.Fatalf("admin sees %+v, want 2 rows", all)
	}
	r := all[0]
	if r.Repository != "acme/app" || r.Job != "lint" || r.AdviceSize != "small" || !r.Smaller || r.PeakMemoryMB != 900 ||
		r.Advice != "this job peaks at 1.2 CPU (p95 1.1) and 900 MiB: `small` would do (2 CPU, 4096 MiB; it ran on 8 CPU, 16 GiB)" {
		t.Errorf("acme/app lint: %+v", r)
	}
	if o := all[1]; o.AdviceSize != "medium" || o.Smaller { // 3 CPU, 3 GiB + 25%: medium, larger than it ran on
		t.Errorf("beta/x build: %+v", o)
	}
	if mine := get("tenant-read"); len(mine) != 1 || mine[0].Tenant != "default" {
		t.Errorf("tenant default sees %+v", mine)
	}
	if theirs := get("other-tenant-read"); len(theirs) != 1 || theirs[0].Tenant != "other" {
		t.Errorf("tenant other sees %+v", theirs)
	}
}
