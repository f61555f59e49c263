package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/sim"
	"github.com/corral-ci/corral/internal/store/postgres"
)

// TestRaces runs two corral processes on one PostgreSQL database, both
// scheduling at once (no leader lease), against a pool capped at 5: the
// limit must hold at every instant, in the store and at the forge.
func TestRaces(t *testing.T) {
	const jobs, poolMax = 80, 5
	dsn := pgDSN(t)
	f := newForge(t, sim.Options{Seed: 5})
	listenA, listenB := freePort(t), freePort(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	f.AddTarget("e2e", "http://"+listenA+"/webhooks/e2e", f.secret)
	cfgA := writeConfig(t, setup{Listen: listenA, DataDir: dataDir, Store: dsn, ForgeURL: f.URL, PoolMax: poolMax})
	cfgB := writeConfig(t, setup{Listen: listenB, DataDir: dataDir, Store: dsn, ForgeURL: f.URL, PoolMax: poolMax})
	a := startCorral(t, cfgA, f, listenA, "-no-leader")
	b := startCorral(t, cfgB, f, listenB, "-no-leader")

	// Watch the store's count of live instances while the jobs flow.
	st, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var peakStore atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ctx.Err() == nil {
			_ = st.View(ctx, func(tx corral.ReadTx) error {
				n, err := tx.CountInstances(ctx, corral.CountFilter{PoolID: "linux"})
				if err == nil && int64(n) > peakStore.Load() {
					peakStore.Store(int64(n))
				}
				return err
			})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for i := 0; i < jobs; i++ {
		f.QueueJob("e2e", sim.JobSpec{Name: fmt.Sprint("job-", i), Labels: []string{"corral", fmt.Sprint("run-", i)},
			Duration: 150 * time.Millisecond})
	}
	waitFor(t, 120*time.Second, "every job completed", func() bool { return f.Stats().JobsCompleted == jobs })
	cancel()
	<-watched
	checkClean(t, f, dataDir, jobs)
	a.stop(t)
	b.stop(t)
	if peak := f.Stats().PeakRunners; peak > poolMax {
		t.Errorf("forge saw %d runners alive at once, pool max is %d", peak, poolMax)
	}
	if peak := peakStore.Load(); peak > poolMax {
		t.Errorf("store held %d live instances at once, pool max is %d", peak, poolMax)
	}
	t.Logf("%d jobs over two racing schedulers: peak %d runners at the forge, %d live instances in the store",
		jobs, f.Stats().PeakRunners, peakStore.Load())
}
