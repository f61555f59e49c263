package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/sim"
)

// checkClean asserts the end state every e2e test wants: every job
// completed exactly once, no runner registration left at the forge, no
// runner process left on the host.
func checkClean(t *testing.T, f *forge, dataDir string, jobs int) {
	t.Helper()
	waitFor(t, 60*time.Second, "every registration removed and every runner process gone", func() bool {
		return f.Stats().Registered == 0 && len(runnerProcesses(dataDir)) == 0
	})
	st := f.Stats()
	if st.JobsCompleted != jobs {
		t.Errorf("forge completed %d jobs, want %d", st.JobsCompleted, jobs)
	}
	for id, n := range st.Completions {
		if n != 1 {
			t.Errorf("job %d completed %d times, want exactly once", id, n)
		}
	}
	for _, j := range f.Jobs() {
		if j.Conclusion != "success" {
			t.Errorf("job %d concluded %q, want success (a runner was killed while busy?)", j.ID, j.Conclusion)
		}
	}
}

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
	f := newForge(t, sim.Options{Seed: int64(seed)})
	listen := freePort(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	f.AddTarget("e2e", "http://"+listen+"/webhooks/e2e", f.secret)
	cfg := writeConfig(t, setup{Listen: listen, DataDir: dataDir, ForgeURL: f.URL, PoolMax: poolMax})

	queued := make(chan struct{})
	go func() {
		defer close(queued)
		rnd := rand.New(rand.NewPCG(seed, 2)) // the generator's own stream
		for i := 0; i < jobs; i++ {
			f.QueueJob("e2e", sim.JobSpec{Name: fmt.Sprint("job-", i), Labels: []string{"self-hosted", "corral", fmt.Sprint("run-", i%7)},
				Duration: time.Duration(50+rnd.IntN(250)) * time.Millisecond})
			time.Sleep(time.Duration(rnd.IntN(60)) * time.Millisecond)
		}
	}()
	start := time.Now()
	for k := 0; k < kills; k++ {
		p := startCorral(t, cfg, f, listen)
		time.Sleep(time.Duration(1000+rnd.IntN(2500)) * time.Millisecond)
		p.kill()
		t.Logf("kill %d at %s: %d/%d jobs completed, peak %d", k+1, time.Since(start).Round(time.Millisecond),
			f.Stats().JobsCompleted, jobs, f.Stats().PeakRunners)
	}
	p := startCorral(t, cfg, f, listen)
	<-queued
	waitFor(t, 120*time.Second, "every job completed", func() bool { return f.Stats().JobsCompleted == jobs })
	checkClean(t, f, dataDir, jobs)
	p.stop(t)
	if peak := f.Stats().PeakRunners; peak > poolMax {
		t.Errorf("forge saw %d runners alive at once, pool max is %d", peak, poolMax)
	}
	t.Logf("300 jobs, %d kills: done in %s, peak %d runners, %d webhooks failed while corral was down",
		kills, time.Since(start).Round(time.Millisecond), f.Stats().PeakRunners, f.Stats().Webhooks.Failed)
}
