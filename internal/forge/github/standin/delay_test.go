package standin

import (
	"testing"
	"time"
)

// TestServer_DelayFault: with MaxDelay every webhook is held back and
// still delivered, and delays drawn per delivery put some queued webhooks
// behind later ones.
func TestServer_DelayFault(t *testing.T) {
	s, _ := newStandin(t, Options{Seed: 4})
	rc := newReceiver(t)
	s.AddHook("acme/app", rc.url, testSecret)
	s.SetFaults(Faults{MaxDelay: 200 * time.Millisecond})
	const jobs = 20
	var ids []int64
	for i := 0; i < jobs; i++ {
		ids = append(ids, s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}}))
	}
	waitFor(t, 5*time.Second, "every queued webhook", func() bool {
		n := 0
		for _, id := range ids {
			n += len(rc.jobEvents(id))
		}
		return n == jobs
	})
	var order []int64
	for _, r := range rc.all() {
		if r.d.Job != nil {
			order = append(order, r.d.Job.ForgeJobID)
		}
	}
	inversions := 0
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			inversions++
		}
	}
	if inversions == 0 {
		t.Errorf("delays put no webhook behind a later one: %v", order)
	}
	if st := s.Stats().Webhooks; st.Delayed != 2*jobs { // workflow_run requested + workflow_job queued
		t.Errorf("Delayed = %d, want %d", st.Delayed, 2*jobs)
	}
}
