package e2e

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/forge/github/standin"
)

// BenchmarkForgeCost counts the GitHub API calls a real `corral serve`
// makes per job at its defaults (reconcile interval config's default,
// webhooks on), over 500 jobs queued at once at the stand-in GitHub on a
// repository target (PAT) and an organization target (App), each job
// 50-150 ms long, pool max 50. It reports calls per job, the run's length
// and the calls per endpoint. The jobs are queued after corral's first
// forge sweep. Run it with -benchtime=1x.
func BenchmarkForgeCost(b *testing.B) {
	const jobs = 500
	for b.Loop() {
		r := newGHRigWith(b, standin.Options{Seed: 1}, 50, "")
		raw, err := os.ReadFile(r.cfg)
		if err != nil {
			b.Fatal(err)
		}
		const line = "reconcile_interval: 2s"
		if !strings.Contains(string(raw), line) {
			b.Fatalf("config has no %q", line)
		}
		raw = []byte(strings.Replace(string(raw), line, "reconcile_interval: "+config.DefaultReconcileInterval.String(), 1))
		if err := os.WriteFile(r.cfg, raw, 0o600); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		p := r.start(b)
		// A burst meets a corral that is already running: queue it after
		// the first pass's forge sweep (three run listings per repository,
		// three repositories), which lists every open run whatever the
		// ledger knows (see OpenJobsKnowing).
		for r.gh.Stats().Calls["GET runs"] < 9 {
			if time.Since(start) > time.Minute {
				b.Fatal("no forge sweep within a minute of the start")
			}
			time.Sleep(10 * time.Millisecond)
		}
		r.queue(jobs, func(i int) time.Duration { return time.Duration(50+i%100) * time.Millisecond })
		deadline := time.Now().Add(5 * time.Minute)
		for {
			n := 0
			for _, j := range r.gh.Jobs() {
				if j.Status == "completed" {
					n++
				}
			}
			if n == jobs {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d jobs completed after 5 minutes", n, jobs)
			}
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		p.Stop(b)
		st := r.gh.Stats()
		total, eps := tally(st.Calls)
		notModified, nm := tally(st.NotModified)
		b.ReportMetric(float64(total)/jobs, "calls/job")
		b.ReportMetric(float64(total-notModified)/jobs, "non-304-calls/job")
		b.ReportMetric(took.Seconds(), "run-s")
		b.Logf("%d jobs in %s: %d API calls (%.3f per job): %s; of them answered 304: %s", jobs, took.Round(time.Second), total, float64(total)/jobs, strings.Join(eps, " "), strings.Join(nm, " "))
	}
}

// tally sums calls per endpoint and lists them as sorted "endpoint=n".
func tally(calls map[string]int) (int, []string) {
	total := 0
	var eps []string
	for ep, n := range calls {
		total += n
		eps = append(eps, fmt.Sprintf("%s=%d", ep, n))
	}
	sort.Strings(eps)
	return total, eps
}
