package reconciler_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// BenchmarkPass times one whole reconcile pass (provider sweep, forge
// sweep, runner sweep, timeouts) with 10,000 and 100,000 live instances,
// each running a job that the forge lists as in progress, each with its
// runner registered and busy: the steady state of a large fleet, where the
// pass finds nothing to change.
func BenchmarkPass(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchPass(b, n) })
	}
}

func benchPass(b *testing.B, n int) {
	g := newRig(b)
	ctx := context.Background()
	now := g.clk.Now()
	err := g.st.Update(ctx, func(tx corral.Tx) error {
		for i := 0; i < n; i++ {
			j := corral.Job{TargetID: "acme", TenantID: "default", ForgeJobID: int64(i + 1), State: corral.JobRunning,
				Labels: []string{"self-hosted", "corral"}, CreatedAt: now, UpdatedAt: now}
			if err := tx.PutJob(ctx, &j); err != nil {
				return err
			}
			id := fmt.Sprintf("i%06d", i)
			in := corral.Instance{ID: id, Name: "corral-acme-" + id, PoolID: "onprem", TenantID: "default", TargetID: "acme",
				State: corral.InstBusy, JobID: j.ID, Labels: j.Labels, StartedAt: now, BusyAt: now, CreatedAt: now,
				ExpiresAt: now.Add(time.Hour)}
			if err := tx.PutInstance(ctx, &in); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("i%06d", i)
		if _, err := g.prov.Create(ctx, corral.InstanceSpec{InstanceID: id, PoolID: "onprem"}); err != nil {
			b.Fatal(err)
		}
		if _, err := g.forge.MintRunner(ctx, corral.RunnerSpec{Name: "corral-acme-" + id}); err != nil {
			b.Fatal(err)
		}
		g.forge.SetRunner("corral-acme-"+id, true, true)
		g.forge.Open = append(g.forge.Open, corral.JobEvent{Action: corral.ActionInProgress, ForgeJobID: int64(i + 1)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for b.Loop() {
		if err := g.r.Pass(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// CPU time per pass (with the collector's): unlike ns/op it hardly
	// depends on what else the machine runs.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Milliseconds())/float64(b.N), "cpu-ms/pass")
	if g.prov.Len() != n || g.prov.Count("delete") != 0 {
		b.Fatalf("the pass changed the fleet: %d instances, %d deletes", g.prov.Len(), g.prov.Count("delete"))
	}
}

// cpuTime is the user and system CPU time this process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
