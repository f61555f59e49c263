// Package forgejoe2e runs corral as a real process in Forgejo one-job mode
// against the Forgejo stand-in (internal/forge/gitea/forgejostandin), with
// real runner processes (the stand-in's simulated `forgejo-runner one-job`,
// `corral forgejo-sim-runner`) started by the process provider. No webhook
// at all: corral polls the jobs listing. NOT a test against a real
// Forgejo, which cannot be built here.
package forgejoe2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/gitea/forgejostandin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

var corralBin string

func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(&corralBin, e2etest.BuildOptions{}, m.Run))
}

// rig is a stand-in Forgejo and a corral serving its repository o/r in
// mode one-job with two pools: "linux" (label fj-linux) and "gpu" (label
// gpu), each of at most two instances.
type rig struct {
	fj      *forgejostandin.Server
	listen  string
	dataDir string
	cfg     e2etest.Config
	env     []string
}

// runnerImage is a process-provider image for one-job mode: sh and a
// forgejo-runner that is the stand-in's simulated runner.
func runnerImage(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "forgejo-runner")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/sh", filepath.Join(dir, "sh")); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nexec '" + corralBin + "' forgejo-sim-runner \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "forgejo-runner"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newRig(t testing.TB) *rig {
	t.Helper()
	fj, err := forgejostandin.Start(forgejostandin.Options{Scope: "/repos/o/r"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fj.Close() })
	r := &rig{fj: fj, listen: e2etest.FreePort(t), dataDir: filepath.Join(t.TempDir(), "data"),
		env: []string{"FJ_TOKEN=" + fj.Token()}}
	image := runnerImage(t)
	r.cfg = e2etest.Config{Listen: r.listen, DataDir: r.dataDir,
		Targets: []e2etest.Target{{ID: "fj", Kind: "forgejo", Scope: "repo", Path: "o/r", URL: fj.URL,
			Token: "env:FJ_TOKEN", RunnerPrefix: "corral-fj", Mode: "one-job", PollInterval: "500ms"}},
		Pools: []e2etest.Pool{
			{ID: "linux", Labels: []string{"fj-linux"}, Image: image, Flavor: "1cpu1gb1gb", MaxInstances: 2},
			{ID: "gpu", Labels: []string{"gpu"}, Image: image, Flavor: "1cpu1gb1gb", MaxInstances: 2},
		}}
	return r
}

func (r *rig) start(t testing.TB) *e2etest.Proc {
	t.Helper()
	return e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, r.cfg), Listen: r.listen, Env: r.env})
}

// getJSON: e2etest.GetJSON.
func getJSON(t testing.TB, url string, v any) { t.Helper(); e2etest.GetJSON(t, url, v) }

