package gitea

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

var (
	garmOnce sync.Once
	garmBin  string
	garmErr  error
)

// garmProvider builds the garm-protocol test provider once.
func garmProvider(t testing.TB) string {
	t.Helper()
	garmOnce.Do(func() {
		dir, err := os.MkdirTemp("", "corral-gitea-garm-")
		if err != nil {
			garmErr = err
			return
		}
		_ = os.Chmod(dir, 0o755)
		garmBin, garmErr = e2etest.BuildCommand(dir, "garmtestprovider", "github.com/corral-ci/corral/internal/provider/garm/garmtestprovider")
	})
	if garmErr != nil {
		t.Fatal(garmErr)
	}
	return garmBin
}

// TestGitea_GarmProvider: jobs of the real Gitea run on instances of a
// garm provider (the garm-protocol test provider), each instance fetching
// its registration token from corral's metadata endpoint with its own
// token; every job succeeds once, on its own runner, and nothing is left.
func TestGitea_GarmProvider(t *testing.T) {
	r := newRig(t)
	bin := garmProvider(t)
	cfg := filepath.Join(t.TempDir(), "garmtest.json")
	b, _ := json.Marshal(map[string]any{"dir": filepath.Join(r.dataDir, "garm-instances"), "namespaces": "off"})
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r.cfg.InstanceURL = "http://" + r.listen
	r.cfg.Providers = append(r.cfg.Providers, e2etest.Provider{Name: "garm", Type: "garm", Garm: &e2etest.Garm{Executable: bin, ConfigFile: cfg}})
	r.cfg.Pools = []e2etest.Pool{{ID: "garm", Labels: []string{"corral-g"}, Provider: "garm", Image: r.image, MaxInstances: 3,
		BootTimeout: "60s", MaxJobRuntime: "5m", IdleTimeout: "10s"}}
	p := r.start(t)
	const n = 3
	var jobs [][]string
	for range n {
		jobs = append(jobs, []string{"self-hosted", "corral-g"})
	}
	r.push(t, "garm", jobs)
	var js []job
	waitFor(t, 3*time.Minute, "3 jobs completed at Gitea", func() bool {
		js = r.giteaJobs(t)
		done := 0
		for _, j := range js {
			if j.Status == "completed" {
				done++
			}
		}
		return len(js) == n && done == n
	})
	runners := map[string]bool{}
	for _, j := range js {
		if j.Conclusion != "success" {
			t.Errorf("job %d (%s) concluded %q, want success", j.ID, j.Name, j.Conclusion)
		}
		if runners[j.RunnerName] || !strings.HasPrefix(j.RunnerName, "corral-"+r.id) {
			t.Errorf("job %d ran on %q: not a fresh runner of corral's", j.ID, j.RunnerName)
		}
		runners[j.RunnerName] = true
	}
	r.checkClean(t)
	waitFor(t, 60*time.Second, "no garm instance left", func() bool {
		entries, _ := os.ReadDir(filepath.Join(r.dataDir, "garm-instances"))
		for _, e := range entries {
			if e.IsDir() {
				return false
			}
		}
		return true
	})
	p.Stop(t)
	log, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(log), "piece=runner-registration-token"); c < n {
		t.Errorf("registration token fetched from the metadata endpoint %d times, want at least %d (one per instance)", c, n)
	}
	if strings.Contains(string(log), r.g.token) {
		t.Errorf("corral's log shows the Gitea token")
	}
}
