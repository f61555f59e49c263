package docker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/rightsize"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// TestProvider_Stats_RightSizing: a container that writes 64 MiB into its
// tmpfs workspace (memory of its cgroup) and then spins one shell loop
// is sampled through Stats (with a 200 ms pause between samples); the peaks are at most one core and
// near 64 MiB, and the advice for its 2 CPU/16 GiB flavor (Docker refuses more
// CPUs than the host's 2) is the smaller `small`.
func TestProvider_Stats_RightSizing(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	p := h.provider(t)
	spec := shSpec(t, h.host, providertest.Unique("ctl-"),
		`dd if=/dev/zero of=fill bs=1048576 count=64 2>/dev/null; i=0; while [ $i -lt 1500000 ]; do i=$((i+1)); done; echo burnt; sleep 600`)
	spec.Flavor = corral.Flavor{CPU: 2, MemoryMB: 16 << 10, DiskMB: 128}
	inst := create(t, p, spec)
	var tr rightsize.Tracker
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(containerOutput(t, h.cli, inst), "burnt") {
		if time.Now().After(deadline) {
			t.Fatalf("the loop did not end in 90 s:\n%s", containerOutput(t, h.cli, inst))
		}
		u, err := p.Stats(tctx(t), inst)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		tr.Add(time.Now(), u)
		time.Sleep(200 * time.Millisecond)
	}
	u, err := p.Stats(tctx(t), inst)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	tr.Add(time.Now(), u)
	s := tr.Summary()
	t.Logf("peak %.2f CPU, p95 %.2f CPU, %.2f CPU s, peak %.1f MiB, %s, %d samples",
		s.PeakCPU, s.P95CPU, s.CPUSeconds, float64(s.PeakMemoryBytes)/(1<<20), s.Duration, s.Samples)
	// One shell loop is at most one core; samples are about 1 s apart
	// here (each also reads the container's output) and the host's two
	// cores are shared, so the floor is loose.
	if s.Samples < 3 || s.PeakCPU < 0.3 || s.PeakCPU > 1.5 {
		t.Errorf("peak CPU %.2f cores over %d samples, want 0.3 to 1.5 (one shell loop)", s.PeakCPU, s.Samples)
	}
	if s.PeakMemoryBytes < 64<<20 || s.PeakMemoryBytes > 160<<20 {
		t.Errorf("peak memory %.1f MiB, want 64 to 160 MiB", float64(s.PeakMemoryBytes)/(1<<20))
	}
	a := rightsize.Advise(s, route.DefaultSizes(), spec.Flavor)
	t.Logf("advice: %s", a.Text)
	if a.Size != "small" || !a.Smaller {
		t.Errorf("advice %+v, want the smaller `small`", a)
	}
	if err := p.Delete(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stats(tctx(t), inst); err == nil {
		t.Error("Stats of a deleted container answered")
	}
}
