package gitea

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// vmStep proves that a step ran inside corral's VM guest: the runner came
// in at /opt/corral/runner, the workspace is the encrypted one
// (/dev/mapper/corral-work on /work), and /bin/sh is busybox. The host has
// none of these.
const vmStep = `test -x /opt/corral/runner/gitea-runner && mount | grep -q '^/dev/mapper/corral-work on /work ' && test "$(readlink /bin/sh)" = /bin/busybox && echo job in VM $(uname -m)`

// TestGitea_VM: a job pushed to the real Gitea runs in a QEMU VM (pool on
// the qemu provider, workspace encrypted): the real gitea-runner inside
// the guest registers and reaches Gitea through a forward (guestfwd), runs
// the job, which succeeds; the VM and its files are gone after.
func TestGitea_VM(t *testing.T) {
	r := newRig(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-system-x86_64 is missing (apt-get install qemu-system-x86)")
		}
		t.Skip("qemu-system-x86_64 is missing")
	}
	if _, err := os.Stat("/opt/corral/runner/gitea-runner"); err == nil {
		t.Fatal("/opt/corral/runner/gitea-runner exists on this host: vmStep would prove nothing")
	}
	wd, _ := os.Getwd()
	out, err := exec.Command("sh", filepath.Join(wd, "..", "..", "scripts", "vm", "build-guest.sh"), "amd64").Output()
	if err != nil {
		t.Fatalf("build-guest.sh: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	guest := lines[len(lines)-1]
	runner := filepath.Join(t.TempDir(), "runner")
	if err := os.MkdirAll(runner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(runnerBin, filepath.Join(runner, "gitea-runner")); err != nil {
		t.Fatal(err)
	}
	forge := strings.TrimPrefix(r.g.URL, "http://")
	vmDir := filepath.Join(r.dataDir, "vms-vms")
	r.cfg.Pools = []e2etest.Pool{{ID: "vm", Labels: []string{"corral-v"}, Provider: "vms", Image: guest, Flavor: "1cpu1gb1gb",
		MaxInstances: 1, BootTimeout: "3m", MaxJobRuntime: "5m", IdleTimeout: "10s",
		Options: fmt.Sprintf("{runner: %s, workspace: encrypted}", runner)}}
	r.cfg.Providers = []e2etest.Provider{{Name: "vms", Type: "qemu",
		Settings: []string{fmt.Sprintf("forwards: [{host: %q, guest: %q}]", forge, forge)}}}
	p := r.start(t)
	t.Cleanup(func() { killQEMUs(vmDir) })

	var b strings.Builder
	fmt.Fprintf(&b, "name: vm\non:\n  push:\n    paths: ['.gitea/workflows/vm.yml']\njobs:\n  j00:\n    runs-on: [self-hosted, corral-v]\n    steps:\n      - run: %s\n", vmStep)
	if err := r.g.pushWorkflow(r.repo, "vm.yml", b.String()); err != nil {
		t.Fatal(err)
	}
	var js []job
	waitFor(t, 5*time.Minute, "the job completed at Gitea", func() bool {
		js = r.giteaJobs(t)
		return len(js) == 1 && js[0].Status == "completed"
	})
	if js[0].Conclusion != "success" {
		t.Errorf("job %d concluded %q on %q, want success (the step proves it ran in the VM)", js[0].ID, js[0].Conclusion, js[0].RunnerName)
	}
	if !strings.HasPrefix(js[0].RunnerName, "corral-"+r.id) {
		t.Errorf("job ran on %q, not a runner of corral's", js[0].RunnerName)
	}
	r.checkClean(t)
	waitFor(t, 60*time.Second, "no VM left", func() bool {
		ents, _ := os.ReadDir(vmDir)
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				return false
			}
		}
		return true
	})
	p.Stop(t)
}

func killQEMUs(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		pids, _ := providertest.HostProcesses("corral-" + e.Name())
		for _, pid := range pids {
			if pr, err := os.FindProcess(pid); err == nil {
				_ = pr.Kill()
			}
		}
	}
}
