package github_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
)

// TestClient_OpenJobsKnowing: between full sweeps the client does not list
// the jobs of a run the ledger knows; a run the ledger does not know is
// listed at every sweep; the first sweep, and one every full_sweep_every,
// lists every run.
func TestClient_OpenJobsKnowing(t *testing.T) {
	clk := corral.NewFakeClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	s, url := startStandin(t, standin.Options{Now: clk.Now})
	matrix := s.QueueRun("acme/app", standin.JobSpec{Name: "a"}, standin.JobSpec{Name: "b"}) // run 1
	single := s.QueueJob("acme/app", standin.JobSpec{Name: "c"})                             // run 2
	runOf := map[int64]int64{}
	for _, j := range s.Jobs() {
		runOf[j.ID] = j.RunID
	}
	r1, r2 := runOf[matrix[0]], runOf[single]
	c, err := github.NewClient(tgt(url, corral.ScopeRepo, "acme/app"), github.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx := deadline(t, 30*time.Second)
	listed := func() int { return s.Stats().Calls["GET run jobs"] }

	sweep := func(known map[int64]bool) (jobs []int64, skipped []int64, calls int) {
		t.Helper()
		before := listed()
		evs, sk, err := c.OpenJobsKnowing(ctx, known)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			jobs = append(jobs, ev.ForgeJobID)
		}
		slices.Sort(jobs)
		skipped = slices.Sorted(maps.Keys(sk))
		return jobs, skipped, listed() - before
	}
	all := []int64{matrix[0], matrix[1], single}

	// First sweep of the client: full, whatever the ledger knows.
	if jobs, skipped, calls := sweep(map[int64]bool{r1: true}); !slices.Equal(jobs, all) || len(skipped) != 0 || calls != 2 {
		t.Fatalf("first sweep: jobs %v skipped %v, %d run listings; want %v, none, 2", jobs, skipped, calls, all)
	}
	// Both runs known and unchanged: neither is listed.
	clk.Advance(30 * time.Second)
	if jobs, skipped, calls := sweep(map[int64]bool{r1: true, r2: true}); len(jobs) != 0 || !slices.Equal(skipped, []int64{r1, r2}) || calls != 0 {
		t.Fatalf("skim: jobs %v skipped %v, %d run listings; want none, [%d %d], 0", jobs, skipped, calls, r1, r2)
	}
	// A run the ledger does not know is listed at every sweep (a job whose
	// queued webhook was lost is found there).
	clk.Advance(30 * time.Second)
	if jobs, skipped, calls := sweep(map[int64]bool{r1: true}); !slices.Equal(jobs, []int64{single}) || !slices.Equal(skipped, []int64{r1}) || calls != 1 {
		t.Fatalf("unknown run: jobs %v skipped %v, %d run listings; want [%d], [%d], 1", jobs, skipped, calls, single, r1)
	}
	// A change in a known run (one of its jobs ended) waits for the webhook
	// or the next full sweep: updated_at moves with every job of a run.
	clk.Advance(30 * time.Second)
	if !s.CompleteJob(matrix[1], "cancelled") {
		t.Fatal("CompleteJob refused")
	}
	clk.Advance(time.Second)
	if jobs, skipped, calls := sweep(map[int64]bool{r1: true, r2: true}); len(jobs) != 0 || len(skipped) != 2 || calls != 0 {
		t.Fatalf("changed known run: jobs %v skipped %v, %d run listings; want none, both, 0", jobs, skipped, calls)
	}
	// full_sweep_every after the last full sweep: every run again.
	clk.Advance(github.DefaultFullSweepEvery)
	if jobs, skipped, calls := sweep(map[int64]bool{r1: true, r2: true}); !slices.Equal(jobs, []int64{matrix[0], single}) || len(skipped) != 0 || calls != 2 {
		t.Fatalf("full sweep: jobs %v skipped %v, %d run listings; want [%d %d], none, 2", jobs, skipped, calls, matrix[0], single)
	}
	// OpenJobs (no ledger view) always lists every run.
	if evs, err := c.OpenJobs(ctx); err != nil || len(evs) != 2 {
		t.Fatalf("OpenJobs: %d jobs, %v; want 2", len(evs), err)
	}

	// full_sweep_every "0": every sweep lists every run; a bad value is refused.
	tg := tgt(url, corral.ScopeRepo, "acme/app")
	tg.Settings[github.SettingFullSweepEvery] = "0"
	c0, err := github.NewClient(tg, github.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		before := listed()
		if _, sk, err := c0.OpenJobsKnowing(ctx, map[int64]bool{r1: true, r2: true}); err != nil || len(sk) != 0 || listed()-before != 2 {
			t.Fatalf("full_sweep_every 0: skipped %v, %d listings, %v; want none, 2", sk, listed()-before, err)
		}
		clk.Advance(30 * time.Second)
	}
	tg.Settings[github.SettingFullSweepEvery] = "often"
	if _, err := github.NewClient(tg, github.Options{}); err == nil {
		t.Fatal("full_sweep_every \"often\" accepted")
	}
}
