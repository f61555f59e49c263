package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
)

// TestMissedWebhooks drops 30% of the forge's webhooks: every job must
// still start within two reconcile periods of being queued, found by the
// forge sweep when its queued webhook never came.
func TestMissedWebhooks(t *testing.T) {
	const jobs = 40
	const period = 2 * time.Second
	// Room for every job at once: the bound below is about finding the
	// jobs whose webhook was dropped, not about waiting for room (an
	// exited runner's instance may wait up to reconciler.DefaultExitWait
	// for its job's webhook, which 30% drops often withhold).
	r := newRig(t, standin.Options{Seed: 30}, setup{PoolMax: jobs, Reconcile: period.String()})
	r.SetFaults(standin.Faults{DropRate: 0.3})
	p := r.start(t)
	// GitHub's timestamps are whole seconds: the test keeps its own.
	queuedAt := map[int64]time.Time{}
	for i := 0; i < jobs; i++ {
		// A unique label per job: only the runner made for it can take it,
		// so a job whose webhook was dropped waits for the forge sweep.
		queuedAt[r.queue(i, simJob(i), 100*time.Millisecond)] = time.Now()
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, 60*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	if d := r.Stats().Webhooks.Dropped; d < jobs/5 {
		t.Fatalf("only %d webhooks dropped; the test needs about 30%%", d)
	}
	// Served = corral asked for the job's runner. The runner's own boot
	// time comes on top and grows with the machine's load, so it gets a
	// bound of its own.
	api := "http://" + r.listen + "/api/v1/jobs"
	ledger := map[int64]int64{} // forge job id -> corral job id
	var all struct {
		Jobs []struct {
			ID         int64 `json:"id"`
			ForgeJobID int64 `json:"forge_job_id"`
		} `json:"jobs"`
	}
	getJSON(t, api, &all)
	for _, j := range all.Jobs {
		ledger[j.ForgeJobID] = j.ID
	}
	var worstServed, worstStarted time.Duration
	for _, j := range r.Jobs() {
		var tl struct {
			Timeline []struct {
				At   time.Time `json:"at"`
				Kind string    `json:"kind"`
			} `json:"timeline"`
		}
		getJSON(t, fmt.Sprintf("%s/%d", api, ledger[j.ID]), &tl)
		var served time.Time
		for _, e := range tl.Timeline {
			if e.Kind == "instance_requested" {
				served = e.At
				break
			}
		}
		if served.IsZero() {
			t.Errorf("job %d: corral never asked for a runner", j.ID)
			continue
		}
		q := queuedAt[j.ID]
		wait := served.Sub(q)
		worstServed = max(worstServed, wait)
		// StartedAt is whole seconds (GitHub's): up to 1 s early.
		started := j.StartedAt.Add(time.Second).Sub(q)
		worstStarted = max(worstStarted, started)
		if wait > 2*period {
			t.Errorf("job %d waited %s for corral to serve it, more than two reconcile periods (%s)", j.ID, wait, 2*period)
		}
		if started > 2*period+15*time.Second {
			t.Errorf("job %d started %s after it was queued", j.ID, started)
		}
	}
	t.Logf("%d jobs, %d webhooks dropped: longest queued->served %s, queued->started %s", jobs, r.Stats().Webhooks.Dropped, worstServed, worstStarted)
	r.checkClean(t, jobs)
	p.Stop(t)
}

// TestOutOfOrder sends every webhook late, duplicated or reordered: the
// ledger must end exactly where the forge is.
func TestOutOfOrder(t *testing.T) {
	const jobs = 40
	r := newRig(t, standin.Options{Seed: 31}, setup{PoolMax: 10, Reconcile: "1s"})
	r.SetFaults(standin.Faults{DuplicateRate: 0.4, ReorderRate: 0.4, MaxDelay: 300 * time.Millisecond})
	p := r.start(t)
	for i := 0; i < jobs; i++ {
		r.queue(i, []string{"corral"}, 50*time.Millisecond)
	}
	waitFor(t, 60*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	r.checkClean(t, jobs)
	st := r.Stats().Webhooks
	if st.Duplicated == 0 || st.Reordered == 0 || st.Delayed == 0 {
		t.Fatalf("faults not exercised: %+v", st)
	}
	api := "http://" + r.listen + "/api/v1/jobs"
	waitFor(t, 10*time.Second, "the ledger to show every job completed", func() bool {
		return countJobs(t, api, "completed") == jobs
	})
	for _, id := range jobIDs(t, api) {
		tl := timeline(t, fmt.Sprintf("%s/%d", api, id))
		n := 0
		for _, k := range tl {
			if k == "job_completed" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("job %d has %d job_completed stamps: %v", id, n, tl)
		}
	}
	p.Stop(t)
}
