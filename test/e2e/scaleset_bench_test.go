package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// scaleSetCalls are the stand-in's names of the Actions service calls
// (corral's scale-set listener and minting; runners make none of them).
var scaleSetCalls = []string{"POST runner-registration", "GET scaleset runnergroups", "GET runnerscalesets", "POST runnerscalesets",
	"GET runnerscaleset", "DELETE runnerscaleset", "POST scaleset session", "PATCH scaleset session", "DELETE scaleset session",
	"POST acquirejobs", "POST scaleset generatejitconfig", "GET scaleset message", "DELETE scaleset message"}

// corralCalls counts the calls corral made to the stand-in: REST calls
// with its PAT plus the Actions service calls, and names the busiest.
func corralCalls(g *e2etest.GitHub) (int, map[string]int) {
	st := g.Stats()
	by := map[string]int{"REST (PAT)": st.CallsByCredential[standin.PATCredential(g.Token)]}
	n := by["REST (PAT)"]
	for _, k := range scaleSetCalls {
		if c := st.Calls[k]; c > 0 {
			by[k] = c
			n += c
		}
	}
	return n, by
}

func diffCalls(after, before map[string]int) string {
	var parts []string
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, d))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// BenchmarkScaleSet_QueuedToRequested measures against the stand-in
// GitHub, one job at a time, the time from the job queued (QueueJob
// returned) to corral's "instance_requested" stamp, and the calls corral
// made to GitHub per job (REST with its PAT plus the Actions service), in
// webhook mode and in scale-set mode (no webhook; the stand-in holds a
// long poll 50 s when nothing comes, as GitHub's broker does). The
// reconcile interval is 60 s, so the REST sweep finds no job first. Run it
// with -benchtime=20x.
func BenchmarkScaleSet_QueuedToRequested(b *testing.B) {
	for _, mode := range []string{"webhook", "scaleset"} {
		b.Run(mode, func(b *testing.B) {
			g, listen, dataDir, cfg := scaleSetRig(b, standin.Options{ScaleSetLongPoll: 50 * time.Second}, 4)
			cfg.Reconcile = "60s"
			if mode == "webhook" {
				tg := g.Target("e2e", "corral-ss")
				cfg.Targets = []e2etest.Target{tg}
				g.Hook(listen, "e2e")
			}
			p := e2etest.Start(b, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(b, cfg), Listen: listen, Env: g.Env()})
			if mode == "scaleset" {
				e2etest.WaitFor(b, 30*time.Second, "the listener's session", func() bool { return g.Stats().Calls["POST scaleset session"] > 0 })
			}
			time.Sleep(500 * time.Millisecond) // start-up calls (probes, sweeps) are not per job
			before, beforeBy := corralCalls(g)
			queued := map[int64]time.Time{}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := g.Queue(fmt.Sprint("bench-", i), []string{"corral-ss"}, 20*time.Millisecond)
				queued[id] = time.Now()
				e2etest.WaitFor(b, 60*time.Second, "the job completed", func() bool { return g.Count(standin.StatusCompleted) == i+1 })
			}
			b.StopTimer()
			e2etest.WaitFor(b, 30*time.Second, "every runner gone", func() bool {
				return g.Stats().Registered == 0 && len(runnerProcesses(dataDir)) == 0
			})
			after, afterBy := corralCalls(g)
			var lat []time.Duration
			var all struct {
				Jobs []struct {
					ID         int64 `json:"id"`
					ForgeJobID int64 `json:"forge_job_id"`
				} `json:"jobs"`
			}
			apiJSON(b, "http://"+listen+"/api/v1/jobs", &all)
			for _, j := range all.Jobs {
				var one struct {
					Timeline []struct {
						At   time.Time `json:"at"`
						Kind string    `json:"kind"`
					} `json:"timeline"`
				}
				apiJSON(b, fmt.Sprint("http://", listen, "/api/v1/jobs/", j.ID), &one)
				for _, e := range one.Timeline {
					if e.Kind == string(corral.EvInstanceRequested) {
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
			calls := after - before
			b.ReportMetric(float64(med.Microseconds())/1000, "ms-median")
			b.ReportMetric(float64(p95.Microseconds())/1000, "ms-p95")
			b.ReportMetric(float64(calls)/float64(b.N), "api-calls/job")
			b.Logf("mode %s, %d jobs: queued→instance requested median %v, p95 %v; %d calls to GitHub (%.1f/job): %s",
				mode, b.N, med, p95, calls, float64(calls)/float64(b.N), diffCalls(afterBy, beforeBy))
		})
	}
}

func apiJSON(b testing.TB, url string, v any) {
	b.Helper()
	resp, err := e2etest.APIGet(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		b.Fatal(err)
	}
}
