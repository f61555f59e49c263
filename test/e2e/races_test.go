package e2e

import (
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

// TestRaces runs two corral processes on one PostgreSQL database, both
// scheduling at once (no leader lease), against a pool capped at 5: the
// limit must hold at every instant, in the store and at the forge.
func TestRaces(t *testing.T) {
	const jobs, poolMax = 80, 5
	dsn := pgtest.DSN(t)
	r := newRig(t, standin.Options{Seed: 5}, setup{Store: dsn, PoolMax: poolMax})
	a := r.start(t, "-no-leader")
	b := r.startOn(t, e2etest.FreePort(t), "-no-leader")

	// Watch the store's count of live instances while the jobs flow.
	peakStore, stopWatch := watchPeak(t, dsn)
	for i := 0; i < jobs; i++ {
		r.queue(i, simJob(i), 150*time.Millisecond)
	}
	waitFor(t, 120*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	stopWatch()
	r.checkClean(t, jobs)
	a.Stop(t)
	b.Stop(t)
	if peak := r.Stats().PeakRunners; peak > poolMax {
		t.Errorf("forge saw %d runners alive at once, pool max is %d", peak, poolMax)
	}
	if peak := peakStore.Load(); peak > poolMax {
		t.Errorf("store held %d live instances at once, pool max is %d", peak, poolMax)
	}
	t.Logf("%d jobs over two racing schedulers: peak %d runners at the forge, %d live instances in the store",
		jobs, r.Stats().PeakRunners, peakStore.Load())
}