// check asserts what one-job mode promises: every job ran once, on a
// runner of its own that presented the job's own handle; that runner is
// one corral requested for this very job, in the job's pool; no runner
// asked for a job it was not made for; nothing is left (registrations,
// runner processes, live instances).
func (r *rig) check(t *testing.T, pools map[int64]string) {
	t.Helper()
	e2etest.WaitFor(t, 60*time.Second, "no registration, runner process or live instance left", func() bool {
		var live struct {
			Instances []json.RawMessage `json:"instances"`
		}
		getJSON(t, "http://"+r.listen+"/api/v1/instances", &live)
		return len(r.fj.Runners()) == 0 && len(e2etest.Processes(r.dataDir)) == 0 && len(live.Instances) == 0
	})
	if v := r.fj.Violations(); len(v) > 0 {
		t.Errorf("runners asked for jobs they were not made for: %q", v)
	}
	api := "http://" + r.listen + "/api/v1/jobs"
	var all struct {
		Jobs []struct {
			ID         int64  `json:"id"`
			ForgeJobID int64  `json:"forge_job_id"`
			State      string `json:"state"`
			Conclusion string `json:"conclusion"`
		} `json:"jobs"`
	}
	// Forgejo's listing drops a finished job and corral knows no endpoint
	// that tells its conclusion (docs/forgejo.md): the ledger completes it
	// as the runner exits and the sweep finds it gone.
	e2etest.WaitFor(t, 30*time.Second, "every ledger job completed", func() bool {
		getJSON(t, api, &all)
		for _, j := range all.Jobs {
			if j.State != "completed" {
				return false
			}
		}
		return len(all.Jobs) == len(r.fj.Jobs())
	})
	ledger := map[int64]int64{}
	for _, j := range all.Jobs {
		if ledger[j.ForgeJobID] != 0 {
			t.Errorf("forge job %d is in the ledger twice", j.ForgeJobID)
		}
		ledger[j.ForgeJobID] = j.ID
	}
	runners := map[string]int64{}
	for _, j := range r.fj.Jobs() {
		if j.Status != "success" || j.RanBy == "" || j.RunnerHandle != j.Handle {
			t.Errorf("job %d: %s, ran by %q with handle %q (its own: %q)", j.ID, j.Status, j.RanBy, j.RunnerHandle, j.Handle)
			continue
		}
		if prev, dup := runners[j.RanBy]; dup {
			t.Errorf("runner %s ran jobs %d and %d", j.RanBy, prev, j.ID)
		}
		runners[j.RanBy] = j.ID
		var tl struct {
			Timeline []struct {
				Kind   string `json:"kind"`
				Detail string `json:"detail"`
			} `json:"timeline"`
		}
		if ledger[j.ID] == 0 {
			t.Errorf("job %d is not in corral's ledger", j.ID)
			continue
		}
		getJSON(t, fmt.Sprintf("%s/%d", api, ledger[j.ID]), &tl)
		want := j.RanBy + " in pool " + pools[j.ID]
		found := false
		for _, e := range tl.Timeline {
			found = found || (e.Kind == "instance_requested" && e.Detail == want)
		}
		if !found {
			t.Errorf("job %d ran on %s, but corral requested no such instance for it in pool %s: %+v", j.ID, j.RanBy, pools[j.ID], tl.Timeline)
		}
	}
	if n := len(r.fj.Removed()); n < len(runners) {
		t.Errorf("%d registrations removed, want at least %d", n, len(runners))
	}
}

// queue queues n jobs alternating between the pools.
func (r *rig) queue(n int, pools map[int64]string) {
	for i := range n {
		if i%2 == 0 {
			pools[r.fj.Queue(fmt.Sprint("build-", i), []string{"fj-linux"}, 300*time.Millisecond)] = "linux"
		} else {
			pools[r.fj.Queue(fmt.Sprint("cuda-", i), []string{"gpu", "cuda"}, 300*time.Millisecond)] = "gpu"
		}
	}
}

func (r *rig) waitDone(t testing.TB, n int) {
	t.Helper()
	e2etest.WaitFor(t, 90*time.Second, fmt.Sprintf("%d jobs done at the stand-in", n), func() bool {
		done := 0
		for _, j := range r.fj.Jobs() {
			if j.Status == "success" {
				done++
			}
		}
		return done == n
	})
}

// Several jobs of two pools, each run by a runner made for it and started
// with its handle.
func TestForgejoOneJob_EachRunnerRunsItsJob(t *testing.T) {
	r := newRig(t)
	r.start(t)
	pools := map[int64]string{}
	r.queue(8, pools)
	r.waitDone(t, 8)
	r.check(t, pools)
	calls := r.fj.Calls()
	if calls["POST runners"] != 8 {
		t.Errorf("runner creations %d, want one per job (8): %v", calls["POST runners"], calls)
	}
	t.Logf("stand-in API calls for 8 jobs: %v", calls)
}

// The Forgejo API answers 500 for 4 s, with jobs queued before and during
// the outage: nothing is lost, and each runner still runs its own job.
func TestForgejoOneJob_APIFailures(t *testing.T) {
	r := newRig(t)
	p := r.start(t)
	pools := map[int64]string{}
	r.queue(2, pools)
	time.Sleep(300 * time.Millisecond)
	r.fj.SetFailing(true)
	r.queue(4, pools)
	time.Sleep(4 * time.Second)
	r.fj.SetFailing(false)
	r.waitDone(t, 6)
	r.check(t, pools)
	if c := r.fj.Calls(); c["GET jobs"] < 3 {
		t.Errorf("only %d polls: the outage was not exercised", c["GET jobs"])
	}
	if !strings.Contains(readFile(t, p.Log), "poll failed; backing off") {
		t.Errorf("corral's log does not show the failed polls backing off")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
