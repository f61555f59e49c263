package scheduler_test

import (
	"context"
	"sync"
	"sync/atomic"
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

// TestScheduler_BurstBeyondBatch: a burst larger than one pass's batch of
// reservations is served without waiting for the next interval: the
// scheduler passes again while the batch cap left demand and room.
func TestScheduler_BurstBeyondBatch(t *testing.T) {
	r := newRigWith(t, func(c *scheduler.Config) { c.Interval = time.Hour; c.ReserveBatch = 16 }, 0, 0, pool("a", 0, 0))
	const jobs = 100
	for range jobs {
		r.queue("corral")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for r.provs["a"].Count("create") < jobs && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := r.provs["a"].Count("create"); n != jobs {
		t.Fatalf("creates = %d of %d after 20 s with a 1 h interval and a batch of 16", n, jobs)
	}
}

type limitCounter struct{ hits atomic.Int64 }

func (*limitCounter) InstanceReserved(string)         {}
func (c *limitCounter) LimitHit(string)               { c.hits.Add(1) }
func (*limitCounter) InstanceCreated(string)          {}
func (*limitCounter) PoolBackoff(string, string, int) {}
func (*limitCounter) ProviderError(string, string)    {}

// TestScheduler_FullPoolNoBusyLoop: demand beyond the batch with no room
// left (a tenant max the plan's pre-check cannot see) does not make the
// scheduler pass in a loop: each pass refused at the limits is counted,
// and a loop would count thousands in a second.
func TestScheduler_FullPoolNoBusyLoop(t *testing.T) {
	var rec limitCounter
	r := newRigWith(t, func(c *scheduler.Config) {
		c.Interval = time.Hour
		c.ReserveBatch = 4
		c.Recorder = &rec
	}, 2, 0, pool("a", 0, 0))
	for range 20 {
		r.queue("corral")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.s.Run(ctx) }()
	time.Sleep(time.Second)
	cancel()
	<-done
	if n := r.provs["a"].Count("create"); n != 2 {
		t.Fatalf("creates = %d, want 2 (the tenant max)", n)
	}
	if n := rec.hits.Load(); n == 0 || n > 12 {
		t.Errorf("limit hits in 1 s = %d, want a few (one or two passes of a batch of 4), not a loop", n)
	}
}
