package analytics

import (
	"fmt"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// BenchmarkSummarize: a 30-day report of 100,000 runs of 200 job names,
// each with 5 steps (the work GET /api/v1/analytics does after the read).
func BenchmarkSummarize(b *testing.B) {
	const n = 100_000
	since := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	runs := make([]corral.JobRun, n)
	for i := range runs {
		done := since.Add(time.Duration(i) * 30 * 24 * time.Hour / n)
		start := done.Add(-time.Duration(60+i%600) * time.Second)
		var steps []corral.Step
		for k := range 5 {
			steps = append(steps, corral.Step{Number: k + 1, Name: fmt.Sprint("step-", k), Conclusion: "success",
				StartedAt: start, CompletedAt: start.Add(time.Duration(k+1) * time.Second)})
		}
		runs[i] = corral.JobRun{JobID: int64(i), Repo: fmt.Sprint("o/r", i%20), Workflow: "CI", JobName: fmt.Sprint("job-", i%10),
			Conclusion: []string{"success", "failure", "success", "cancelled"}[i%4], QueuedAt: start.Add(-time.Duration(i%90) * time.Second),
			StartedAt: start, CompletedAt: done, Steps: steps}
	}
	b.ReportAllocs()
	for b.Loop() {
		rep := Summarize(runs, since, since.Add(30*24*time.Hour), 0)
		if rep.Runs != n || len(rep.Jobs) != 20 {
			b.Fatalf("%d runs in %d groups", rep.Runs, len(rep.Jobs))
		}
	}
}
