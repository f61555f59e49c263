// Package plugine2e runs corral as a real process with pools on plugin
// providers (docs/plugins.md): the example plugin cmd/corral-plugin-process,
// built here, and plugins that fail. Jobs come from the stand-in GitHub;
// the harness is internal/testutil/e2etest.
package plugine2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
	pp "github.com/corral-ci/corral/pkg/providerplugin"
)

var corralBin, pluginBin string

func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(&corralBin, e2etest.BuildOptions{}, func() int {
		dir, err := os.MkdirTemp("", "corral-plugin-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if pluginBin, err = e2etest.BuildCommand(dir, "corral-plugin-process", "github.com/corral-ci/corral/cmd/corral-plugin-process"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}))
}

// rig is a stand-in GitHub and a corral config whose pool "lab" (label
// corral) runs the stand-in's simulated runner through the example plugin,
// its instances under the data directory.
type rig struct {
	*e2etest.GitHub
	listen, dataDir, pluginDir, pluginCfg string
	image                                 string
	cfg                                   e2etest.Config
}

func newRig(t *testing.T, poolMax int) *rig {
	t.Helper()
	r := &rig{GitHub: e2etest.NewGitHub(t, standin.Options{}), listen: e2etest.FreePort(t), dataDir: filepath.Join(t.TempDir(), "data")}
	r.pluginDir = filepath.Join(r.dataDir, "plugin-instances")
	r.pluginCfg = filepath.Join(t.TempDir(), "lab.json")
	// As root: isolated runners that see corral's binary (the simulated
	// runner) but not its data directory.
	b, _ := json.Marshal(map[string]any{"dir": r.pluginDir, "namespaces": "auto", "hide": []string{r.dataDir}, "keep": []string{corralBin}})
	if err := os.WriteFile(r.pluginCfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r.image = e2etest.RunnerImage(t, corralBin, "")
	r.Hook(r.listen, "e2e")
	r.cfg = e2etest.Config{Listen: r.listen, DataDir: r.dataDir,
		Targets: []e2etest.Target{r.Target("e2e", "corral-e2e")},
		Pools: []e2etest.Pool{{ID: "lab", Labels: []string{"corral"}, Provider: "lab", Image: r.image,
			Flavor: "2cpu4gb10gb", MaxFlavor: "8cpu16gb50gb", MaxInstances: poolMax}},
		Providers: []e2etest.Provider{{Name: "lab", Type: "plugin", Plugin: &e2etest.Plugin{Path: pluginBin, ConfigFile: r.pluginCfg}}},
	}
	t.Cleanup(func() {
		// Whatever a failed test left: delete through the plugin itself.
		entries, _ := os.ReadDir(r.pluginDir)
		for _, e := range entries {
			if e.IsDir() {
				_, _ = r.plugin(pp.CmdDelete, pp.Request{Instance: &pp.InstanceRef{ProviderID: e.Name(), InstanceID: e.Name()}})
			}
		}
	})
	return r
}

func (r *rig) start(t *testing.T) *e2etest.Proc {
	t.Helper()
	return e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, r.cfg), Listen: r.listen, Env: r.Env()})
}

// plugin runs the example plugin by hand, as corral would.
func (r *rig) plugin(command string, req pp.Request) ([]byte, error) {
	req.Protocol, req.Command = pp.ProtocolVersion, command
	in, _ := json.Marshal(req)
	cmd := exec.Command(pluginBin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), pp.EnvCommand + "=" + command, pp.EnvConfigFile + "=" + r.pluginCfg}
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("plugin %s: %v: %s %s", command, err, out, stderr.String())
	}
	return out, nil
}

