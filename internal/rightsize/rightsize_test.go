package rightsize

import (
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func TestTracker(t *testing.T) {
	var tr Tracker
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// 20 intervals of 1 s: 19 at 0.5 cores, one at 3 cores.
	cpu := 0.0
	tr.Add(t0, corral.Usage{CPUSeconds: cpu, MemoryBytes: 10 << 20})
	for i := 1; i <= 20; i++ {
		if i == 7 {
			cpu += 3
		} else {
			cpu += 0.5
		}
		tr.Add(t0.Add(time.Duration(i)*time.Second), corral.Usage{CPUSeconds: cpu, MemoryBytes: int64(i) << 20, MemoryPeakBytes: 0})
	}
	tr.Add(t0.Add(5*time.Second), corral.Usage{CPUSeconds: 1, MemoryPeakBytes: 700 << 20}) // out of order: memory only
	s := tr.Summary()
	if s.PeakCPU != 3 || s.P95CPU != 0.5 || s.PeakMemoryBytes != 700<<20 || s.Duration != 20*time.Second || s.Samples != 21 || s.CPUSeconds != 12.5 {
		t.Errorf("summary %+v", s)
	}
}

func TestAdvise(t *testing.T) {
	sizes := map[string]corral.Flavor{
		"small": {CPU: 2, MemoryMB: 4096}, "medium": {CPU: 4, MemoryMB: 8192}, "large": {CPU: 8, MemoryMB: 16384},
	}
	large := sizes["large"]
	for _, tc := range []struct {
		name    string
		s       Summary
		size    string
		smaller bool
		text    string
	}{
		{"small_would_do", Summary{PeakCPU: 1.2, P95CPU: 1.1, PeakMemoryBytes: 900 << 20}, "small", true, "peaks at 1.2 CPU (p95 1.1) and 900 MiB: `small` would do"},
		{"memory_headroom", Summary{P95CPU: 1, PeakMemoryBytes: 3500 << 20}, "medium", true, "`medium` would do"},
		{"cpu_p95", Summary{P95CPU: 4.5, PeakMemoryBytes: 1 << 20}, "large", false, "`large` fits"},
		{"none", Summary{P95CPU: 9, PeakMemoryBytes: 1 << 20}, "", false, "no size covers it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Advise(tc.s, sizes, large)
			if a.Size != tc.size || a.Smaller != tc.smaller || !strings.Contains(a.Text, tc.text) {
				t.Errorf("Advise = %+v, want %s (smaller %v) and %q", a, tc.size, tc.smaller, tc.text)
			}
		})
	}
}
