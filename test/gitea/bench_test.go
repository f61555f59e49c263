package gitea

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/config"
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

// BenchmarkGitea_ForgeCost counts the Gitea REST calls corral makes per job
// at its defaults (the default reconcile interval, webhooks on), through a
// counting proxy in front of Gitea (runners reach Gitea directly, so their
// own calls are not counted): CORRAL_BENCH_JOBS jobs (default 500) in one
// workflow, half to each pool (10 runners each), pushed after corral's
// first sweep. Calls are counted from the first push
// until corral has recorded every job completed and no runner is left.
// Run it with -benchtime=1x.
func BenchmarkGitea_ForgeCost(b *testing.B) {
	n := 500
	if s := os.Getenv("CORRAL_BENCH_JOBS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("CORRAL_BENCH_JOBS=%q: want a positive number", s)
		}
	}
	for b.Loop() {
		needGitea(b)
		api := newAPICounter(b, shared.URL)
		r := newRigWith(b, rigOptions{Reconcile: config.DefaultReconcileInterval.String(), APIVia: api.URL})
		for i := range r.cfg.Pools {
			r.cfg.Pools[i].MaxInstances = 10
		}
		p := r.start(b)
		waitFor(b, time.Minute, "corral's first sweep", func() bool { return api.calls() > 0 })
		time.Sleep(2 * time.Second) // the rest of the first pass
		before := api.calls()
		start := time.Now()
		// One workflow: Gitea re-runs earlier workflows of quick successive
		// pushes (their path filters see the combined change).
		var jobs [][]string
		for i := range n {
			jobs = append(jobs, []string{"self-hosted", map[bool]string{true: "corral-a", false: "corral-b"}[i%2 == 0]})
		}
		r.push(b, "cost", jobs)
		waitFor(b, 30*time.Minute, fmt.Sprintf("%d jobs completed at Gitea", n), func() bool {
			js := r.giteaJobs(b)
			done := 0
			for _, j := range js {
				if j.Status == "completed" {
					done++
				}
			}
			if len(js) > n {
				b.Fatalf("%d jobs at Gitea, want %d", len(js), n)
			}
			return done == n
		})
		ran := time.Since(start)
		waitFor(b, 2*time.Minute, "corral to record every job completed", func() bool {
			done := 0
			for _, j := range r.corralJobs(b) {
				if j.State == string(corral.JobCompleted) {
					done++
				}
			}
			return done == n
		})
		r.checkClean(b)
		calls := api.calls() - before
		failed := 0
		for _, j := range r.giteaJobs(b) {
			if j.Conclusion != "success" {
				failed++
			}
		}
		if failed > 0 {
			b.Errorf("%d of %d jobs did not succeed", failed, n)
		}
		b.ReportMetric(float64(calls)/float64(n), "calls/job")
		b.ReportMetric(ran.Seconds(), "run-s")
		b.Logf("%d jobs in %s: %d Gitea REST calls by corral (%.3f per job); all calls since the start: %s",
			n, ran.Round(time.Second), calls, float64(calls)/float64(n), api)
		p.Stop(b)
	}
}
