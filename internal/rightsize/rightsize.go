// Package rightsize turns samples of an instance's CPU and memory use into
// a per-job summary (peak and p95 CPU in cores, peak memory, duration) and
// advises the smallest flavor that covers it.
package rightsize

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// maxRates bounds the CPU rates kept per instance (p95 over the last
// ones): one sample every 10 s for 24 h.
const maxRates = 8640

// Summary is what one job used.
type Summary struct {
	PeakCPU         float64       // cores, highest rate between two samples
	P95CPU          float64       // cores, 95th percentile of those rates
	PeakMemoryBytes int64         // highest memory in use
	CPUSeconds      float64       // CPU time used in all
	Duration        time.Duration // first sample to last
	Samples         int
}

// Tracker accumulates the samples of one instance. The zero value is
// ready. It is not safe for concurrent use.
type Tracker struct {
	first, last time.Time
	firstCPU    float64
	lastCPU     float64
	n           int
	rates       []float64
	peakCPU     float64
	peakMem     int64
}

// Add records one sample taken at t. Samples must come in time order; one
// that does not (or whose CPU time went backwards) only counts for memory.
func (tr *Tracker) Add(t time.Time, u corral.Usage) {
	tr.peakMem = max(tr.peakMem, u.MemoryBytes, u.MemoryPeakBytes)
	if tr.n == 0 {
		tr.first, tr.last, tr.firstCPU, tr.lastCPU, tr.n = t, t, u.CPUSeconds, u.CPUSeconds, 1
		return
	}
	dt := t.Sub(tr.last).Seconds()
	if dt <= 0 || u.CPUSeconds < tr.lastCPU {
		return
	}
	r := (u.CPUSeconds - tr.lastCPU) / dt
	tr.peakCPU = max(tr.peakCPU, r)
	if len(tr.rates) == maxRates {
		tr.rates = slices.Delete(tr.rates, 0, 1)
	}
	tr.rates = append(tr.rates, r)
	tr.last, tr.lastCPU = t, u.CPUSeconds
	tr.n++
}

// Summary returns what the samples so far show.
func (tr *Tracker) Summary() Summary {
	return Summary{
		PeakCPU:         tr.peakCPU,
		P95CPU:          percentile(tr.rates, 0.95),
		PeakMemoryBytes: tr.peakMem,
		CPUSeconds:      tr.lastCPU,
		Duration:        tr.last.Sub(tr.first),
		Samples:         tr.n,
	}
}

// percentile returns the q-quantile of xs (nearest rank), 0 for none.
func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// MemoryHeadroom is the share above peak memory that advice keeps free.
const MemoryHeadroom = 0.25

// Advice names the smallest flavor that covers a job's use.
type Advice struct {
	Size   string        // size word, e.g. "small"; "" when none covers it
	Flavor corral.Flavor // that size's flavor
	// Smaller: the advised flavor is smaller than the one the job ran on.
	Smaller bool
	Text    string
}

// Advise picks, among sizes, the smallest flavor (fewest CPUs, then least
// memory) whose memory covers the peak plus MemoryHeadroom and whose CPUs
// cover the p95 CPU. ran is the flavor the job ran on (zero when unknown).
func Advise(s Summary, sizes map[string]corral.Flavor, ran corral.Flavor) Advice {
	needMiB := int64(math.Ceil(float64(s.PeakMemoryBytes) * (1 + MemoryHeadroom) / (1 << 20)))
	needCPU := s.P95CPU
	words := make([]string, 0, len(sizes))
	for w := range sizes {
		words = append(words, w)
	}
	slices.SortFunc(words, func(a, b string) int {
		fa, fb := sizes[a], sizes[b]
		return cmp.Or(cmp.Compare(fa.CPU, fb.CPU), cmp.Compare(fa.MemoryMB, fb.MemoryMB), cmp.Compare(a, b))
	})
	use := fmt.Sprintf("this job peaks at %.1f CPU (p95 %.1f) and %s", s.PeakCPU, s.P95CPU, mib(s.PeakMemoryBytes))
	for _, w := range words {
		f := sizes[w]
		if int64(f.MemoryMB) >= needMiB && float64(f.CPU) >= needCPU {
			a := Advice{Size: w, Flavor: f}
			a.Smaller = ran.CPU > 0 && (f.CPU < ran.CPU || f.MemoryMB < ran.MemoryMB) && f.CPU <= ran.CPU && f.MemoryMB <= ran.MemoryMB
			switch {
			case a.Smaller:
				a.Text = fmt.Sprintf("%s: `%s` would do (%d CPU, %s; it ran on %d CPU, %s)", use, w, f.CPU, mib(int64(f.MemoryMB)<<20), ran.CPU, mib(int64(ran.MemoryMB)<<20))
			default:
				a.Text = fmt.Sprintf("%s: `%s` fits", use, w)
			}
			return a
		}
	}
	return Advice{Text: use + ": no size covers it"}
}

func mib(b int64) string {
	if b >= 10<<30 {
		return fmt.Sprintf("%d GiB", b>>30)
	}
	return fmt.Sprintf("%d MiB", (b+(1<<20)-1)>>20)
}
