// Package vme2e runs `corral serve` against the stand-in GitHub with a
// pool on the qemu provider: every runner is corral's simulated actions
// runner (`corral github-sim-runner`, the static corral binary) inside a
// real VM booted from scripts/vm/build-guest.sh's guest, reaching the
// stand-in through a forward (guestfwd) and nothing else. Without QEMU the
// tests skip; with CI=true they fail.
package vme2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

const controllerID = "vme2e"

var corralBin string

func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(&corralBin, e2etest.BuildOptions{Static: true}, m.Run))
}

func guest(t *testing.T) string { return guestFor(t, "amd64") }

func guestFor(t *testing.T, arch string) string {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-system-x86_64 is missing (apt-get install qemu-system-x86)")
		}
		t.Skip("qemu-system-x86_64 is missing")
	}
	wd, _ := os.Getwd()
	out, err := exec.Command("sh", filepath.Join(wd, "..", "..", "scripts", "vm", "build-guest.sh"), arch).Output()
	if err != nil {
		t.Fatalf("build-guest.sh: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// runnerDir is the runner handed to every guest: the static corral and a
// run.sh that execs its simulated runner.
func runnerDir(t *testing.T) string { return runnerDirOf(t, corralBin) }

func runnerDirOf(t *testing.T, bin string) string {
	dir := filepath.Join(t.TempDir(), "runner")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(bin, filepath.Join(dir, "corral")); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nexec \"${0%/*}/corral\" github-sim-runner \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type rig struct {
	*e2etest.GitHub
	listen string
	cfg    e2etest.Config
	vmDir  string
}

func newRig(t *testing.T) *rig {
	g := guest(t)
	r := &rig{GitHub: e2etest.NewGitHub(t, standin.Options{Seed: 3, HeartbeatTimeout: 30 * time.Second}), listen: e2etest.FreePort(t)}
	r.Hook(r.listen, "e2e")
	data := filepath.Join(t.TempDir(), "data")
	r.vmDir = filepath.Join(data, "vms-vms")
	forge := strings.TrimPrefix(r.URL, "http://")
	r.cfg = e2etest.Config{Listen: r.listen, DataDir: data, ControllerID: controllerID,
		Targets: []e2etest.Target{r.Target("e2e", "corral-v")},
		Pools: []e2etest.Pool{{ID: "vm", Labels: []string{"corral"}, Provider: "vms", Image: g, Flavor: "1cpu1gb1gb",
			MaxInstances: 2, BootTimeout: "3m", MaxJobRuntime: "5m", MaxLifetime: "10m",
			Options: fmt.Sprintf("{runner: %s, workspace: tmpfs}", runnerDir(t))}},
		Providers: []e2etest.Provider{{Name: "vms", Type: "qemu",
			Settings: []string{fmt.Sprintf("forwards: [{host: %q, guest: %q}]", forge, forge)}}},
	}
	t.Cleanup(func() { killVMs(r.vmDir) })
	return r
}

func (r *rig) start(t *testing.T) *e2etest.Proc {
	return e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, r.cfg), Listen: r.listen, Env: r.Env()})
}

// vms lists the instance directories of the provider with their QEMU pid.
func vms(dir string) map[string]int {
	out := map[string]int{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var st struct {
			Pid int `json:"pid"`
		}
		b, _ := os.ReadFile(filepath.Join(dir, e.Name(), "instance.json"))
		_ = json.Unmarshal(b, &st)
		out[e.Name()] = st.Pid
	}
	return out
}

// qemus counts live QEMU processes of the provider's instances.
func qemus(t *testing.T, dir string) int {
	n := 0
	for id := range vms(dir) {
		pids, err := providertest.HostProcesses("corral-" + id)
		if err != nil {
			t.Fatal(err)
		}
		n += len(pids)
	}
	return n
}

