package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
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

// jitTimer records when each generate-jitconfig answer came back.
type jitTimer struct {
	mu   sync.Mutex
	done map[string]time.Time // "last" -> when the latest answer came
	rt   http.RoundTripper
}

func (j *jitTimer) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := j.rt.RoundTrip(r)
	if err == nil && strings.HasSuffix(r.URL.Path, "/generate-jitconfig") {
		j.mu.Lock()
		j.done["last"] = time.Now()
		j.mu.Unlock()
	}
	return resp, err
}

// BenchmarkGitHubPath times one job's path through corral with the real
// GitHub client against the stand-in GitHub on 127.0.0.1: the queued
// webhook entering the handler, the JIT config call answered, and the
// provider's Create called (a no-op provider). Jobs go one at a time.
func BenchmarkGitHubPath(b *testing.B) {
	gh := standin.New(standin.Options{Seed: 1, RateLimit: 1 << 30})
	ts := httptest.NewServer(gh)
	defer ts.Close()
	defer gh.Close()
	gh.AddRepo("alpha", "app")
	gh.AddPAT("ghp_bench", "repo")
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	prov := fake.NewProvider()
	var mu sync.Mutex
	created := map[string]chan string{}
	timer := &jitTimer{done: map[string]time.Time{}, rt: http.DefaultTransport}
	prov.OnCreate = func(s corral.InstanceSpec) {
		for _, l := range s.Labels {
			if strings.HasPrefix(l, "job-") {
				mu.Lock()
				ch := created[l]
				mu.Unlock()
				if ch != nil {
					ch <- s.Name
				}
			}
		}
	}
	a, err := app.New(app.Options{Store: st, Forges: forge.NewRegistry(&http.Client{Transport: timer}, nil),
		Providers: map[string]corral.Provider{"noop": prov}, Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, Scope: corral.ScopeRepo, Path: "alpha/app",
			URL: ts.URL, Token: "ghp_bench", WebhookSecret: secret, RunnerPrefix: "corral",
			// No points budget (180 mints a minute per credential on
			// github.com, github.DefaultPointsPerMinute): this measures
			// corral's own path, as against a GHES with rate limits off.
			// TestStandin_PointsBudget shows the budget.
			Settings: map[string]string{github.SettingPointsPerMinute: "0"}}},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
			Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}, MaxLifetime: time.Hour}},
		ControllerID: "bench", NoLeader: true, SchedulerInterval: time.Minute, ReconcileInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	h := a.Handler()
	var toJIT, toCreate []time.Duration
	n := int64(0)
	b.ResetTimer()
	for b.Loop() {
		n++
		label := fmt.Sprint("job-", n)
		ch := make(chan string, 1)
		mu.Lock()
		created[label] = ch
		mu.Unlock()
		t0 := time.Now()
		send(b, h, fmt.Sprint("q-", n), jobPayload(n, "queued", ""))
		var name string
		select {
		case name = <-ch:
		case <-time.After(10 * time.Second):
			b.Fatalf("job %d: provider never asked", n)
		}
		toCreate = append(toCreate, time.Since(t0))
		timer.mu.Lock()
		var last time.Time
		for _, t := range timer.done {
			if t.After(last) {
				last = t
			}
		}
		timer.mu.Unlock()
		toJIT = append(toJIT, last.Sub(t0))
		b.StopTimer()
		send(b, h, fmt.Sprint("c-", n), jobPayload(n, "completed", name))
		b.StartTimer()
	}
	b.StopTimer()
	for _, x := range [][]time.Duration{toJIT, toCreate} {
		sort.Slice(x, func(i, j int) bool { return x[i] < x[j] })
	}
	q := func(x []time.Duration, p int) float64 { return float64(x[(len(x)-1)*p/100].Microseconds()) / 1000 }
	b.ReportMetric(q(toJIT, 50), "jit-p50-ms")
	b.ReportMetric(q(toJIT, 99), "jit-p99-ms")
	b.ReportMetric(q(toCreate, 50), "create-p50-ms")
	b.ReportMetric(q(toCreate, 99), "create-p99-ms")
}
