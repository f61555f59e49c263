package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
)

// TestCrash kills corral with SIGKILL at seeded random moments while 300
// jobs flow through a pool capped at 8, restarts it each time, and checks
// that no job is lost or served twice, nothing leaks, and the forge never
// saw more than 8 runners alive at once.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test is not short")
	}
	const jobs, poolMax, kills = 300, 8, 6
	seed := uint64(20261125) // CORRAL_CRASH_SEED replays another run's kill moments
	if v := os.Getenv("CORRAL_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CORRAL_CRASH_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 1))
	r := newRig(t, standin.Options{Seed: int64(seed)}, setup{PoolMax: poolMax})

	queued := make(chan struct{})
	go func() {
		defer close(queued)
		rnd := rand.New(rand.NewPCG(seed, 2)) // the generator's own stream
		for i := 0; i < jobs; i++ {
			r.queue(i, []string{"self-hosted", "corral", fmt.Sprint("run-", i%7)}, time.Duration(50+rnd.IntN(250))*time.Millisecond)
			time.Sleep(time.Duration(rnd.IntN(60)) * time.Millisecond)
		}
	}()
	start := time.Now()
	for k := 0; k < kills; k++ {
		p := r.start(t)
		time.Sleep(time.Duration(1000+rnd.IntN(2500)) * time.Millisecond)
		p.Kill()
		t.Logf("kill %d at %s: %d/%d jobs completed, peak %d", k+1, time.Since(start).Round(time.Millisecond),
			r.Count(standin.StatusCompleted), jobs, r.Stats().PeakRunners)
	}
	p := r.start(t)
	<-queued
	waitFor(t, 120*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	r.checkClean(t, jobs)
	p.Stop(t)
	if peak := r.Stats().PeakRunners; peak > poolMax {
		t.Errorf("forge saw %d runners alive at once, pool max is %d", peak, poolMax)
	}
	t.Logf("300 jobs, %d kills: done in %s, peak %d runners, %d webhooks failed while corral was down",
		kills, time.Since(start).Round(time.Millisecond), r.Stats().PeakRunners, r.Stats().Webhooks.Failed)
}