// killVMs ends what a failed test left.
func killVMs(dir string) {
	for id := range vms(dir) {
		pids, _ := providertest.HostProcesses("corral-" + id)
		for _, pid := range pids {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	}
}

// TestVM_JobAndCrashRestart: a job runs in a VM; corral is killed with
// SIGKILL while it runs; the VM lives on, its runner finishes the job;
// the restarted corral finds the VM by its metadata and removes it, serves
// a second job in a fresh VM, and ends with no VM, overlay, socket or
// registration left. Each job completed exactly once.
func TestVM_JobAndCrashRestart(t *testing.T) {
	r := newRig(t)
	p := r.start(t)
	r.Queue("job-0", []string{"self-hosted", "corral", "run-0"}, 15*time.Second)
	e2etest.WaitFor(t, 3*time.Minute, "job 0 running in a VM", func() bool {
		return r.Count(standin.StatusInProgress) == 1 && qemus(t, r.vmDir) == 1
	})
	before := vms(r.vmDir)
	p.Kill()
	t.Logf("SIGKILL while job 0 runs in VM %v", before)
	if n := qemus(t, r.vmDir); n != 1 {
		t.Fatalf("after corral's SIGKILL %d QEMU processes live, want the VM to survive", n)
	}
	time.Sleep(2 * time.Second)
	p = r.start(t)
	r.Queue("job-1", []string{"self-hosted", "corral", "run-1"}, 500*time.Millisecond)
	e2etest.WaitFor(t, 4*time.Minute, "both jobs completed", func() bool { return r.Count(standin.StatusCompleted) == 2 })
	e2etest.WaitFor(t, 90*time.Second, "no VM and no registration left", func() bool {
		for _, rn := range r.Runners() {
			if rn.Registered {
				return false
			}
		}
		return len(vms(r.vmDir)) == 0 && qemus(t, r.vmDir) == 0
	})
	for id, pid := range before {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(b), id) {
				t.Errorf("QEMU %d of %s still runs", pid, id)
			}
		}
	}
	p.Stop(t)
	r.CheckJobs(t, 2, nil)
}

// TestVM_Arm64Job: a pool with arch arm64 on an arm64 guest (emulated
// cortex-a57) takes a job of the stand-in GitHub that asks for arm64; the
// runner is corral built for arm64. The job completes once, with success,
// and no VM is left.
//
// It compiles all of corral for arm64 and boots an emulated arm64 guest:
// 6 min 7 s here with cold caches, 43 s with Go's build cache and the
// guest cached. CI runs it (.ci/run sets CORRAL_VM_ARM64_E2E=1); by hand:
//
//	CORRAL_VM_ARM64_E2E=1 go test -race -run TestVM_Arm64Job ./test/vme2e/
func TestVM_Arm64Job(t *testing.T) {
	if os.Getenv("CORRAL_VM_ARM64_E2E") != "1" {
		t.Skip("set CORRAL_VM_ARM64_E2E=1 to run (about 6 minutes here: corral built for arm64, an emulated guest)")
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-system-aarch64 is missing (apt-get install qemu-system-arm)")
		}
		t.Skip("qemu-system-aarch64 is missing")
	}
	r := newRig(t)
	bin := filepath.Join(t.TempDir(), "corral-arm64")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/corral-ci/corral/cmd/corral")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build corral for arm64: %v\n%s", err, out)
	}
	pool := &r.cfg.Pools[0]
	pool.ID, pool.Arch, pool.Image = "arm", "arm64", guestFor(t, "arm64")
	pool.Options = fmt.Sprintf("{runner: %s, workspace: tmpfs}", runnerDirOf(t, bin))
	p := r.start(t)
	r.Queue("arm-job", []string{"self-hosted", "corral", "arm64"}, 500*time.Millisecond)
	e2etest.WaitFor(t, 4*time.Minute, "the arm64 job completed", func() bool { return r.Count(standin.StatusCompleted) == 1 })
	e2etest.WaitFor(t, 90*time.Second, "no VM left", func() bool { return len(vms(r.vmDir)) == 0 && qemus(t, r.vmDir) == 0 })
	p.Stop(t)
	r.CheckJobs(t, 1, nil)
	b, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "arch=arm64") {
		t.Errorf("corral's log has no instance started with arch=arm64")
	}
}
