package analytics

import (
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

var day1 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func run(id int64, workflow, job, conclusion string, completed time.Time, queue, dur time.Duration, steps ...corral.Step) corral.JobRun {
	r := corral.JobRun{JobID: id, TenantID: "acme", Repo: "acme/app", Workflow: workflow, JobName: job, Conclusion: conclusion,
		StartedAt: completed.Add(-dur), CompletedAt: completed, Steps: steps}
	if queue >= 0 {
		r.QueuedAt = r.StartedAt.Add(-queue)
	}
	return r
}

func step(n int, name, conclusion string, at time.Time, d time.Duration) corral.Step {
	return corral.Step{Number: n, Name: name, Conclusion: conclusion, StartedAt: at, CompletedAt: at.Add(d)}
}

func secs(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

// Every figure of a report of known runs, worked out by hand.
func TestSummarize(t *testing.T) {
	day3 := day1.Add(48 * time.Hour)
	runs := []corral.JobRun{
		run(1, "CI", "build", "success", day1, 1*time.Second, 10*time.Second,
			step(1, "checkout", "success", day1, time.Second), step(2, "test", "success", day1, 9*time.Second)),
		run(2, "CI", "build", "success", day1.Add(time.Hour), 2*time.Second, 20*time.Second),
		run(3, "CI", "build", "failure", day3, 3*time.Second, 30*time.Second,
			step(1, "checkout", "success", day3, 3*time.Second), step(2, "test", "failure", day3, 27*time.Second)),
		run(4, "CI", "build", "cancelled", day3.Add(time.Hour), 100*time.Second, 40*time.Second),
		run(5, "CI", "lint", "success", day1, -1, 5*time.Second),
		run(6, "CI", "lint", "success", day3, -1, 5*time.Second),
		run(7, "Nightly", "build", "failure", day3, 50*time.Second, 100*time.Second),
	}
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rep := Summarize(runs, since, since.Add(72*time.Hour), 2)
	if rep.Runs != 7 || len(rep.Jobs) != 3 {
		t.Fatalf("runs %d, groups %d: %+v", rep.Runs, len(rep.Jobs), rep.Jobs)
	}
	b, l, n := rep.Jobs[0], rep.Jobs[1], rep.Jobs[2]
	if b.Workflow != "CI" || b.Job != "build" || l.Job != "lint" || n.Workflow != "Nightly" {
		t.Fatalf("group order: %+v", rep.Jobs)
	}
	type fig struct {
		count, success, failure, cancelled, other int
		rate, d50, d95, q50, q95                  float64
	}
	got := func(f Figures) fig {
		return fig{f.Count, f.Success, f.Failure, f.Cancelled, f.Other, f.SuccessRate,
			secs(f.DurationP50), secs(f.DurationP95), secs(f.QueueP50), secs(f.QueueP95)}
	}
	for _, c := range []struct {
		name string
		got  fig
		want fig
	}{
		// durations 10 20 30 40: p50 = 2nd = 20, p95 = 4th = 40; queues 1 2 3 100.
		{"CI/build", got(b.Figures), fig{4, 2, 1, 1, 0, 0.5, 20, 40, 2, 100}},
		// no queued time known: no queue percentiles (-1 here).
		{"CI/lint", got(l.Figures), fig{2, 2, 0, 0, 0, 1, 5, 5, -1, -1}},
		{"Nightly/build", got(n.Figures), fig{1, 0, 1, 0, 0, 0, 100, 100, 50, 50}},
		// day 1: runs 1, 2, 5; day 2: none; day 3: runs 3, 4, 6, 7.
		{"day 1", got(rep.Days[0].Figures), fig{3, 3, 0, 0, 0, 1, 10, 20, 1, 2}},
		{"day 2", got(rep.Days[1].Figures), fig{0, 0, 0, 0, 0, 0, -1, -1, -1, -1}},
		// durations 5 30 40 100; queues 3 50 100 (run 6 has none).
		{"day 3", got(rep.Days[2].Figures), fig{4, 1, 2, 1, 0, 0.25, 30, 100, 50, 100}},
	} {
		if c.got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, c.got, c.want)
		}
	}
	if len(rep.Days) != 3 || rep.Days[0].Date != "2026-12-01" || rep.Days[1].Date != "2026-12-02" || rep.Days[2].Date != "2026-12-03" {
		t.Errorf("days: %+v", rep.Days)
	}
	if b.LastConclusion != "cancelled" || !b.LastAt.Equal(day3.Add(time.Hour)) {
		t.Errorf("last of CI/build: %s at %v", b.LastConclusion, b.LastAt)
	}
	// Steps: checkout 1 s and 3 s; test 9 s (success) and 27 s (failure).
	if len(b.Steps) != 2 || len(l.Steps) != 0 {
		t.Fatalf("steps: %+v / %+v", b.Steps, l.Steps)
	}
	co, te := b.Steps[0], b.Steps[1]
	if co.Name != "checkout" || co.Count != 2 || co.Failure != 0 || secs(co.DurationP50) != 1 || secs(co.DurationP95) != 3 {
		t.Errorf("checkout: %+v p50 %v p95 %v", co, secs(co.DurationP50), secs(co.DurationP95))
	}
	if te.Name != "test" || te.Number != 2 || te.Count != 2 || te.Failure != 1 || secs(te.DurationP50) != 9 || secs(te.DurationP95) != 27 {
		t.Errorf("test: %+v p50 %v p95 %v", te, secs(te.DurationP50), secs(te.DurationP95))
	}
	// Slowest by p95 (top 2): Nightly/build 100 s, CI/build 40 s.
	if len(rep.Slowest) != 2 || rep.Slowest[0].Workflow != "Nightly" || rep.Slowest[1].Job != "build" || rep.Slowest[1].Workflow != "CI" {
		t.Errorf("slowest: %+v", rep.Slowest)
	}
	// Most failing: one failure each; Nightly/build never succeeds, so first.
	if len(rep.MostFailing) != 2 || rep.MostFailing[0].Workflow != "Nightly" || rep.MostFailing[1].Workflow != "CI" {
		t.Errorf("most failing: %+v", rep.MostFailing)
	}
}

func TestSummarize_empty(t *testing.T) {
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rep := Summarize(nil, since, since.Add(24*time.Hour), 0)
	if rep.Runs != 0 || len(rep.Jobs) != 0 || len(rep.Days) != 1 || rep.Days[0].Count != 0 || rep.Days[0].DurationP50 != nil {
		t.Errorf("empty report: %+v", rep)
	}
}

func TestPercentile(t *testing.T) {
	ds := func(s ...int) []time.Duration {
		var out []time.Duration
		for _, x := range s {
			out = append(out, time.Duration(x)*time.Second)
		}
		return out
	}
	for _, c := range []struct {
		in   []time.Duration
		q    float64
		want float64
	}{
		{ds(5), 0.5, 5}, {ds(5), 0.95, 5},
		{ds(4, 1, 3, 2), 0.5, 2}, {ds(4, 1, 3, 2), 0.95, 4},
		{ds(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20), 0.95, 19},
		{ds(1, 2, 3), 0.5, 2},
	} {
		if got := secs(Percentile(c.in, c.q)); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.in, c.q, got, c.want)
		}
	}
	if Percentile(nil, 0.5) != nil {
		t.Error("Percentile of nothing is not nil")
	}
}
