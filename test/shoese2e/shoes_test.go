// Package shoese2e runs corral as a real process with pools on shoes
// providers (docs/plugins.md, "shoes providers"): the test plugin
// cmd/corral-shoes-process, built here and served through go-plugin as
// myshoes' plugins are, and plugins that fail. Jobs come from the stand-in
// GitHub; the harness is internal/testutil/e2etest.
package shoese2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/provider/process"
	"github.com/corral-ci/corral/internal/provider/shoes"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

var corralBin, pluginBin string

func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(&corralBin, e2etest.BuildOptions{}, func() int {
		dir, err := os.MkdirTemp("", "corral-shoes-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		_ = os.Chmod(dir, 0o755) // the shim is the plugin binary: runners' uids read it
		if pluginBin, err = e2etest.BuildCommand(dir, "corral-shoes-process", "github.com/corral-ci/corral/cmd/corral-shoes-process"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}))
}

// rig is a stand-in GitHub and a corral config whose pool "lab" (label
// corral) runs the stand-in's simulated runner on machines of the test
// shoes plugin (provider "shoes-lab"), under the data directory.
type rig struct {
	*e2etest.GitHub
	listen, dataDir, machines, image string
	cfg                              e2etest.Config
}

const labProvider = "shoes-lab"

func newRig(t *testing.T, poolMax int) *rig {
	t.Helper()
	r := &rig{GitHub: e2etest.NewGitHub(t, standin.Options{}), listen: e2etest.FreePort(t), dataDir: filepath.Join(t.TempDir(), "data")}
	r.machines = filepath.Join(r.dataDir, "shoes-machines")
	r.image = e2etest.RunnerImage(t, corralBin, "")
	r.Hook(r.listen, "e2e")
	r.cfg = e2etest.Config{Listen: r.listen, DataDir: r.dataDir,
		Targets: []e2etest.Target{r.Target("e2e", "corral-e2e")},
		Pools: []e2etest.Pool{{ID: "lab", Labels: []string{"corral"}, Provider: labProvider, Image: r.image,
			Flavor: "2cpu4gb10gb", MaxFlavor: "8cpu16gb50gb", MaxInstances: poolMax}},
		Providers: []e2etest.Provider{{Name: labProvider, Type: "shoes", Shoes: &e2etest.Shoes{Path: pluginBin, Env: r.pluginEnv("")}}},
	}
	t.Cleanup(func() {
		// Whatever a failed test left: delete through the plugin, then
		// free the machines' mounts and cgroups.
		p := r.provider(t, "")
		for _, id := range r.instances() {
			_ = p.Delete(context.Background(), corral.ProviderInstance{ProviderID: id})
		}
		_ = p.Close()
		_ = process.RemoveLeftovers(r.machines)
	})
	return r
}

// pluginEnv configures the test plugin: as root, isolated runners that see
// corral's binary and the runner image but not corral's data directory.
func (r *rig) pluginEnv(fault string) map[string]string {
	env := map[string]string{"CORRAL_SHOES_DIR": r.machines, "CORRAL_SHOES_NAMESPACES": "auto",
		"CORRAL_SHOES_KEEP": corralBin + ":" + r.image, "CORRAL_SHOES_HIDE": r.dataDir}
	if fault != "" {
		env["CORRAL_SHOES_FAULT"] = fault
	}
	return env
}

// provider is corral's shoes provider on the lab's plugin and records, as
// a test's hands.
func (r *rig) provider(t *testing.T, fault string) *shoes.Provider {
	t.Helper()
	p, err := shoes.New(labProvider, shoes.Settings{Path: pluginBin, Env: r.pluginEnv(fault), StateDir: filepath.Join(r.dataDir, "shoes-"+labProvider)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *rig) start(t *testing.T) *e2etest.Proc {
	t.Helper()
	return e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, r.cfg), Listen: r.listen, Env: r.Env()})
}

// pluginProcs lists the running test plugin processes (not the machines'
// shims, which run the same binary with the argument "shim").
func pluginProcs() []string {
	var out []string
	for _, p := range e2etest.Processes(pluginBin) {
		if !strings.Contains(p, pluginBin+" shim") {
			out = append(out, p)
		}
	}
	return out
}

// instances lists the test plugin's machines.
func (r *rig) instances() []string {
	entries, _ := os.ReadDir(r.machines)
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// records lists corral's records of the lab's machines.
func (r *rig) records() []string {
	entries, _ := os.ReadDir(filepath.Join(r.dataDir, "shoes-"+labProvider))
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			out = append(out, e.Name())
		}
	}
	return out
}

func (r *rig) jobCompleted(name string) bool {
	for _, j := range r.Jobs() {
		if j.Name == name {
			return j.Status == standin.StatusCompleted
		}
	}
	return false
}

// getJSON: e2etest.GetJSON.
func getJSON(t *testing.T, url string, v any) { t.Helper(); e2etest.GetJSON(t, url, v) }

// timeline returns the details of the named job's timeline.
func (r *rig) timeline(t *testing.T, name string) []string {
	var jobs struct {
		Jobs []struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		} `json:"jobs"`
	}
	getJSON(t, "http://"+r.listen+"/api/v1/jobs", &jobs)
	for _, j := range jobs.Jobs {
		if j.Name != name {
			continue
		}
		var job struct {
			Timeline []struct {
				Detail string `json:"detail"`
			} `json:"timeline"`
		}
		getJSON(t, fmt.Sprintf("http://%s/api/v1/jobs/%d", r.listen, j.ID), &job)
		var out []string
		for _, e := range job.Timeline {
			out = append(out, e.Detail)
		}
		return out
	}
	return nil
}

