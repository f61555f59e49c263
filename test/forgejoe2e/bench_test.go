package forgejoe2e

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// BenchmarkForgejo_QueuedToRequested measures, against the Forgejo
// stand-in with real runner processes, one job at a time, the time from
// the job queued (Queue returned) to corral's "instance_requested" stamp,
// and the calls corral made to the Forgejo API per job (the runners' own
// calls go elsewhere and are not counted), at the default
// poll_interval (2s) and at the smallest (500ms). The reconcile interval
// is 60 s so the REST sweep finds no job first. Run it with
// -benchtime=10x.
func BenchmarkForgejo_QueuedToRequested(b *testing.B) {
	for _, interval := range []string{"2s", "500ms"} {
		b.Run("poll_interval="+interval, func(b *testing.B) {
			r := newRig(b)
			r.cfg.Targets[0].PollInterval = interval
			r.cfg.Reconcile = "60s"
			p := r.start(b)
			e2etest.WaitFor(b, 30*time.Second, "the first poll", func() bool { return r.fj.Calls()["GET jobs"] > 0 })
			time.Sleep(500 * time.Millisecond) // start-up calls are not per job
			before := r.fj.Calls()
			queued := map[int64]time.Time{}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := r.fj.Queue(fmt.Sprint("bench-", i), []string{"fj-linux"}, 20*time.Millisecond)
				queued[id] = time.Now()
				r.waitDone(b, i+1)
			}
			b.StopTimer()
			e2etest.WaitFor(b, 60*time.Second, "every runner gone", func() bool {
				return len(r.fj.Runners()) == 0 && len(e2etest.Processes(r.dataDir)) == 0
			})
			after := r.fj.Calls()
			api := "http://" + r.listen + "/api/v1/jobs"
			var all struct {
				Jobs []struct {
					ID         int64 `json:"id"`
					ForgeJobID int64 `json:"forge_job_id"`
				} `json:"jobs"`
			}
			getJSON(b, api, &all)
			var lat []time.Duration
			for _, j := range all.Jobs {
				var one struct {
					Timeline []struct {
						At   time.Time `json:"at"`
						Kind string    `json:"kind"`
					} `json:"timeline"`
				}
				getJSON(b, fmt.Sprint(api, "/", j.ID), &one)
				for _, e := range one.Timeline {
					if e.Kind == "instance_requested" {
						lat = append(lat, e.At.Sub(queued[j.ForgeJobID]))
						break
					}
				}
			}
			p.Stop(b)
			if len(lat) != b.N {
				b.Fatalf("%d of %d jobs have an instance_requested stamp", len(lat), b.N)
			}
			slices.Sort(lat)
			med, p95 := lat[len(lat)/2], lat[min(len(lat)-1, (len(lat)*95+99)/100-1)]
			calls, by := 0, []string{}
			for k, v := range after {
				if d := v - before[k]; d > 0 {
					calls += d
					by = append(by, fmt.Sprintf("%s %d", k, d))
				}
			}
			sort.Strings(by)
			b.ReportMetric(float64(med.Microseconds())/1000, "ms-median")
			b.ReportMetric(float64(p95.Microseconds())/1000, "ms-p95")
			b.ReportMetric(float64(calls)/float64(b.N), "api-calls/job")
			b.Logf("poll_interval %s, %d jobs: queued→instance requested median %v, p95 %v; %d calls by corral (%.1f/job): %s",
				interval, b.N, med, p95, calls, float64(calls)/float64(b.N), strings.Join(by, ", "))
		})
	}
}
