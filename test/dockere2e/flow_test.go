package dockere2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/sim"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// TestDocker_Flow queues jobs for a docker pool: each one is served by a
// fresh container on the engine, and at the end every job completed once
// with success, no registration is left and every container is gone.
func TestDocker_Flow(t *testing.T) {
	const jobs, poolMax = 12, 4
	host := dockertest.Socket(t)
	img := runnerImage(t, host)
	eng := newEngine(t, "local", host)
	f := newForge(t, sim.Options{Seed: 1})
	listen := freePort(t)
	f.AddTarget("e2e", "http://"+listen+"/webhooks/e2e", f.secret)
	cfg := writeConfig(t, setup{Listen: listen, DataDir: filepath.Join(t.TempDir(), "data"), ForgeURL: f.URL,
		Image: img, PoolMax: poolMax, Endpoints: []endpoint{{Name: "local", Host: host}}})
	p := startCorral(t, cfg, f, listen)

	start := time.Now()
	for i := range jobs {
		f.QueueJob("e2e", simJob(i, 300*time.Millisecond))
	}
	seen := 0
	waitFor(t, 120*time.Second, "every job completed", func() bool {
		seen = max(seen, eng.count(t))
		return f.Stats().JobsCompleted == jobs
	})
	done := time.Since(start)
	checkClean(t, f, []*engine{eng}, jobs, nil, nil)
	p.stop(t)
	if seen == 0 {
		t.Error("never saw a container of corral's on the engine")
	}
	if peak := f.Stats().PeakRunners; peak > poolMax {
		t.Errorf("forge saw %d runners alive at once, pool max is %d", peak, poolMax)
	}
	t.Logf("%d jobs through containers (pool max %d) in %s, clean after %s; peak %d runners, up to %d containers seen",
		jobs, poolMax, done.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), f.Stats().PeakRunners, seen)
}
