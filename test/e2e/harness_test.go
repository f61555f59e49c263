// Package e2e runs corral as real processes against the stand-in GitHub
// (the real GitHub adapter), with real runner processes, and checks
// DESIGN.md's invariants from the outside: no lost job, no leak, limits at
// every instant. The harness is internal/testutil/e2etest.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

var corralBin string

func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(&corralBin, e2etest.BuildOptions{}, func() int { return pgtest.Main(m) }))
}

// rig is one stand-in GitHub and the corral config of a test: an
// organization target "e2e" and a process pool "linux" labelled corral
// whose runners are the stand-in's simulated actions runner.
type rig struct {
	*e2etest.GitHub
	listen, dataDir string
	cfg             e2etest.Config
}

// setup is what a test varies.
type setup struct {
	Store            string
	PoolMax, MinIdle int
	Reconcile        string
}

func newRig(t testing.TB, opt standin.Options, s setup) *rig {
	t.Helper()
	r := &rig{GitHub: e2etest.NewGitHub(t, opt), listen: e2etest.FreePort(t), dataDir: filepath.Join(t.TempDir(), "data")}
	r.Hook(r.listen, "e2e")
	r.cfg = e2etest.Config{Listen: r.listen, DataDir: r.dataDir, Store: s.Store, Reconcile: s.Reconcile,
		Targets: []e2etest.Target{r.Target("e2e", "corral-e2e")},
		Pools: []e2etest.Pool{{ID: "linux", Labels: []string{"corral"}, Image: e2etest.RunnerImage(t, corralBin, ""),
			Flavor: "2cpu4gb10gb", MaxFlavor: "8cpu16gb50gb", MaxInstances: s.PoolMax, MinIdle: s.MinIdle}}}
	return r
}

// start starts a corral serve with the rig's config (listening on listen
// when given, for a second replica) and extra arguments.
func (r *rig) start(t testing.TB, args ...string) *e2etest.Proc {
	t.Helper()
	return r.startOn(t, r.listen, args...)
}

func (r *rig) startOn(t testing.TB, listen string, args ...string) *e2etest.Proc {
	t.Helper()
	c := r.cfg
	c.Listen = listen
	return e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, c), Listen: listen, Env: r.Env(), Args: args})
}

// queue queues job i with the labels and run time.
func (r *rig) queue(i int, labels []string, d time.Duration) int64 {
	return r.Queue(fmt.Sprint("job-", i), labels, d)
}

// checkClean asserts the end state every e2e test wants: every job
// completed exactly once with success, no runner registration left at the
// forge, no runner process left on the host.
func (r *rig) checkClean(t *testing.T, jobs int) {
	t.Helper()
	waitFor(t, 60*time.Second, "every registration removed and every runner process gone", func() bool {
		return r.Stats().Registered == 0 && len(runnerProcesses(r.dataDir)) == 0
	})
	r.CheckJobs(t, jobs, nil)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	e2etest.WaitFor(t, within, what, cond)
}

// runnerProcesses lists live processes whose command line mentions dir:
// every runner and shim of this test's data directory.
func runnerProcesses(dir string) []string { return e2etest.Processes(dir) }

func simJob(i int) []string { return []string{"corral", fmt.Sprint("run-", i)} }
