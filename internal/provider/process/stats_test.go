package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/rightsize"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// burnArg makes the test binary burn a known amount: it touches burnMiB
// MiB of anonymous memory (mmap, outside the Go heap so that the race
// detector adds no shadow pages), then spins one goroutine until the
// process has used burnCPU of CPU time, holds the memory a moment and
// exits.
const (
	burnArg = "corral-test-burn"
	burnMiB = 64
	burnCPU = 2 * time.Second
)

func runBurn() int {
	mem, err := unix.Mmap(-1, 0, burnMiB<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "burn: mmap:", err)
		return 2
	}
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	var x uint64
	for {
		for i := range 1 << 20 {
			x += uint64(i) * 2654435761
		}
		var ru unix.Rusage
		if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
			return 2
		}
		if time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) >= burnCPU {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	mem[0] = byte(x)
	_ = unix.Munmap(mem)
	return 0
}

// TestProvider_Stats_RightSizing runs a job that burns about one CPU for
// two seconds and touches 64 MiB on a large flavor (8 CPU, 16 GiB). The
// leader's sampler (package rightsize) samples it through Stats every
// 100 ms and once right before delete, and records the job's usage in a
// real SQLite store; the test checks that the recorded peaks are near the
// known values and that the advice names a smaller flavor.
func TestProvider_Stats_RightSizing(t *testing.T) {
	h := newHarness(t, NamespacesAuto)
	p := h.provider(t)
	if c := p.iso().cg; len(c.enforced()) == 0 {
		t.Skipf("no cgroups for instances on this host: %q", p.iso().degraded)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "corral.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })

	spec := providertest.Spec(t, h, "ctl-stats", nil)
	spec.Flavor = corral.Flavor{CPU: 8, MemoryMB: 16 << 10, Arch: "x64"}
	spec.Bootstrap.Command = []string{burnArg}
	job := corral.Job{TargetID: "gh-acme", TenantID: "acme", ForgeJobID: 7, Repo: "acme/app", Name: "lint", State: corral.JobRunning}
	in := corral.Instance{ID: spec.InstanceID, Name: spec.Name, PoolID: spec.PoolID, TenantID: "acme", TargetID: "gh-acme",
		State: corral.InstBusy, Flavor: spec.Flavor, Provider: "process"}
	if err := st.Update(ctx, func(tx corral.Tx) error {
		if err := tx.PutJob(ctx, &job); err != nil {
			return err
		}
		in.JobID = job.ID
		return tx.PutInstance(ctx, &in)
	}); err != nil {
		t.Fatal(err)
	}
	inst := providertest.Create(t, p, spec)
	in.ProviderID = inst.ProviderID
	if err := st.Update(ctx, func(tx corral.Tx) error { return tx.PutInstance(ctx, &in) }); err != nil {
		t.Fatal(err)
	}
	sm := rightsize.NewSampler(rightsize.SamplerConfig{Store: st, Providers: map[string]corral.Provider{"process": p}})
	pass := func() {
		if err := sm.Pass(ctx); err != nil {
			t.Fatalf("sampler pass: %v", err)
		}
	}
	pass()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(30 * time.Second)
wait:
	for {
		select {
		case id := <-p.Exited():
			if id == inst.InstanceID {
				break wait
			}
		case <-tick.C:
			pass()
		case <-limit:
			t.Fatalf("the burner did not exit in 30 s; log:\n%s", h.Output(t, inst))
		}
	}
	sm.BeforeDelete(ctx, in) // the last sample, then the record
	if err := p.Delete(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stats(ctx, inst); !errors.Is(err, corral.ErrNotFound) {
		t.Errorf("Stats after Delete: %v, want ErrNotFound", err)
	}

	var sums []corral.UsageSummary
	if err := st.View(ctx, func(tx corral.ReadTx) error {
		var err error
		sums, err = tx.UsageSummaries(ctx, "acme")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[0].Repo != "acme/app" || sums[0].JobName != "lint" || sums[0].Jobs != 1 || sums[0].Flavor != (corral.Flavor{CPU: 8, MemoryMB: 16 << 10}) {
		t.Fatalf("usage summaries: %+v, want one for acme/app lint on 8 CPU/16 GiB", sums)
	}
	s := sums[0]
	t.Logf("recorded: peak %.2f CPU, p95 %.2f CPU, peak %.1f MiB, %s; log: %q",
		s.PeakCPU, s.P95CPU, float64(s.PeakMemoryBytes)/(1<<20), s.MaxDuration, h.Output(t, inst))

	// The burner uses 2 s of CPU in one goroutine; shim and runtime add
	// a little. One core at peak, ±0.5 (the host's 2 cores are shared).
	if s.PeakCPU < 0.5 || s.PeakCPU > 1.5 {
		t.Errorf("peak CPU %.2f cores, want 0.5 to 1.5", s.PeakCPU)
	}
	// p95 over 100 ms rates counts the burner's start and its idle end,
	// and other work on the host: a looser floor.
	if s.P95CPU < 0.25 || s.P95CPU > 1.5 {
		t.Errorf("p95 CPU %.2f cores, want 0.25 to 1.5", s.P95CPU)
	}
	// 64 MiB touched, plus the shim and the burner's Go runtime.
	if s.PeakMemoryBytes < burnMiB<<20 || s.PeakMemoryBytes > (burnMiB+96)<<20 {
		t.Errorf("peak memory %.1f MiB, want %d to %d MiB", float64(s.PeakMemoryBytes)/(1<<20), burnMiB, burnMiB+96)
	}
	if s.MaxDuration < burnCPU {
		t.Errorf("duration %s, want at least the %s of CPU burnt", s.MaxDuration, burnCPU)
	}
	a := rightsize.Advise(rightsize.Summary{PeakCPU: s.PeakCPU, P95CPU: s.P95CPU, PeakMemoryBytes: s.PeakMemoryBytes}, route.DefaultSizes(), s.Flavor)
	t.Logf("advice: %s", a.Text)
	if !a.Smaller || a.Size != "small" || !strings.Contains(a.Text, "`small` would do") {
		t.Errorf("advice %+v, want `small`, smaller than the large flavor it ran on", a)
	}
}

// TestCgroups_stats reads the files of both cgroup versions as the kernel
// writes them; the v2 files are written here because this CI host's
// controllers are on cgroup v1 (its v2 hierarchy has none).
func TestCgroups_stats(t *testing.T) {
	write := func(dir string, files map[string]string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := t.TempDir()
	write(filepath.Join(base, "v2", cgroupPrefix+"a"), map[string]string{
		"cpu.stat":       "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
		"memory.current": "1048576\n", "memory.peak": "67108864\n"})
	write(filepath.Join(base, "v2", cgroupPrefix+"old"), map[string]string{ // a kernel before 5.19: no memory.peak
		"cpu.stat": "usage_usec 1\n", "memory.current": "4096\n"})
	write(filepath.Join(base, "v2", cgroupPrefix+"bad"), map[string]string{"cpu.stat": "user_usec 1\n", "memory.current": "1\n"})
	write(filepath.Join(base, "cpuacct", cgroupPrefix+"a"), map[string]string{"cpuacct.usage": "1500000000\n"})
	write(filepath.Join(base, "memory", cgroupPrefix+"a"), map[string]string{
		"memory.usage_in_bytes": "2097152\n", "memory.max_usage_in_bytes": "8388608\n"})

	v2 := cgroups{v2: filepath.Join(base, "v2")}
	if u, err := v2.stats("a"); err != nil || u != (corral.Usage{CPUSeconds: 2.5, MemoryBytes: 1 << 20, MemoryPeakBytes: 64 << 20}) {
		t.Errorf("v2 stats = %+v, %v", u, err)
	}
	if u, err := v2.stats("old"); err != nil || u != (corral.Usage{CPUSeconds: 1e-6, MemoryBytes: 4096}) {
		t.Errorf("v2 stats without memory.peak = %+v, %v", u, err)
	}
	if _, err := v2.stats("bad"); err == nil || !strings.Contains(err.Error(), "no usage_usec line") {
		t.Errorf("v2 stats of a cpu.stat without usage_usec: %v", err)
	}
	if _, err := v2.stats("gone"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("v2 stats of a missing cgroup: %v", err)
	}
	v1 := cgroups{v1: map[string]string{"cpu": filepath.Join(base, "cpu"), "memory": filepath.Join(base, "memory")},
		acct: map[string]string{"cpuacct": filepath.Join(base, "cpuacct")}}
	if u, err := v1.stats("a"); err != nil || u != (corral.Usage{CPUSeconds: 1.5, MemoryBytes: 2 << 20, MemoryPeakBytes: 8 << 20}) {
		t.Errorf("v1 stats = %+v, %v", u, err)
	}
	if got := strings.Join(v1.dirs("a"), " "); !strings.HasSuffix(got, filepath.Join(base, "cpuacct", cgroupPrefix+"a")) {
		t.Errorf("v1 dirs %s lack the cpuacct cgroup", got)
	}
}
