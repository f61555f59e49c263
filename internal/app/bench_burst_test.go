package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// BenchmarkBurst sends a burst of queued webhooks (1,000 by default) for
// one GitHub target within about a second, from 8 parallel senders, and
// times corral asking for every runner: the real GitHub client against the
// stand-in GitHub (one JIT config per job) and a provider whose Create
// takes a fixed time (0 = corral's own work only; 50 ms ≈ a cloud API
// call) and records how many calls are under way at once. Pool max 1,000.
//
// Reported per burst: first webhook → last Create called (all-requested-s),
// each job's webhook → its Create (p50, p99, max), the share of jobs asked
// for within 2 s of their webhook, and the peak of concurrent Create calls.
// Not measured here: runners coming online (the provider is no-op).
func BenchmarkBurst(b *testing.B) {
	for _, tc := range []struct {
		conc  int
		delay time.Duration
	}{{8, 0}, {8, 50 * time.Millisecond}, {64, 50 * time.Millisecond}} {
		b.Run(fmt.Sprintf("concurrency=%d/create=%s", tc.conc, tc.delay), func(b *testing.B) {
			for range b.N {
				burst(b, 1000, tc.conc, tc.delay)
			}
		})
	}
}

// burstPayload is the queued webhook of stand-in job id, labelled job-n.
func burstPayload(id, n int64) []byte {
	b, _ := json.Marshal(map[string]any{"action": "queued", "workflow_job": map[string]any{
		"id": id, "run_id": id, "name": "build", "labels": []string{"corral", fmt.Sprint("job-", n)},
		"status": "queued", "created_at": time.Now().UTC().Format(time.RFC3339)},
		"repository": map[string]any{"full_name": "alpha/app"}})
	return b
}

// burstWait bounds one burst; a miss dumps the jobs left.
const burstWait = 2 * time.Minute

// describeJob prints what the store knows of a forge job: its record,
// timeline and instances.
func describeJob(st corral.Store, forgeID int64) string {
	ctx := context.Background()
	var out strings.Builder
	_ = st.View(ctx, func(tx corral.ReadTx) error {
		j, err := tx.JobByForgeID(ctx, "acme", forgeID)
		if err != nil {
			fmt.Fprintf(&out, "forge job %d: %v\n", forgeID, err)
			return nil
		}
		fmt.Fprintf(&out, "forge job %d: %+v\n", forgeID, j)
		evs, _ := tx.Timeline(ctx, j.ID)
		for _, e := range evs {
			fmt.Fprintf(&out, "  event %+v\n", e)
		}
		ins, _ := tx.Instances(ctx, corral.InstanceFilter{JobID: j.ID})
		for _, in := range ins {
			fmt.Fprintf(&out, "  instance %+v\n", in)
		}
		return nil
	})
	return out.String()
}

func burst(b *testing.B, jobs, conc int, delay time.Duration) {
	b.StopTimer()
	gh := standin.New(standin.Options{Seed: 1, RateLimit: 1 << 30})
	ts := httptest.NewServer(gh)
	defer ts.Close()
	defer gh.Close()
	gh.AddRepo("alpha", "app")
	gh.AddPAT("ghp_bench", "repo")
	// The jobs exist at the stand-in (no hook: the senders below deliver
	// their webhooks in parallel), so sweeps and lookups find them queued.
	ids := make([]int64, jobs+1)
	for n := 1; n <= jobs; n++ {
		ids[n] = gh.QueueJob("alpha/app", standin.JobSpec{Labels: []string{"corral", fmt.Sprint("job-", n)}})
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()

	var mu sync.Mutex
	sent := make(map[string]time.Time, jobs)
	asked := make(map[string]time.Time, jobs)
	cur, peak := 0, 0
	allAsked := make(chan struct{})
	prov := fake.NewProvider()
	prov.OnCreate = func(s corral.InstanceSpec) {
		now := time.Now()
		mu.Lock()
		cur++
		peak = max(peak, cur)
		for _, l := range s.Labels {
			if strings.HasPrefix(l, "job-") {
				if _, dup := asked[l]; !dup {
					asked[l] = now
					if len(asked) == jobs {
						close(allAsked)
					}
				}
			}
		}
		mu.Unlock()
		time.Sleep(delay)
		mu.Lock()
		cur--
		mu.Unlock()
	}
	a, err := app.New(app.Options{Store: st, Forges: forge.NewRegistry(&http.Client{}, nil),
		Providers: map[string]corral.Provider{"noop": prov}, Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, Scope: corral.ScopeRepo, Path: "alpha/app",
			URL: ts.URL, Token: "ghp_bench", WebhookSecret: secret, RunnerPrefix: "corral",
			// No points budget (180 mints a minute per credential on
			// github.com, github.DefaultPointsPerMinute): this measures
			// corral's own path, as against a GHES with rate limits off.
			// TestStandin_PointsBudget shows the budget.
			Settings: map[string]string{github.SettingPointsPerMinute: "0"}}},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop", Concurrency: conc,
			MaxInstances: jobs, Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}, MaxLifetime: time.Hour}},
		ControllerID: "bench", NoLeader: true, SchedulerInterval: time.Minute, ReconcileInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	h := a.Handler()

	b.StartTimer()
	t0 := time.Now()
	const senders = 8
	var wg sync.WaitGroup
	for w := range senders {
		wg.Go(func() {
			for n := int64(w + 1); n <= int64(jobs); n += senders {
				label := fmt.Sprint("job-", n)
				mu.Lock()
				sent[label] = time.Now()
				mu.Unlock()
				send(b, h, fmt.Sprint("q-", n), burstPayload(ids[n], n))
			}
		})
	}
	wg.Wait()
	sentIn := time.Since(t0)
	select {
	case <-allAsked:
	case <-time.After(burstWait):
		mu.Lock()
		n := len(asked)
		var missing []int64
		for i := int64(1); i <= int64(jobs); i++ {
			if _, ok := asked[fmt.Sprint("job-", i)]; !ok {
				missing = append(missing, i)
			}
		}
		mu.Unlock()
		for _, id := range missing[:min(len(missing), 3)] {
			b.Log(describeJob(st, id))
		}
		b.Fatalf("only %d of %d runners asked for after %s; missing forge jobs %v", n, jobs, burstWait, missing[:min(len(missing), 20)])
	}
	b.StopTimer()

	mu.Lock()
	defer mu.Unlock()
	var lat []time.Duration
	var last time.Time
	within := 0
	for l, t := range asked {
		d := t.Sub(sent[l])
		lat = append(lat, d)
		if d <= 2*time.Second {
			within++
		}
		if t.After(last) {
			last = t
		}
	}
	slices.Sort(lat)
	q := func(p int) float64 { return lat[(len(lat)-1)*p/100].Seconds() * 1000 }
	b.ReportMetric(sentIn.Seconds(), "sent-in-s")
	b.ReportMetric(last.Sub(t0).Seconds(), "all-requested-s")
	b.ReportMetric(q(50), "p50-ms")
	b.ReportMetric(q(99), "p99-ms")
	b.ReportMetric(q(100), "max-ms")
	b.ReportMetric(100*float64(within)/float64(len(lat)), "%within-2s")
	b.ReportMetric(float64(peak), "peak-calls")
}
