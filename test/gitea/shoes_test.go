package gitea

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/provider/process"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// TestGitea_Shoes: jobs of the real Gitea run end to end on machines of a
// shoes plugin (docs/plugins.md): the test plugin cmd/corral-shoes-process,
// built here and served through go-plugin as myshoes' plugins are, runs
// the setup script corral hands to AddInstance, which registers the real
// gitea-runner with corral's credential and starts it. Each job succeeds
// on its own runner; afterwards no registration, machine, record or
// process is left.
func TestGitea_Shoes(t *testing.T) {
	r := newRig(t)
	binDir := t.TempDir()
	_ = os.Chmod(binDir, 0o755) // the shim is the plugin binary: runners' uids read it
	plugin, err := e2etest.BuildCommand(binDir, "corral-shoes-process", "github.com/corral-ci/corral/cmd/corral-shoes-process")
	if err != nil {
		t.Fatal(err)
	}
	machines := filepath.Join(r.dataDir, "shoes-machines")
	// The machines see the image directory and the real gitea-runner its
	// link leads to (the process provider does this itself for its own
	// image; the test plugin's image is /bin/sh, the runner is in the
	// setup script).
	t.Cleanup(func() { _ = process.RemoveLeftovers(machines) })
	r.cfg.Pools = []e2etest.Pool{{ID: "shoes", Labels: []string{"corral-s"}, Provider: "lab", Image: r.image, Flavor: "1cpu1gb",
		MaxInstances: 3, BootTimeout: "60s", MaxJobRuntime: "5m", IdleTimeout: "10s"}}
	r.cfg.Providers = []e2etest.Provider{{Name: "lab", Type: "shoes", Shoes: &e2etest.Shoes{Path: plugin, Env: map[string]string{
		"CORRAL_SHOES_DIR": machines, "CORRAL_SHOES_NAMESPACES": "auto", "CORRAL_SHOES_KEEP": r.image + ":" + runnerBin, "CORRAL_SHOES_HIDE": r.dataDir}}}}
	p := r.start(t)
	const n = 3
	var jobs [][]string
	for range n {
		jobs = append(jobs, []string{"self-hosted", "corral-s"})
	}
	r.push(t, "shoes", jobs)
	var js []job
	waitFor(t, 3*time.Minute, "the jobs completed at Gitea", func() bool {
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
		if !strings.HasPrefix(j.RunnerName, "corral-"+r.id) || runners[j.RunnerName] {
			t.Errorf("job %d ran on %q: not a runner of corral's, or one that ran another job", j.ID, j.RunnerName)
		}
		runners[j.RunnerName] = true
	}
	r.checkClean(t)
	var left []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, _ := filepath.Glob(filepath.Join(machines, "[^.]*")) // not the lock file
		recs, _ := filepath.Glob(filepath.Join(r.dataDir, "shoes-lab", "*.json"))
		if left = append(m, recs...); len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Fatalf("left after 60s: %v", left)
	}
	p.Stop(t)
	log, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "shoes machine added") {
		t.Errorf("corral's log shows no shoes machine added")
	}
	if strings.Contains(string(log), r.g.token) {
		t.Errorf("corral's log shows the Gitea token")
	}
}
