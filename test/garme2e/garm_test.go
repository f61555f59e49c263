// Package garme2e runs corral as a real process with pools on garm
// providers (docs/plugins.md, "garm's external providers"): the
// garm-protocol test provider internal/provider/garm/garmtestprovider,
// built here, whose instances fetch their runner credential from corral's
// metadata endpoint with their own token, and garm providers that fail.
// Jobs come from the stand-in GitHub; the harness is
// internal/testutil/e2etest.
package garme2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/provider/garm"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

var corralBin, providerBin string

func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(&corralBin, e2etest.BuildOptions{}, func() int {
		dir, err := os.MkdirTemp("", "corral-garm-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if providerBin, err = e2etest.BuildCommand(dir, "garmtestprovider", "github.com/corral-ci/corral/internal/provider/garm/garmtestprovider"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}))
}

// rig is a stand-in GitHub and a corral config whose pool "lab" (label
// corral) runs the stand-in's simulated runner through the garm test
// provider.
type rig struct {
	*e2etest.GitHub
	listen, dataDir, instDir, provCfg string
	image                             string
	cfg                               e2etest.Config
}

func newRig(t *testing.T, poolMax int) *rig {
	t.Helper()
	r := &rig{GitHub: e2etest.NewGitHub(t, standin.Options{}), listen: e2etest.FreePort(t), dataDir: filepath.Join(t.TempDir(), "data")}
	r.instDir = filepath.Join(r.dataDir, "garm-instances")
	r.provCfg = filepath.Join(t.TempDir(), "garmtest.json")
	b, _ := json.Marshal(map[string]any{"dir": r.instDir, "namespaces": "off"})
	if err := os.WriteFile(r.provCfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r.image = e2etest.RunnerImage(t, corralBin, "")
	r.Hook(r.listen, "e2e")
	r.cfg = e2etest.Config{Listen: r.listen, DataDir: r.dataDir, InstanceURL: "http://" + r.listen,
		Targets: []e2etest.Target{r.Target("e2e", "corral-e2e")},
		Pools: []e2etest.Pool{{ID: "lab", Labels: []string{"corral"}, Provider: "lab", Image: r.image,
			Flavor: "2cpu4gb10gb", MaxFlavor: "8cpu16gb50gb", MaxInstances: poolMax}},
		Providers: []e2etest.Provider{{Name: "lab", Type: "garm", Garm: &e2etest.Garm{Executable: providerBin, ConfigFile: r.provCfg}}},
	}
	t.Cleanup(func() {
		// Whatever a failed test left: delete through the provider itself.
		for _, id := range r.instances() {
			_, _ = r.provider("DeleteInstance", map[string]string{"GARM_INSTANCE_ID": id, "GARM_POOL_ID": "lab"}, nil)
		}
	})
	return r
}

func (r *rig) start(t *testing.T) *e2etest.Proc {
	t.Helper()
	return e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, r.cfg), Listen: r.listen, Env: r.Env()})
}

// provider runs the garm test provider by hand, as garm would.
func (r *rig) provider(command string, env map[string]string, stdin []byte) ([]byte, error) {
	cmd := exec.Command(providerBin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GARM_COMMAND=" + command, "GARM_PROVIDER_CONFIG_FILE=" + r.provCfg,
		"GARM_CONTROLLER_ID=e2e", "GARM_INTERFACE_VERSION=v0.1.0"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("garm provider %s: %v: %s %s", command, err, out, stderr.String())
	}
	return out, nil
}

