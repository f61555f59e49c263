package dockere2e

import (
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// TestDocker_Flow queues jobs for a docker pool: each one is served by a
// fresh container on the engine, and at the end every job completed once
// with success, no registration is left and every container is gone.
func TestDocker_Flow(t *testing.T) {
	const jobs, poolMax = 12, 4
	host := dockertest.Socket(t)
	img := runnerImage(t, host)
	eng := newEngine(t, "local", host)
	f := newRig(t, standin.Options{Seed: 1}, setup{Image: img, PoolMax: poolMax, Endpoints: []e2etest.Endpoint{{Name: "local", Host: host}}})
	p := f.start(t)

	start := time.Now()
	for i := range jobs {
		f.queue(i, 300*time.Millisecond)
	}
	seen := 0
	waitFor(t, 120*time.Second, "every job completed", func() bool {
		seen = max(seen, eng.count(t))
		return f.Count(standin.StatusCompleted) == jobs
	})
	done := time.Since(start)
	checkClean(t, f, []*engine{eng}, jobs, nil, nil)
	p.Stop(t)
	if seen == 0 {
		t.Error("never saw a container of corral's on the engine")
	}
	if peak := f.Stats().PeakRunners; peak > poolMax {
		t.Errorf("forge saw %d runners alive at once, pool max is %d", peak, poolMax)
	}
	t.Logf("%d jobs through containers (pool max %d) in %s, clean after %s; peak %d runners, up to %d containers seen",
		jobs, poolMax, done.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), f.Stats().PeakRunners, seen)
}