// instances lists the example plugin's instance directories.
func (r *rig) instances() []string {
	entries, _ := os.ReadDir(r.pluginDir)
	var out []string
	for _, e := range entries {
		if e.IsDir() {
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

// TestPlugin_FailingPoolBacksOff: a pool whose plugin crashes on every
// call backs off, its job's timeline and corral's log show the plugin's
// stderr, and meanwhile the pool on the example plugin serves its jobs;
// corral stays up and leaves nothing behind.
func TestPlugin_FailingPoolBacksOff(t *testing.T) {
	r := newRig(t, 3)
	broken := filepath.Join(t.TempDir(), "broken-plugin")
	calls := filepath.Join(t.TempDir(), "calls")
	script := "#!/bin/sh\necho \"$CORRAL_PLUGIN_COMMAND\" >> " + calls + "\necho 'broken-plugin: the lab-7 backend refused us' >&2\nexit 1\n"
	if err := os.WriteFile(broken, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r.cfg.Pools = append(r.cfg.Pools, e2etest.Pool{ID: "bad", Labels: []string{"corral-bad"}, Provider: "broken", Image: r.image, MaxInstances: 2})
	r.cfg.Providers = append(r.cfg.Providers, e2etest.Provider{Name: "broken", Type: "plugin", Plugin: &e2etest.Plugin{Path: broken}})
	p := r.start(t)

	r.Queue("bad-0", []string{"self-hosted", "corral-bad"}, 100*time.Millisecond)
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
	if r.jobCompleted("bad-0") {
		t.Fatalf("the job of the broken pool completed")
	}
	select {
	case <-p.Done():
		t.Fatalf("corral exited")
	default:
	}

	// The error, with the plugin's stderr, in the job's timeline.
	var jobs struct {
		Jobs []struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		} `json:"jobs"`
	}
	getJSON(t, "http://"+r.listen+"/api/v1/jobs", &jobs)
	var badID int64
	for _, j := range jobs.Jobs {
		if j.Name == "bad-0" {
			badID = j.ID
		}
	}
	if badID == 0 {
		t.Fatalf("job bad-0 not in the API: %+v", jobs)
	}
	e2etest.WaitFor(t, 30*time.Second, "the plugin's stderr in the job's timeline", func() bool {
		var job struct {
			Timeline []struct {
				Detail string `json:"detail"`
			} `json:"timeline"`
		}
		getJSON(t, fmt.Sprintf("http://%s/api/v1/jobs/%d", r.listen, badID), &job)
		for _, e := range job.Timeline {
			if strings.Contains(e.Detail, "plugin broken") && strings.Contains(e.Detail, "the lab-7 backend refused us") {
				return true
			}
		}
		return false
	})
	// The pool backed off: the metric counts it.
	resp, err := e2etest.APIGet("http://" + r.listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var m bytes.Buffer
	_, _ = m.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(m.String(), `corral_pool_backoffs_total{kind="provider",pool="bad"}`) {
		t.Errorf("no provider backoff of pool bad in /metrics")
	}
	if b, err := os.ReadFile(p.Log); err != nil || !strings.Contains(string(b), "the lab-7 backend refused us") {
		t.Errorf("corral's log lacks the plugin's stderr (%v)", err)
	}
	b, _ := os.ReadFile(calls)
	t.Logf("broken plugin invoked %d times while %d good jobs ran", strings.Count(string(b), "\n"), good)

	e2etest.WaitFor(t, 60*time.Second, "every registration removed and no instance left", func() bool {
		return r.Stats().Registered == 0 && len(r.instances()) == 0 && len(e2etest.Processes(r.dataDir)) == 0
	})
	p.Stop(t)
}

// TestPlugin_SIGKILL: corral killed with SIGKILL while plugin instances run
// its jobs; while it is down a create whose answer it never read leaves an
// instance it does not know. After the restart the plugin's list finds
// both: the busy ones finish their jobs (each served once), the orphan is
// deleted, and nothing is left.
func TestPlugin_SIGKILL(t *testing.T) {
	const orphanSleep = "297.123" // the orphan's sleep, to find its process
	const jobs = 4
	r := newRig(t, jobs)
	p := r.start(t)
	for i := range jobs {
		r.Queue(fmt.Sprint("job-", i), []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, 4*time.Second)
	}
	e2etest.WaitFor(t, 60*time.Second, "jobs running on plugin instances", func() bool {
		return r.Count(standin.StatusInProgress) >= 2
	})
	running := r.instances()
	if os.Geteuid() == 0 {
		// As root the runners run isolated, though the plugin process that
		// started each is gone.
		checked := 0
		for _, id := range running {
			var st struct {
				Pid        int  `json:"pid"`
				Namespaced bool `json:"namespaced"`
			}
			b, err := os.ReadFile(filepath.Join(r.pluginDir, id, "instance.json"))
			if err != nil || json.Unmarshal(b, &st) != nil || st.Pid == 0 {
				continue // a create under way
			}
			checked++
			if !st.Namespaced {
				t.Errorf("instance %s is not in new namespaces: %s", id, b)
			}
		}
		if checked == 0 {
			t.Errorf("no started instance among %v", running)
		}
	}
	p.Kill()

	// The orphan: made by the plugin for this controller, unknown to corral.
	out, err := r.plugin(pp.CmdCreate, pp.Request{ControllerID: "e2e", Spec: &pp.Spec{
		InstanceID: "orphan-1", Name: "corral-orphan-1", ControllerID: "e2e", PoolID: "lab",
		Image: "/bin/sleep", Bootstrap: pp.Bootstrap{Command: []string{orphanSleep}}, Deadline: time.Now().Add(5 * time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"state":"running"`) {
		t.Fatalf("orphan create answered %s", out)
	}
	if len(e2etest.Processes(orphanSleep)) == 0 {
		t.Fatalf("the orphan's process is not running")
	}
	t.Logf("killed corral with %d instances running %v; planted orphan-1", len(running), running)

	p = r.start(t)
	e2etest.WaitFor(t, 90*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	e2etest.WaitFor(t, 60*time.Second, "the orphan deleted, every registration removed, no instance left", func() bool {
		return r.Stats().Registered == 0 && len(r.instances()) == 0 && len(e2etest.Processes(r.dataDir, orphanSleep)) == 0
	})
	if b, err := os.ReadFile(p.Log); err != nil || !strings.Contains(string(b), "orphan-1") {
		t.Errorf("corral's log does not name the orphan it deleted (%v)", err)
	}
	r.CheckJobs(t, jobs, nil)
	p.Stop(t)
}
