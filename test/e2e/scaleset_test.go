package e2e

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// scaleSetRig is a stand-in GitHub with NO webhook and a corral whose
// organization target is in scale-set mode, with one process pool "ss"
// (labels [corral-ss], at most poolMax runners) whose runners are the
// stand-in's simulated actions runner.
func scaleSetRig(t testing.TB, opt standin.Options, poolMax int) (*e2etest.GitHub, string, string, e2etest.Config) {
	t.Helper()
	g := e2etest.NewGitHub(t, opt)
	listen, dataDir := e2etest.FreePort(t), filepath.Join(t.TempDir(), "data")
	tg := g.Target("e2e", "corral-ss")
	tg.SecretEnv, tg.Mode = "", "scaleset" // no webhook at all
	cfg := e2etest.Config{Listen: listen, DataDir: dataDir,
		Targets: []e2etest.Target{tg},
		Pools: []e2etest.Pool{{ID: "ss", Labels: []string{"corral-ss"}, Image: e2etest.RunnerImage(t, corralBin, ""),
			Flavor: "2cpu4gb10gb", MaxFlavor: "8cpu16gb50gb", MaxInstances: poolMax, IdleTimeout: "3s"}}}
	return g, listen, dataDir, cfg
}

// TestScaleSet is issue 13's must-show for GitHub scale-set mode: with no
// webhook at all, 200 jobs are served through the scale-set listener while
// corral is SIGKILLed mid-run (the crashed corral's session is still alive
// at GitHub: the new corral gets 409s and waits it out), the stand-in
// deletes the scale set mid-run (corral registers it again) and 10% of the
// long polls fail. Every job completes exactly once with success, each on
// its own runner; the pool's max (8) is never exceeded at the forge; no
// runner registration or process is left.
func TestScaleSet(t *testing.T) {
	if testing.Short() {
		t.Skip("scale-set e2e is not short")
	}
	const jobs, poolMax = 200, 8
	seed := uint64(20261205)
	opt := standin.Options{Seed: int64(seed), SessionTTL: 3 * time.Second, ScaleSetLongPoll: time.Second}
	g, listen, dataDir, cfg := scaleSetRig(t, opt, poolMax)
	g.SetFaults(standin.Faults{LongPollFailRate: 0.10})
	env := g.Env()
	serve := func() *e2etest.Proc {
		return e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, cfg), Listen: listen, Env: env})
	}

	queued := make(chan struct{})
	go func() {
		defer close(queued)
		rnd := rand.New(rand.NewPCG(seed, 2))
		for i := 0; i < jobs; i++ {
			g.Queue(fmt.Sprint("job-", i), []string{"corral-ss"}, time.Duration(50+rnd.IntN(200))*time.Millisecond)
			time.Sleep(time.Duration(rnd.IntN(80)) * time.Millisecond)
		}
	}()
	start := time.Now()
	p := serve()
	waitFor(t, 30*time.Second, "30 jobs completed before the kill", func() bool { return g.Count(standin.StatusCompleted) >= 30 })
	p.Kill()
	t.Logf("SIGKILL at %s: %d/%d jobs completed", time.Since(start).Round(time.Millisecond), g.Count(standin.StatusCompleted), jobs)
	p = serve()
	waitFor(t, 60*time.Second, "the restarted corral waited out the stale session", func() bool {
		return strings.Contains(p.Output(), "stale scale-set session expired")
	})
	waitFor(t, 30*time.Second, "20 more jobs completed after the restart", func() bool { return g.Count(standin.StatusCompleted) >= 80 })
	if !g.DeleteScaleSet("orgs/e2e", "ss") {
		t.Fatal("the stand-in has no scale set ss to delete")
	}
	t.Logf("scale set deleted at %s: %d/%d jobs completed", time.Since(start).Round(time.Millisecond), g.Count(standin.StatusCompleted), jobs)
	<-queued
	waitFor(t, 90*time.Second, "every job completed", func() bool { return g.Count(standin.StatusCompleted) == jobs })
	waitFor(t, 60*time.Second, "every registration removed and every runner process gone", func() bool {
		return g.Stats().Registered == 0 && len(runnerProcesses(dataDir)) == 0
	})
	g.CheckJobs(t, jobs, nil)
	out := p.Output()
	p.Stop(t)

	st := g.Stats()
	if st.PeakRunners > poolMax {
		t.Errorf("forge saw %d runners alive at once, pool max is %d", st.PeakRunners, poolMax)
	}
	byRunner := map[string]int64{}
	for _, j := range g.Jobs() {
		if prev, dup := byRunner[j.RunnerName]; dup {
			t.Errorf("jobs %d and %d both ran on runner %q", prev, j.ID, j.RunnerName)
		}
		byRunner[j.RunnerName] = j.ID
	}
	if !strings.Contains(out, "scale set was deleted at GitHub; registered again") || st.Calls["POST runnerscalesets"] < 2 {
		t.Errorf("scale set registered %d times, log says re-registered: %v; want a re-registration after the deletion",
			st.Calls["POST runnerscalesets"], strings.Contains(out, "registered again"))
	}
	if st.Webhooks.Sent != 0 {
		t.Errorf("the stand-in sent %d webhooks; this test has none", st.Webhooks.Sent)
	}
	polls := st.Calls["GET scaleset message"]
	if polls == 0 {
		t.Error("no long poll reached the stand-in")
	}
	t.Logf("%d jobs: done in %s, peak %d runners, %d long polls (~10%% failed by design), %d acquire calls, %d scale-set JIT configs, %d session opens",
		jobs, time.Since(start).Round(time.Millisecond), st.PeakRunners, polls, st.Calls["POST acquirejobs"],
		st.Calls["POST scaleset generatejitconfig"], st.Calls["POST scaleset session"])
}
