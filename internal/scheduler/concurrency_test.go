package scheduler_test

import (
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/scheduler"
)

// peakMeter records the most provider creates under way at once.
type peakMeter struct {
	mu        sync.Mutex
	cur, peak int
}

func (m *peakMeter) create(corral.InstanceSpec) {
	m.mu.Lock()
	m.cur++
	m.peak = max(m.peak, m.cur)
	m.mu.Unlock()
	time.Sleep(30 * time.Millisecond) // long enough for the others to start
	m.mu.Lock()
	m.cur--
	m.mu.Unlock()
}

func (m *peakMeter) get() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak
}

// TestScheduler_PoolConcurrency: a pool's concurrency caps its creates
// under way; without one the scheduler's default applies (more than the
// small cap, at most 8).
func TestScheduler_PoolConcurrency(t *testing.T) {
	for _, tc := range []struct {
		name      string
		conc      int
		wantPeak  func(int) bool
		wantWords string
	}{
		{"capped", 2, func(p int) bool { return p == 2 }, "2"},
		{"default", 0, func(p int) bool { return p > 2 && p <= 8 }, "3..8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pool("a", 0, 0)
			p.Concurrency = tc.conc
			r := newRig(t, 0, 0, p)
			var m peakMeter
			r.provs["a"].OnCreate = m.create
			for range 12 {
				r.queue("corral")
			}
			r.pass()
			if n := r.provs["a"].Count("create"); n != 12 {
				t.Fatalf("creates = %d, want 12", n)
			}
			if got := m.get(); !tc.wantPeak(got) {
				t.Errorf("peak creates under way = %d, want %s", got, tc.wantWords)
			}
		})
	}
}

// TestScheduler_ProviderConcurrency: a provider instance's cap holds over
// all the pools that use it, each of which would allow more on its own.
func TestScheduler_ProviderConcurrency(t *testing.T) {
	a, b := pool("a", 0, 0, "a"), pool("b", 0, 0, "b")
	a.Provider, b.Provider = "shared", "shared"
	r := newRigWith(t, func(c *scheduler.Config) { c.ProviderConcurrency = map[string]int{"shared": 3} }, 0, 0, a, b)
	var m peakMeter
	r.provs["shared"].OnCreate = m.create
	for i := range 12 {
		r.queue([]string{"a", "b"}[i%2])
	}
	r.pass()
	if n := r.provs["shared"].Count("create"); n != 12 {
		t.Fatalf("creates = %d, want 12", n)
	}
	if got := m.get(); got != 3 {
		t.Errorf("peak creates under way on the shared provider = %d, want its cap 3 (each pool allows 8)", got)
	}
}
