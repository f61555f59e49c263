package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// testJobUsage: job usage is recorded per job (a second record of a job
// replaces the first) and summed up per tenant, repository and job name:
// the highest peaks, the count, the largest flavor; a tenant sees its own.
func testJobUsage(t *testing.T, s corral.Store) {
	large := corral.Flavor{CPU: 8, MemoryMB: 16384}
	small := corral.Flavor{CPU: 2, MemoryMB: 4096}
	rec := []corral.JobUsage{
		{JobID: 1, TenantID: "acme", PoolID: "p1", Repo: "acme/app", JobName: "build", Flavor: large,
			PeakCPU: 9, P95CPU: 9, PeakMemoryBytes: 9, Duration: time.Hour, Samples: 2, RecordedAt: T0}, // replaced below
		{JobID: 1, TenantID: "acme", PoolID: "p1", Repo: "acme/app", JobName: "build", Flavor: large,
			PeakCPU: 1.25, P95CPU: 1.0, PeakMemoryBytes: 900 << 20, CPUSeconds: 30, Duration: 40 * time.Second, Samples: 5, RecordedAt: T0},
		{JobID: 2, TenantID: "acme", PoolID: "p2", Repo: "acme/app", JobName: "build", Flavor: small,
			PeakCPU: 0.5, P95CPU: 1.5, PeakMemoryBytes: 100 << 20, CPUSeconds: 10, Duration: 90 * time.Second, Samples: 9, RecordedAt: T0.Add(time.Minute)},
		{JobID: 3, TenantID: "acme", PoolID: "p1", Repo: "acme/app", JobName: "test", Flavor: small,
			PeakCPU: 2, P95CPU: 2, PeakMemoryBytes: 1 << 30, Duration: time.Second, Samples: 2, RecordedAt: T0},
		{JobID: 4, TenantID: "other", PoolID: "p9", Repo: "other/x", JobName: "build", Flavor: small,
			PeakCPU: 0.1, P95CPU: 0.1, PeakMemoryBytes: 1 << 20, Duration: time.Second, Samples: 2, RecordedAt: T0},
	}
	for _, u := range rec {
		update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.PutJobUsage(ctx, u) })
	}
	get := func(tenant string) []corral.UsageSummary {
		t.Helper()
		var out []corral.UsageSummary
		if err := s.View(context.Background(), func(tx corral.ReadTx) error {
			var err error
			out, err = tx.UsageSummaries(context.Background(), tenant)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := get("")
	if len(all) != 3 {
		t.Fatalf("summaries of all tenants: %+v, want 3", all)
	}
	b := all[0]
	want := corral.UsageSummary{TenantID: "acme", Repo: "acme/app", JobName: "build", PoolID: "p2", Jobs: 2,
		PeakCPU: 1.25, P95CPU: 1.5, PeakMemoryBytes: 900 << 20, MaxDuration: 90 * time.Second, Flavor: large,
		LastAt: T0.Add(time.Minute)}
	if !b.LastAt.Equal(want.LastAt) {
		t.Errorf("LastAt %v, want %v", b.LastAt, want.LastAt)
	}
	b.LastAt = want.LastAt
	if b != want {
		t.Errorf("acme/app build:\n got %+v\nwant %+v", b, want)
	}
	if all[1].JobName != "test" || all[1].Jobs != 1 || all[2].TenantID != "other" {
		t.Errorf("order or grouping: %+v", all)
	}
	// The workflow comes from the job's CI analytics record: job 3 ran in
	// workflow CI, so it sums up apart from a run of "test" without one.
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		return tx.PutJobRun(ctx, corral.JobRun{JobID: 3, TenantID: "acme", Repo: "acme/app", Workflow: "CI", JobName: "test",
			Conclusion: "success", CompletedAt: T0})
	})
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		return tx.PutJobUsage(ctx, corral.JobUsage{JobID: 5, TenantID: "acme", PoolID: "p1", Repo: "acme/app", JobName: "test",
			Flavor: small, PeakCPU: 0.3, P95CPU: 0.3, PeakMemoryBytes: 1 << 20, Duration: time.Second, Samples: 2, RecordedAt: T0})
	})
	all = get("acme")
	if len(all) != 3 || all[0].JobName != "build" || all[0].Workflow != "" || all[1].JobName != "test" || all[1].Workflow != "" ||
		all[1].Jobs != 1 || all[1].PeakCPU != 0.3 || all[2].JobName != "test" || all[2].Workflow != "CI" || all[2].PeakCPU != 2 {
		t.Errorf("by workflow: %+v", all)
	}
	if other := get("other"); len(other) != 1 || other[0].Repo != "other/x" {
		t.Errorf("tenant other sees %+v", other)
	}
	if none := get("nobody"); len(none) != 0 {
		t.Errorf("tenant nobody sees %+v", none)
	}
}