// instances lists the test provider's instance directories.
func (r *rig) instances() []string {
	entries, _ := os.ReadDir(r.instDir)
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

// TestGarm_GitHubJobs: jobs of the stand-in GitHub run on instances of a
// garm provider, each instance fetching its JIT config's files from
// corral's metadata endpoint with its own token (once: the token is then
// refused); every job runs once and nothing is left.
func TestGarm_GitHubJobs(t *testing.T) {
	const jobs = 4
	r := newRig(t, 2)
	p := r.start(t)
	for i := range jobs {
		r.Queue(fmt.Sprint("job-", i), []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, 300*time.Millisecond)
	}
	e2etest.WaitFor(t, 90*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	e2etest.WaitFor(t, 60*time.Second, "every registration removed and no instance left", func() bool {
		return r.Stats().Registered == 0 && len(r.instances()) == 0
	})
	r.CheckJobs(t, jobs, nil)
	b, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	for _, piece := range []string{"piece=credentials/runner", "piece=credentials/credentials", "piece=corral/bootstrap"} {
		if strings.Count(log, piece) < jobs {
			t.Errorf("corral's log shows %q %d times, want at least %d (one per instance)", piece, strings.Count(log, piece), jobs)
		}
	}
	if !strings.Contains(log, "msg=\"instance callback\"") {
		t.Errorf("no status callback in corral's log")
	}
	p.Stop(t)
}

// TestGarm_WrongTokenRefused: corral's metadata endpoint, as a real
// process, refuses a made-up instance token and an API token.
func TestGarm_WrongTokenRefused(t *testing.T) {
	r := newRig(t, 1)
	p := r.start(t)
	admin := e2etest.AdminToken(r.listen)
	for _, tok := range []string{garm.TokenPrefix + strings.Repeat("ab", 32), admin} {
		req, _ := http.NewRequest("GET", "http://"+r.listen+"/api/v1/metadata/credentials/runner", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %.20s...: %s, want 401", tok, resp.Status)
		}
	}
	p.Stop(t)
}

// TestGarm_FailingPoolBacksOff: a pool whose garm provider prints garbage
// backs off, its job's timeline shows the provider's stderr, and
// meanwhile the pool on the good provider serves its jobs.
func TestGarm_FailingPoolBacksOff(t *testing.T) {
	r := newRig(t, 3)
	r.cfg.Pools = append(r.cfg.Pools, e2etest.Pool{ID: "bad", Labels: []string{"corral-bad"}, Provider: "broken", Image: r.image, MaxInstances: 2})
	r.cfg.Providers = append(r.cfg.Providers, e2etest.Provider{Name: "broken", Type: "garm",
		Garm: &e2etest.Garm{Executable: providerBin, ConfigFile: r.provCfg, Env: "{GARMTEST_FAULT: garbage}"}})
	p := r.start(t)

	r.Queue("bad-0", []string{"self-hosted", "corral-bad"}, 100*time.Millisecond)
	const good = 4
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
	e2etest.WaitFor(t, 30*time.Second, "the provider's stderr in the job's timeline", func() bool {
		var job struct {
			Timeline []struct {
				Detail string `json:"detail"`
			} `json:"timeline"`
		}
		getJSON(t, fmt.Sprintf("http://%s/api/v1/jobs/%d", r.listen, badID), &job)
		for _, e := range job.Timeline {
			if strings.Contains(e.Detail, "garm provider broken") && strings.Contains(e.Detail, "printing garbage on purpose") {
				return true
			}
		}
		return false
	})
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
	e2etest.WaitFor(t, 60*time.Second, "no instance of the good pool left", func() bool {
		return len(r.instances()) == 0
	})
	p.Stop(t)
}

// TestGarm_SIGKILL: corral killed with SIGKILL while garm instances run
// its jobs; while it is down an instance is made in its pool that it does
// not know. After the restart ListInstances finds both: the busy ones
// finish their jobs (each once), the orphan is deleted, nothing is left.
func TestGarm_SIGKILL(t *testing.T) {
	const jobs = 3
	r := newRig(t, jobs)
	p := r.start(t)
	for i := range jobs {
		r.Queue(fmt.Sprint("job-", i), []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, 4*time.Second)
	}
	e2etest.WaitFor(t, 60*time.Second, "jobs running on garm instances", func() bool {
		return r.Count(standin.StatusInProgress) >= 2
	})
	running := r.instances()
	p.Kill()

	boot, _ := json.Marshal(garm.Bootstrap{Name: "corral-orphan-1", PoolID: "lab", Image: r.image,
		MetadataURL: "http://" + r.listen + "/api/v1/metadata", CallbackURL: "http://" + r.listen + "/api/v1/callbacks",
		InstanceToken: garm.TokenPrefix + "made-up", Labels: []string{"corral"}})
	out, err := r.provider("CreateInstance", map[string]string{"GARM_POOL_ID": "lab"}, boot)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"name":"corral-orphan-1"`) {
		t.Fatalf("orphan create answered %s", out)
	}
	t.Logf("killed corral with %d instances running %v; planted corral-orphan-1", len(running), running)

	p = r.start(t)
	e2etest.WaitFor(t, 90*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	e2etest.WaitFor(t, 60*time.Second, "the orphan deleted, every registration removed, no instance left", func() bool {
		return r.Stats().Registered == 0 && len(r.instances()) == 0
	})
	if b, err := os.ReadFile(p.Log); err != nil || !strings.Contains(string(b), "corral-orphan-1") {
		t.Errorf("corral's log does not name the orphan it deleted (%v)", err)
	}
	r.CheckJobs(t, jobs, nil)
	p.Stop(t)
}

// TestGarm_SIGKILLBeforeFetch: corral is SIGKILLed after it created garm
// instances but before they fetched their credentials (they wait 3 s);
// the restarted corral answers their tokens from the store, and every job
// runs once.
func TestGarm_SIGKILLBeforeFetch(t *testing.T) {
	const jobs = 2
	r := newRig(t, jobs)
	r.cfg.Providers[0].Garm.Env = "{GARMTEST_BOOT_DELAY: 3s}"
	p := r.start(t)
	for i := range jobs {
		r.Queue(fmt.Sprint("job-", i), []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, 300*time.Millisecond)
	}
	e2etest.WaitFor(t, 60*time.Second, "the garm instances created", func() bool { return len(r.instances()) >= jobs })
	p.Kill()
	if n := r.Count(standin.StatusInProgress) + r.Count(standin.StatusCompleted); n != 0 {
		t.Fatalf("%d jobs started before the kill: the instances fetched too early for this test", n)
	}
	p = r.start(t)
	e2etest.WaitFor(t, 90*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	deadline := time.Now().Add(60 * time.Second)
	for r.Stats().Registered != 0 || len(r.instances()) != 0 {
		if time.Now().After(deadline) {
			var regs []string
			for _, rn := range r.Runners() {
				if rn.Registered {
					regs = append(regs, fmt.Sprintf("%s (id %d, online %v, busy %v, job %d)", rn.Name, rn.ID, rn.Online, rn.Busy, rn.JobID))
				}
			}
			t.Fatalf("after 60 s: registrations left %v, garm instances left %v", regs, r.instances())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "piece=credentials/runner"); n < jobs {
		t.Errorf("the restarted corral gave %d JIT runner files, want %d (the instances granted before the kill)", n, jobs)
	}
	r.CheckJobs(t, jobs, nil)
	p.Stop(t)
}
