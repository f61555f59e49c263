package dockere2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// TestDocker_EndpointLost runs a pool over two engines (two private
// daemons, at most 2 containers each) and stops one of them while its
// runners run jobs. A job that was running on the lost engine fails at the
// forge (its runner died with the engine, as on a real forge); every other
// job, the ones queued before and after the loss included, is served on
// the other engine with success, nothing is left on that engine, and no
// registration is left but those of the lost engine's runners (corral
// cannot confirm their instances gone while the engine is away; see the
// log line of the test).
func TestDocker_EndpointLost(t *testing.T) {
	da, db := dockertest.NewDaemon(t), dockertest.NewDaemon(t)
	imgA, imgB := runnerImage(t, da.Host()), runnerImage(t, db.Host())
	if imgA != imgB {
		t.Fatalf("images differ: %s, %s", imgA, imgB)
	}
	ea, eb := newEngine(t, "a", da.Host()), newEngine(t, "b", db.Host())
	f := newRig(t, standin.Options{Seed: 3, HeartbeatTimeout: 3 * time.Second},
		setup{Image: imgA, PoolMax: 4, Endpoints: []e2etest.Endpoint{{Name: "a", Host: da.Host(), Max: 2}, {Name: "b", Host: db.Host(), Max: 2}}})
	p := f.start(t)
	listen := f.listen

	jobs := 0
	for range 6 {
		f.queue(jobs, 4*time.Second)
		jobs++
	}
	running := func(e *engine) bool {
		cs, _ := e.containers(t)
		for _, st := range cs {
			if st == "running" {
				return true
			}
		}
		return false
	}
	var onA map[string]string
	waitFor(t, 60*time.Second, "runners busy on both engines", func() bool {
		if !running(ea) || !running(eb) || f.Count(standin.StatusInProgress) < 3 {
			return false
		}
		var err error
		onA, err = ea.containers(t)
		return err == nil
	})
	stopped := time.Now()
	if err := da.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("engine a stopped in %s; it had %v", time.Since(stopped).Round(time.Millisecond), onA)
	for range 4 {
		f.queue(jobs, 300*time.Millisecond)
		jobs++
	}
	waitFor(t, 120*time.Second, "every job completed", func() bool { return f.Count(standin.StatusCompleted) == jobs })

	// Registrations of the lost engine's runners may stay: corral holds
	// their instances (draining) as long as it cannot confirm them deleted,
	// and it has no other engine of a's to ask. Every other registration
	// must go, and nothing may be left on b.
	// The lost engine's instances are those it had when it went (it had
	// room for no more, and no create goes to it afterwards).
	lost := func() map[string]string { return onA }
	// Jobs running on a's runners when it went may fail; nothing else may.
	// Asked once b is clean, when corral holds a's instances alone.
	var final map[string]string
	mayFail := func(j standin.JobInfo) bool {
		if final == nil {
			final = lost()
		}
		_, ok := final[j.RunnerName]
		return ok
	}
	checkClean(t, f, []*engine{eb}, jobs, mayFail, lost)
	// Every instance of b's leaves corral's store (a destroy records the
	// deletion just after the container is gone); only a's may stay.
	var held map[string]string
	waitFor(t, 30*time.Second, "corral holding no instance but the lost engine's", func() bool {
		held = liveInstances(t, listen)
		for name := range held {
			if _, ok := onA[name]; !ok {
				return false
			}
		}
		return true
	})

	served := time.Since(stopped)
	failed := 0
	for _, j := range f.Jobs() {
		if j.Conclusion != "success" {
			failed++
		}
	}
	if failed > 2 {
		t.Errorf("%d jobs failed; the lost engine ran at most 2", failed)
	}
	var leftRegs []string
	for _, r := range f.Runners() {
		if !r.Registered {
			continue
		}
		leftRegs = append(leftRegs, fmt.Sprintf("%s (online %v, busy %v)", r.Name, r.Online, r.Busy))
	}
	p.Stop(t)
	t.Logf("%d jobs: %d failed with the lost engine, the rest served on b within %s of the loss; corral still holds %d instances of a (draining); registrations of a's runners left: %v",
		jobs, failed, served.Round(time.Millisecond), len(held), leftRegs)
}