// TestShoes_JobsAndFailingPlugins: jobs run end to end on shoes machines
// while three other pools have shoes plugins that fail their handshake,
// crash in AddInstance or hang in it: those pools back off, their jobs'
// timelines show the plugin's stderr, the good pool serves every job, and
// nothing is left.
func TestShoes_JobsAndFailingPlugins(t *testing.T) {
	r := newRig(t, 3)
	faults := []string{"handshake", "crash", "hang"}
	for _, f := range faults {
		name := "shoes-" + f
		r.cfg.Pools = append(r.cfg.Pools, e2etest.Pool{ID: "bad-" + f, Labels: []string{"corral-" + f}, Provider: name, Image: r.image, MaxInstances: 1})
		r.cfg.Providers = append(r.cfg.Providers, e2etest.Provider{Name: name, Type: "shoes",
			Shoes: &e2etest.Shoes{Path: pluginBin, Env: r.pluginEnv(f), Timeouts: "{create: 3s, start: 5s}"}})
	}
	p := r.start(t)
	for _, f := range faults {
		r.Queue("bad-"+f, []string{"self-hosted", "corral-" + f}, 100*time.Millisecond)
	}
	const good = 6
	for i := range good {
		r.Queue(fmt.Sprint("good-", i), []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, 200*time.Millisecond)
	}
	e2etest.WaitFor(t, 90*time.Second, "every job of the good pool completed", func() bool {
		for i := range good {
			if !r.jobCompleted(fmt.Sprint("good-", i)) {
				return false
			}
		}
		return true
	})
	select {
	case <-p.Done():
		t.Fatalf("corral exited")
	default:
	}
	stderr := map[string]string{
		"handshake": "cannot reach the backend (fault: handshake)",
		"crash":     "AddInstance about to die (fault: crash)",
		"hang":      "AddInstance hangs (fault: hang)",
	}
	for _, f := range faults {
		if r.jobCompleted("bad-" + f) {
			t.Errorf("the job of the %s pool completed", f)
		}
		e2etest.WaitFor(t, 30*time.Second, "the "+f+" plugin's stderr in its job's timeline", func() bool {
			for _, d := range r.timeline(t, "bad-"+f) {
				if strings.Contains(d, "plugin shoes-"+f) && strings.Contains(d, stderr[f]) {
					return true
				}
			}
			return false
		})
	}
	resp, err := e2etest.APIGet("http://" + r.listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var m bytes.Buffer
	_, _ = m.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, f := range faults {
		if !strings.Contains(m.String(), `corral_pool_backoffs_total{kind="provider",pool="bad-`+f+`"}`) {
			t.Errorf("no provider backoff of pool bad-%s in /metrics", f)
		}
	}
	e2etest.WaitFor(t, 60*time.Second, "every registration removed and no machine or record of the lab left", func() bool {
		return r.Stats().Registered == 0 && len(r.instances()) == 0 && len(r.records()) == 0
	})
	p.Stop(t)
	if left := e2etest.Processes(r.machines); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
}

// TestShoes_SIGKILL: corral killed with SIGKILL while shoes machines run
// its jobs; while it is down a machine is added for its controller that
// its store does not know (a create whose answer it never recorded).
// After the restart its records find both: the busy machines finish their
// jobs (each served once) and are deleted, the orphan is deleted, and
// nothing is left.
func TestShoes_SIGKILL(t *testing.T) {
	const orphanSleep = "297.321" // the orphan's sleep, to find its process
	const jobs = 4
	r := newRig(t, jobs)
	p := r.start(t)
	for i := range jobs {
		r.Queue(fmt.Sprint("job-", i), []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, 4*time.Second)
	}
	e2etest.WaitFor(t, 60*time.Second, "jobs running on shoes machines", func() bool {
		return r.Count(standin.StatusInProgress) >= 2
	})
	running := r.instances()
	if len(pluginProcs()) == 0 {
		t.Fatalf("no shoes plugin process while corral runs: the check below shows nothing")
	}
	p.Kill()
	// The plugin process dies with corral (PDEATHSIG); the machines live on.
	e2etest.WaitFor(t, 10*time.Second, "the shoes plugin to die with corral", func() bool { return len(pluginProcs()) == 0 })
	if len(r.instances()) < len(running) {
		t.Errorf("machines gone with corral: %v, were %v", r.instances(), running)
	}

	hands := r.provider(t, "")
	orphan, err := hands.Create(context.Background(), corral.InstanceSpec{InstanceID: "orphan-1", Name: "corral-orphan-1",
		ControllerID: "e2e", PoolID: "lab", Image: "/bin/sleep", Bootstrap: corral.Bootstrap{Command: []string{orphanSleep}},
		Deadline: time.Now().Add(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	_ = hands.Close()
	e2etest.WaitFor(t, 10*time.Second, "the orphan's process", func() bool { return len(e2etest.Processes(orphanSleep)) > 0 })
	t.Logf("killed corral with %d machines running %v; planted orphan %s", len(running), running, orphan.ProviderID)

	p = r.start(t)
	e2etest.WaitFor(t, 90*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	e2etest.WaitFor(t, 60*time.Second, "the orphan deleted, every registration removed, no machine or record left", func() bool {
		return r.Stats().Registered == 0 && len(r.instances()) == 0 && len(r.records()) == 0 && len(e2etest.Processes(r.machines, orphanSleep)) == 0
	})
	if b, err := os.ReadFile(p.Log); err != nil || !strings.Contains(string(b), "orphan-1") {
		t.Errorf("corral's log does not name the orphan it deleted (%v)", err)
	}
	r.CheckJobs(t, jobs, nil)
	p.Stop(t)
}
