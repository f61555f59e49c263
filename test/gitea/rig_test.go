package gitea

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/provider/process"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// rig is one corral serving one repository target of the shared Gitea,
// with two process pools: "small" (label corral-a) and "big" (label
// corral-b, up to 4cpu8gb).
type rig struct {
	g                      *giteaServer
	id, repo, secret       string
	listen, dataDir, image string
	cfg                    e2etest.Config
}

var rigs atomic.Int32

// rigOptions vary a rig.
type rigOptions struct {
	// Poll: the target is in mode poll at PollInterval and Gitea has no
	// webhook for it at all.
	Poll         bool
	PollInterval string
	// Both: mode webhook+poll; HookTo, when set, is where Gitea's webhook
	// posts instead of corral (a dead address loses every delivery).
	Both   bool
	HookTo string
	// Reconcile is corral's reconcile interval (default 2s).
	Reconcile string
	// APIVia, when set, is the target's URL (a proxy in front of Gitea);
	// runners still reach Gitea directly.
	APIVia string
}

func newRig(t testing.TB) *rig { return newRigWith(t, rigOptions{}) }

func newRigWith(t testing.TB, o rigOptions) *rig {
	t.Helper()
	g := needGitea(t)
	n := rigs.Add(1)
	r := &rig{g: g, id: fmt.Sprintf("gt%d", n), secret: fmt.Sprintf("hook-secret-%d-%d", n, time.Now().UnixNano())}
	var err error
	if r.repo, err = g.createRepo(fmt.Sprintf("e2e-%d", n)); err != nil {
		t.Fatal(err)
	}
	if r.listen, err = freePort(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r.dataDir, r.image = filepath.Join(dir, "data"), filepath.Join(dir, "image")
	// After corral is gone (cleanups run last first): end, by pid, any
	// shim or runner of this rig that a failed test left behind.
	t.Cleanup(func() {
		for _, l := range r.leftovers() {
			pid, _, _ := strings.Cut(l, ":")
			if n, err := strconv.Atoi(pid); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
		// Then the tmpfs mounts and cgroups of instances left behind.
		_ = process.RemoveLeftovers(filepath.Join(r.dataDir, "instances"))
	})
	// The runner image for the process provider: gitea-runner and sh
	// (BootstrapScript runs as image/sh and finds gitea-runner beside it).
	if err := os.MkdirAll(r.image, 0o755); err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	for name, to := range map[string]string{"sh": sh, "gitea-runner": runnerBin} {
		if err := os.Symlink(to, filepath.Join(r.image, name)); err != nil {
			t.Fatal(err)
		}
	}
	if !o.Poll {
		to := "http://" + r.listen
		if o.HookTo != "" {
			to = o.HookTo
		}
		if err := g.addHook(r.repo, to+"/webhooks/"+r.id, r.secret); err != nil {
			t.Fatal(err)
		}
	}
	pool := func(id, label, flavor, maxFlavor string) e2etest.Pool {
		return e2etest.Pool{ID: id, Labels: []string{label}, Image: r.image, Flavor: flavor, MaxFlavor: maxFlavor, MaxInstances: 6,
			BootTimeout: "60s", MaxJobRuntime: "5m", IdleTimeout: "10s"}
	}
	tgt := e2etest.Target{ID: r.id, Kind: "gitea", Scope: "repo", Path: r.repo, URL: g.URL,
		SecretEnv: "E2E_HOOK_SECRET", Token: "env:E2E_GITEA_TOKEN", RunnerPrefix: "corral-" + r.id}
	switch {
	case o.Poll:
		tgt.SecretEnv, tgt.Mode, tgt.PollInterval = "", "poll", o.PollInterval
	case o.Both:
		tgt.Mode, tgt.PollInterval = "webhook+poll", o.PollInterval
	}
	if o.APIVia != "" {
		tgt.URL, tgt.RunnerURL = o.APIVia, g.URL
	}
	if o.Reconcile == "" {
		o.Reconcile = "2s"
	}
	r.cfg = e2etest.Config{Listen: r.listen, DataDir: r.dataDir, Reconcile: o.Reconcile,
		Targets: []e2etest.Target{tgt},
		Pools:   []e2etest.Pool{pool("small", "corral-a", "", ""), pool("big", "corral-b", "2cpu4gb10gb", "4cpu8gb50gb")}}
	return r
}

// workflow is a workflow file that runs on a push of itself only; each job
// is runs-on labels.
func workflow(name string, jobs [][]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\non:\n  push:\n    paths: ['.gitea/workflows/%s.yml']\njobs:\n", name, name)
	for i, ls := range jobs {
		q := make([]string, len(ls))
		for k, l := range ls {
			q[k] = fmt.Sprintf("%q", l)
		}
		fmt.Fprintf(&b, "  j%02d:\n    runs-on: [%s]\n    steps:\n      - run: echo job %d on $CORRAL_INSTANCE_NAME\n", i, strings.Join(q, ", "), i)
	}
	return b.String()
}

func (r *rig) push(t testing.TB, name string, jobs [][]string) {
	t.Helper()
	if err := r.g.pushWorkflow(r.repo, name+".yml", workflow(name, jobs)); err != nil {
		t.Fatal(err)
	}
}

// start starts corral serve with the rig's config.
func (r *rig) start(t testing.TB) *e2etest.Proc {
	t.Helper()
	return e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, r.cfg), Listen: r.listen,
		Env: []string{"E2E_HOOK_SECRET=" + r.secret, "E2E_GITEA_TOKEN=" + r.g.token}})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	e2etest.WaitFor(t, within, what, cond)
}

// giteaJobs lists the repository's jobs at Gitea, failing the test on error.
func (r *rig) giteaJobs(t testing.TB) []job {
	t.Helper()
	js, err := r.g.jobs(r.repo)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// corralJob is a job as corral's API shows it.
type corralJob struct {
	ID         int64    `json:"id"`
	ForgeJobID int64    `json:"forge_job_id"`
	State      string   `json:"state"`
	Reason     string   `json:"reason"`
	Labels     []string `json:"labels"`
	Runner     string   `json:"runner"`
	Timeline   []struct {
		At     time.Time `json:"at"`
		Kind   string    `json:"kind"`
		Detail string    `json:"detail"`
	} `json:"timeline"`
}

func (r *rig) api(t testing.TB, path string, out any) {
	t.Helper()
	resp, err := e2etest.APIGet("http://" + r.listen + "/api/v1" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) corralJobs(t testing.TB) []corralJob {
	var out struct {
		Jobs []corralJob `json:"jobs"`
	}
	r.api(t, "/jobs", &out)
	return out.Jobs
}

// leftovers lists live processes whose command line names this rig's data
// or image directory: shims, scripts and runners.
func (r *rig) leftovers() []string { return e2etest.Processes(r.dataDir, r.image) }

// checkClean waits until Gitea lists no runner of the repository and no
// process of the rig is alive.
func (r *rig) checkClean(t testing.TB) {
	t.Helper()
	var names, procs []string
	waitFor(t, 60*time.Second, "no runner registration and no runner process left", func() bool {
		var err error
		names, err = r.g.runners(r.repo)
		procs = r.leftovers()
		return err == nil && len(names) == 0 && len(procs) == 0
	})
}
