package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/rightsize"
	"github.com/corral-ci/corral/internal/route"
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
// two seconds and touches 64 MiB on a large flavor (8 CPU, 16 GiB),
// samples it through Stats every 100 ms as the leader does, and checks
// that the recorded peaks are near the known values and that the advice
// names a smaller flavor.
func TestProvider_Stats_RightSizing(t *testing.T) {
	h := newHarness(t, NamespacesAuto)
	p := h.provider(t)
	if c := p.iso().cg; len(c.enforced()) == 0 {
		t.Skipf("no cgroups for instances on this host: %q", p.iso().degraded)
	}
	spec := providertest.Spec(t, h, "ctl-stats", nil)
	spec.Flavor = corral.Flavor{CPU: 8, MemoryMB: 16 << 10, Arch: "x64"}
	spec.Bootstrap.Command = []string{burnArg}
	inst := providertest.Create(t, p, spec)

	var tr rightsize.Tracker
	sample := func() {
		u, err := p.Stats(context.Background(), inst)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		tr.Add(time.Now(), u)
	}
	sample()
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
			sample()
		case <-limit:
			t.Fatalf("the burner did not exit in 30 s; log:\n%s", h.Output(t, inst))
		}
	}
	sample() // the last one, right before delete
	s := tr.Summary()
	t.Logf("summary: peak %.2f CPU, p95 %.2f CPU, %.2f CPU s, peak %.1f MiB, %s, %d samples; log: %q",
		s.PeakCPU, s.P95CPU, s.CPUSeconds, float64(s.PeakMemoryBytes)/(1<<20), s.Duration, s.Samples, h.Output(t, inst))

	// The burner uses 2 s of CPU in one goroutine; shim and runtime add
	// a little. One core (±0.5, the host's 2 cores are shared) at peak.
	if s.CPUSeconds < 2 || s.CPUSeconds > 3.5 {
		t.Errorf("CPU time %.2f s, want 2 to 3.5 s", s.CPUSeconds)
	}
	if s.PeakCPU < 0.5 || s.PeakCPU > 1.5 {
		t.Errorf("peak CPU %.2f cores, want 0.5 to 1.5", s.PeakCPU)
	}
	if s.P95CPU > 1.5 {
		t.Errorf("p95 CPU %.2f cores, want at most 1.5", s.P95CPU)
	}
	// 64 MiB touched, plus the shim and the burner's Go runtime.
	if s.PeakMemoryBytes < burnMiB<<20 || s.PeakMemoryBytes > (burnMiB+96)<<20 {
		t.Errorf("peak memory %.1f MiB, want %d to %d MiB", float64(s.PeakMemoryBytes)/(1<<20), burnMiB, burnMiB+96)
	}
	a := rightsize.Advise(s, route.DefaultSizes(), spec.Flavor)
	t.Logf("advice: %s", a.Text)
	if !a.Smaller || a.Size != "small" || !strings.Contains(a.Text, "`small` would do") {
		t.Errorf("advice %+v, want `small`, smaller than the large flavor it ran on", a)
	}

	if err := p.Delete(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stats(context.Background(), inst); !errors.Is(err, corral.ErrNotFound) {
		t.Errorf("Stats after Delete: %v, want ErrNotFound", err)
	}
}
