package dockere2e

import (
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// TestDocker_CrashRestart kills corral with SIGKILL while its containers
// run jobs, lets the runners finish (their containers exit with nobody to
// delete them) and jobs queue meanwhile, then restarts it: the restarted
// corral removes every container it no longer needs (the provider sweep
// finds them by their controller label; one running orphan that the store
// never knew is planted too), serves every job (the forge sweep
// finds the jobs whose webhooks failed while it was down), and ends clean.
func TestDocker_CrashRestart(t *testing.T) {
	const poolMax = 4
	host := dockertest.Socket(t)
	img := runnerImage(t, host)
	eng := newEngine(t, "local", host)
	f := newRig(t, standin.Options{Seed: 2, HeartbeatTimeout: 3 * time.Second},
		setup{Image: img, PoolMax: poolMax, Endpoints: []e2etest.Endpoint{{Name: "local", Host: host}}})
	p := f.start(t)

	jobs := 0
	for range 6 {
		f.queue(jobs, 2*time.Second)
		jobs++
	}
	waitFor(t, 60*time.Second, "runners busy in containers", func() bool {
		return f.Count(standin.StatusInProgress) >= 2 && eng.count(t) >= 2
	})
	before, _ := eng.containers(t)
	p.Kill()
	t.Logf("SIGKILL with %d jobs running, %d completed; containers %v", f.Count(standin.StatusInProgress), f.Count(standin.StatusCompleted), before)

	// While corral is down: the busy runners finish, their containers
	// exit; new jobs queue and their webhooks fail.
	for range 4 {
		f.queue(jobs, 300*time.Millisecond)
		jobs++
	}
	waitFor(t, 30*time.Second, "the runners that were busy to finish", func() bool { return f.Count(standin.StatusInProgress) == 0 })
	exited := 0
	waitFor(t, 30*time.Second, "a container left behind, exited", func() bool {
		cs, err := eng.containers(t)
		if err != nil {
			return false
		}
		exited = 0
		for _, st := range cs {
			if st == "exited" {
				exited++
			}
		}
		return exited > 0
	})
	t.Logf("while corral was down: %d containers exited and left behind", exited)
	// And one running container of corral's that its store never knew.
	eng.orphan(t, img, "orphan-of-a-crashed-create")

	restart := time.Now()
	p = f.start(t)
	for range 2 {
		f.queue(jobs, 300*time.Millisecond)
		jobs++
	}
	waitFor(t, 120*time.Second, "every job completed", func() bool { return f.Count(standin.StatusCompleted) == jobs })
	checkClean(t, f, []*engine{eng}, jobs, nil, nil)
	p.Stop(t)
	if peak := f.Stats().PeakRunners; peak > poolMax {
		t.Errorf("forge saw %d runners alive at once, pool max is %d", peak, poolMax)
	}
	t.Logf("%d jobs; after the restart every job done and clean in %s", jobs, time.Since(restart).Round(time.Millisecond))
}
