package sim

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// queueN queues n jobs on t1 (no runner: only queued webhooks) and waits
// until the sender is done.
func queueN(t *testing.T, f *fixture, n int) []int64 {
	t.Helper()
	var ids []int64
	for range n {
		ids = append(ids, f.sim.QueueJob("t1", JobSpec{Labels: []string{"x"}}))
	}
	eventually(t, 10*time.Second, "webhooks sent", f.webhooksSettled)
	return ids
}

func TestServer_faults(t *testing.T) {
	faults := Faults{DropRate: 0.2, DuplicateRate: 0.2, ReorderRate: 0.2, MaxDelay: 20 * time.Millisecond}
	run := func(t *testing.T) WebhookStats {
		f := newFixture(t, Options{Seed: 42, Faults: faults})
		const n = 60
		queueN(t, f, n)
		st := f.sim.Stats().Webhooks
		if st.Dropped == 0 || st.Duplicated == 0 || st.Reordered == 0 {
			t.Fatalf("faults not exercised: %+v", st)
		}
		got := f.hooks.deliveries()
		if st.Failed != 0 || st.Sent != len(got) || len(got) != n-st.Dropped+st.Duplicated {
			t.Errorf("stats %+v, received %d", st, len(got))
		}
		// A duplicate carries the same delivery id and the same job.
		byID := map[string][]corral.Delivery{}
		for _, d := range got {
			byID[d.ID] = append(byID[d.ID], d)
		}
		dups := 0
		for id, ds := range byID {
			if len(ds) == 2 {
				dups++
				if ds[0].Job.ForgeJobID != ds[1].Job.ForgeJobID {
					t.Errorf("delivery %s names two jobs", id)
				}
			} else if len(ds) != 1 {
				t.Errorf("delivery %s received %d times", id, len(ds))
			}
		}
		if len(byID) != n-st.Dropped || dups != st.Duplicated {
			t.Errorf("%d distinct deliveries, %d duplicated; stats %+v", len(byID), dups, st)
		}
		return st
	}
	first := run(t)
	t.Run("same seed, same faults", func(t *testing.T) {
		if again := run(t); again.Dropped != first.Dropped || again.Duplicated != first.Duplicated || again.Reordered != first.Reordered {
			t.Errorf("seed 42 gave %+v then %+v", first, again)
		}
	})
}

func TestServer_faults_reorder(t *testing.T) {
	f := newFixture(t, Options{Faults: Faults{ReorderRate: 1}})
	a := f.sim.QueueJob("t1", JobSpec{}) // held back
	b := f.sim.QueueJob("t1", JobSpec{}) // sent, then a
	eventually(t, 5*time.Second, "two webhooks", func() bool { return len(f.hooks.deliveries()) == 2 })
	c := f.sim.QueueJob("t1", JobSpec{}) // held back; nothing follows: sent after holdMax
	eventually(t, 5*time.Second, "webhooks sent", f.webhooksSettled)
	var order []int64
	for _, d := range f.hooks.deliveries() {
		order = append(order, d.Job.ForgeJobID)
	}
	if want := []int64{b, a, c}; !slices.Equal(order, want) {
		t.Errorf("arrival order %v, want %v", order, want)
	}
	if st := f.sim.Stats().Webhooks; st.Reordered != 2 || st.Sent != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestServer_faults_delay(t *testing.T) {
	f := newFixture(t, Options{Faults: Faults{MinDelay: 150 * time.Millisecond, MaxDelay: 200 * time.Millisecond}})
	start := time.Now()
	f.sim.QueueJob("t1", JobSpec{})
	eventually(t, 5*time.Second, "webhook", func() bool { return len(f.hooks.deliveries()) == 1 })
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("delivered after %s, before MinDelay", el)
	}
}

func TestServer_failedDeliveriesAreNotRetried(t *testing.T) {
	t.Run("non-2xx", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.hooks.mu.Lock()
		f.hooks.status = http.StatusServiceUnavailable
		f.hooks.mu.Unlock()
		queueN(t, f, 3)
		if st := f.sim.Stats().Webhooks; st.Failed != 3 || st.Sent != 0 || len(f.hooks.deliveries()) != 3 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.hooks.srv.Close()
		queueN(t, f, 2)
		if st := f.sim.Stats().Webhooks; st.Failed != 2 || st.Sent != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("wrong secret is refused by corral", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.sim.AddTarget("t1", f.hooks.srv.URL, "not the secret")
		queueN(t, f, 1)
		f.hooks.mu.Lock()
		bad := len(f.hooks.bad)
		f.hooks.bad = nil
		f.hooks.mu.Unlock()
		if st := f.sim.Stats().Webhooks; st.Failed != 1 || bad != 1 {
			t.Errorf("stats = %+v, refused %d", st, bad)
		}
	})
}

func TestServer_Close(t *testing.T) {
	s := NewServer(Options{})
	s.Close() // nothing started: returns at once
	s.Close() // idempotent
	s.AddTarget("t", "http://127.0.0.1:1/never", hookSecret)
	if id := s.QueueJob("t", JobSpec{}); id == 0 {
		t.Fatal("no job id")
	}
	if st := s.Stats(); st.Webhooks.Pending != 0 || st.JobsQueued != 1 {
		t.Errorf("after Close: %+v", st)
	}
}
