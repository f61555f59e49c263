package gitea

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// BenchmarkGitea_QueuedToStarted measures, from corral's timeline, the time
// from the queued webhook received to the in_progress webhook received
// ("queued" and "job_started" stamps), one job at a time, with no warm
// pool: the runner is created for the job. Run it with -benchtime=10x.
func BenchmarkGitea_QueuedToStarted(b *testing.B) {
	r := newRig(b)
	p := r.start(b)
	var lat []time.Duration
	for i := 0; i < b.N; i++ {
		r.push(b, fmt.Sprintf("bench%d", i), [][]string{{"self-hosted", "corral-a"}})
		waitFor(b, 2*time.Minute, "the job completed", func() bool {
			n := 0
			for _, j := range r.giteaJobs(b) {
				if j.Status == "completed" {
					n++
				}
			}
			return n == i+1
		})
	}
	b.StopTimer()
	waitFor(b, 30*time.Second, "corral to record every job started", func() bool {
		lat = lat[:0]
		for _, j := range r.corralJobs(b) {
			var one corralJob
			r.api(b, fmt.Sprint("/jobs/", j.ID), &one)
			var q, s time.Time
			for _, e := range one.Timeline {
				switch e.Kind {
				case string(corral.EvQueued):
					q = e.At
				case string(corral.EvJobStarted):
					if s.IsZero() {
						s = e.At
					}
				}
			}
			if q.IsZero() || s.IsZero() {
				return false
			}
			lat = append(lat, s.Sub(q))
		}
		return len(lat) == b.N
	})
	slices.Sort(lat)
	med, p95 := lat[len(lat)/2], lat[min(len(lat)-1, (len(lat)*95+99)/100-1)]
	b.ReportMetric(float64(med.Milliseconds()), "ms-median")
	b.ReportMetric(float64(p95.Milliseconds()), "ms-p95")
	b.Logf("%d jobs, queued→started: median %v, p95 %v, all %v; harness: %v", len(lat), med, p95, lat, startTimes)
	r.checkClean(b)
	p.Stop(b)
}

// BenchmarkGitea_QueuedToRequested measures, per mode, the time from the
// workflow pushed (the contents API answered) to corral requesting an
// instance for the job ("instance_requested" stamp), one job at a time,
// and the Gitea REST calls corral sent per job (a counting proxy in front
// of Gitea; runners reach Gitea directly). In mode poll Gitea has no
// webhook and the poll interval is 1 s; the reconcile interval is 60 s in
// both modes, so the sweep does not find the jobs. Run it with
// -benchtime=10x.
func BenchmarkGitea_QueuedToRequested(b *testing.B) {
	for _, mode := range []string{"webhook", "poll"} {
		b.Run(mode, func(b *testing.B) {
			needGitea(b)
			api := newAPICounter(b, shared.URL)
			o := rigOptions{Reconcile: "60s", APIVia: api.URL}
			if mode == "poll" {
				o.Poll, o.PollInterval = true, "1s"
			}
			r := newRigWith(b, o)
			p := r.start(b)
			before := api.calls()
			pushed := map[int64]time.Time{} // Gitea job id -> push answered
			var lat []time.Duration
			for i := 0; i < b.N; i++ {
				r.push(b, fmt.Sprintf("bench%d", i), [][]string{{"self-hosted", "corral-a"}})
				at := time.Now()
				waitFor(b, 2*time.Minute, "the job completed", func() bool {
					n := 0
					for _, j := range r.giteaJobs(b) {
						if _, ok := pushed[j.ID]; !ok {
							pushed[j.ID] = at
						}
						if j.Status == "completed" {
							n++
						}
					}
					return n == i+1
				})
			}
			b.StopTimer()
			calls := api.calls() - before
			waitFor(b, 30*time.Second, "corral to record every job's instance request", func() bool {
				lat = lat[:0]
				for _, j := range r.corralJobs(b) {
					var one corralJob
					r.api(b, fmt.Sprint("/jobs/", j.ID), &one)
					for _, e := range one.Timeline {
						if e.Kind == string(corral.EvInstanceRequested) {
							lat = append(lat, e.At.Sub(pushed[j.ForgeJobID]))
							break
						}
					}
				}
				return len(lat) == b.N
			})
			slices.Sort(lat)
			med, p95 := lat[len(lat)/2], lat[min(len(lat)-1, (len(lat)*95+99)/100-1)]
			b.ReportMetric(float64(med.Milliseconds()), "ms-median")
			b.ReportMetric(float64(p95.Milliseconds()), "ms-p95")
			b.ReportMetric(float64(calls)/float64(b.N), "api-calls/job")
			b.Logf("mode %s, %d jobs: pushed→instance requested median %v, p95 %v, all %v; %d REST calls (%.1f/job): %s",
				mode, len(lat), med, p95, lat, calls, float64(calls)/float64(b.N), api)
			r.checkClean(b)
			p.Stop(b)
		})
	}
}
