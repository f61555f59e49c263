package dockere2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/sim"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// TestDocker_EndpointLost runs a pool over two engines (two private
// daemons, at most 2 containers each) and stops one of them while jobs
// run. A job that was running on the lost engine fails at the forge (its
// runner died with the engine, as on a real forge); every other job, the
// ones queued before and after the loss included, is served on the other
// engine with success, and nothing is left on it or at the forge.
func TestDocker_EndpointLost(t *testing.T) {
	da, db := dockertest.NewDaemon(t), dockertest.NewDaemon(t)
	imgA, imgB := runnerImage(t, da.Host()), runnerImage(t, db.Host())
	if imgA != imgB {
		t.Fatalf("images differ: %s, %s", imgA, imgB)
	}
	ea, eb := newEngine(t, "a", da.Host()), newEngine(t, "b", db.Host())
	f := newForge(t, sim.Options{Seed: 3, HeartbeatTimeout: 3 * time.Second})
	listen := freePort(t)
	f.AddTarget("e2e", "http://"+listen+"/webhooks/e2e", f.secret)
	cfg := writeConfig(t, setup{Listen: listen, DataDir: filepath.Join(t.TempDir(), "data"), ForgeURL: f.URL,
		Image: imgA, PoolMax: 4, Endpoints: []endpoint{{Name: "a", Host: da.Host(), Max: 2}, {Name: "b", Host: db.Host(), Max: 2}}})
	p := startCorral(t, cfg, f, listen)

	jobs := 0
	for range 6 {
		f.QueueJob("e2e", simJob(jobs, 3*time.Second))
		jobs++
	}
	waitFor(t, 60*time.Second, "containers on both engines", func() bool { return ea.count(t) > 0 && eb.count(t) > 0 })
	onA, err := ea.containers(t)
	if err != nil {
		t.Fatal(err)
	}
	// Jobs running on a's runners when it goes may fail; nothing else may.
	mayFail := map[int64]bool{}
	for _, j := range f.Jobs() {
		if _, ok := onA[j.RunnerName]; ok && j.RunnerName != "" {
			mayFail[j.ID] = true
		}
	}
	stopped := time.Now()
	if err := da.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("engine a stopped with containers %v (jobs that may fail: %d) in %s", onA, len(mayFail), time.Since(stopped).Round(time.Millisecond))
	// A job that took a runner on a after the snapshot may fail too.
	for _, j := range f.Jobs() {
		if _, ok := onA[j.RunnerName]; ok && j.RunnerName != "" {
			mayFail[j.ID] = true
		}
	}
	for range 4 {
		f.QueueJob("e2e", simJob(jobs, 300*time.Millisecond))
		jobs++
	}
	waitFor(t, 120*time.Second, "every job completed", func() bool { return f.Stats().JobsCompleted == jobs })
	checkClean(t, f, []*engine{eb}, jobs, mayFail)
	p.stop(t)
	failed := 0
	for _, j := range f.Jobs() {
		if j.Conclusion != "success" {
			failed++
			if _, ok := onA[j.RunnerName]; !ok {
				t.Errorf("job %d failed on runner %q, which was not on the lost engine", j.ID, j.RunnerName)
			}
		}
	}
	t.Logf("%d jobs: %d failed with the lost engine, the rest served; done %s after the loss", jobs, failed, time.Since(stopped).Round(time.Millisecond))
}
