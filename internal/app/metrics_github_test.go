package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// brokenLister is a provider whose List always fails: every reconcile pass
// must count a provider error of kind list.
type brokenLister struct {
	corral.Provider
	lists atomic.Int64
}

func (b *brokenLister) List(context.Context, string) ([]corral.ProviderInstance, error) {
	b.lists.Add(1)
	return nil, fmt.Errorf("list: %w", corral.ErrUnavailable)
}

// TestApp_MetricsGitHub runs jobs through the GitHub stand-in (webhooks,
// JIT runners, the simulated runner) and checks the forge, provider and
// reconcile metrics against what the stand-in and the providers counted:
// forge calls per endpoint class equal the stand-in's call log, the
// rate-limit gauge equals the budget the stand-in left, a job queued before
// the webhook existed is counted as rescued by the sweep, an orphan as
// removed, a failing provider's lists as errors; no label is a job id, a
// repository or a runner name.
func TestApp_MetricsGitHub(t *testing.T) {
	const n = 4
	const token = "ghp_metrics"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	gh := standin.New(standin.Options{Seed: 12})
	ghSrv := httptest.NewServer(gh)
	defer ghSrv.Close()
	defer gh.Close()
	gh.AddRepo("acme", "app")
	gh.AddPAT(token, "repo")
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defer func() {
		if !t.Failed() {
			return
		}
		var js []corral.Job
		_ = st.View(context.Background(), func(tx corral.ReadTx) error {
			js, _ = tx.Jobs(context.Background(), corral.JobFilter{})
			for _, j := range js {
				evs, _ := tx.Timeline(context.Background(), j.ID)
				var ks []string
				for _, e := range evs {
					ks = append(ks, string(e.Kind)+":"+e.Detail)
				}
				t.Logf("job %d %s %v", j.ForgeJobID, j.State, ks)
			}
			return nil
		})
	}()

	prov := fake.NewProvider()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Runners start once the hook exists, so that every job's in_progress
	// webhook reaches corral (the rescued job's too).
	hooked := make(chan struct{})
	prov.OnCreate = func(s corral.InstanceSpec) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-hooked:
			case <-ctx.Done():
				return
			}
			env := func(k string) string { return s.Bootstrap.Env[k].Reveal() }
			if err := standin.RunRunner(ctx, env, io.Discard); err != nil && ctx.Err() == nil {
				t.Errorf("runner %s: %v", s.Name, err)
			}
		}()
	}
	// An orphan: an instance of this controller that the store never knew.
	orphan := corral.InstanceSpec{InstanceID: "orphan-1", Name: "orphan-1", ControllerID: "metrics", PoolID: "linux"}
	saved := prov.OnCreate
	prov.OnCreate = nil
	if _, err := prov.Create(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	prov.OnCreate = saved
	broken := &brokenLister{Provider: fake.NewProvider()}

	tg := corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, Scope: corral.ScopeRepo, Path: "acme/app",
		URL: ghSrv.URL, Token: token, WebhookSecret: secret, RunnerPrefix: "corral"}
	a, err := app.New(app.Options{Store: st, Forges: forge.NewRegistry(http.DefaultClient, nil),
		Providers: map[string]corral.Provider{"noop": prov, "broken": broken}, Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{tg},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
			Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}, MaxLifetime: time.Hour}},
		ControllerID: "metrics", NoLeader: true, SchedulerInterval: 100 * time.Millisecond, ReconcileInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	corralSrv := httptest.NewServer(a.Handler())
	defer corralSrv.Close()
	labels := []string{"self-hosted", "corral"}
	// Queued before the webhook exists: only the forge sweep (the one
	// reconcile pass at start; the next is an hour away) finds it.
	rescued := gh.QueueJob("acme/app", standin.JobSpec{Name: "lost", Labels: labels, Duration: 300 * time.Millisecond})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(runCtx) }()
	stopped := false
	defer func() {
		if !stopped {
			stop()
			<-done
		}
	}()
	waitUntil(t, "the first reconcile pass", func() bool {
		fams, err := a.Metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "corral_reconcile_duration_seconds" {
				return f.Metric[0].Histogram.GetSampleCount() > 0
			}
		}
		return false
	})
	gh.AddHook("acme/app", corralSrv.URL+"/webhooks/acme", secret)
	close(hooked)
	// Each job runs long enough for its in_progress webhook to arrive
	// before its completed one (GitHub does not promise the order; a job
	// completed before it was seen started has no queue wait).
	for i := range n {
		gh.QueueJob("acme/app", standin.JobSpec{Name: fmt.Sprint("build-", i), Labels: labels, Duration: 300 * time.Millisecond})
	}
	completed := func() int {
		var js []corral.Job
		_ = st.View(ctx, func(tx corral.ReadTx) error {
			var err error
			js, err = tx.Jobs(ctx, corral.JobFilter{States: []corral.JobState{corral.JobCompleted}})
			return err
		})
		return len(js)
	}
	// The stand-in's sender counts a delivery after corral answered it:
	// wait until its count rests too.
	lastSent, restSince := -1, time.Now()
	for {
		w := gh.Stats().Webhooks
		if w.Sent != lastSent {
			lastSent, restSince = w.Sent, time.Now()
		}
		if completed() == n+1 && w.Pending == 0 && prov.Len() == 0 && time.Since(restSince) > 300*time.Millisecond {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out: %d of %d jobs completed, %d instances left, stand-in %+v", completed(), n+1, prov.Len(), gh.Stats().Webhooks)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Quiet: stop corral, so that its counters and the stand-in's log are
	// read at rest.
	stop()
	<-done
	stopped = true
	var rescuedJob corral.Job
	if err := st.View(ctx, func(tx corral.ReadTx) error {
		var err error
		rescuedJob, err = tx.JobByForgeID(ctx, tg.ID, rescued)
		return err
	}); err != nil || rescuedJob.State != corral.JobCompleted {
		t.Fatalf("the job queued before the hook: %+v %v", rescuedJob, err)
	}

	stats := gh.Stats()
	scraper := mintToken(t, st, "scraper", corral.ScopeMetrics, "", 0, time.Now(), false)
	_, page := getAs(t, a.Handler(), "/metrics", scraper)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(page))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	sum := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no metric %s", name)
		}
		total := 0.0
		for _, m := range f.Metric {
			if !has(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Histogram != nil:
				total += float64(m.Histogram.GetSampleCount())
			}
		}
		return total
	}
	check := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
		t.Logf("%s = %v", what, got)
	}

	// n+1 jobs: n+1 observations in each histogram.
	check("queue wait observations", sum("corral_job_queue_wait_seconds", map[string]string{"pool": "linux"}), n+1)
	check("created phase observations", sum("corral_provisioning_phase_seconds", map[string]string{"pool": "linux", "phase": "created"}), n+1)
	check("jobs completed", sum("corral_jobs_completed_total", map[string]string{"pool": "linux"}), n+1)
	// Every delivery the stand-in sent was counted by result.
	check("webhooks counted", sum("corral_webhooks_total", nil), float64(stats.Webhooks.Sent))
	check("webhooks accepted", sum("corral_webhooks_total", map[string]string{"result": "accepted"}), float64(stats.Webhooks.Sent))

	// Forge calls per endpoint class equal the stand-in's own log.
	classOf := map[string]string{
		"POST generate-jitconfig": corral.CallJIT, "POST registration-token": corral.CallRegistration, "POST remove-token": corral.CallRegistration,
		"GET runners": corral.CallRunners, "GET runner": corral.CallRunners, "DELETE runner": corral.CallRunners,
		"GET runner labels": corral.CallRunners, "GET runner downloads": corral.CallRunners, "GET runner-groups": corral.CallRunners,
		"GET runs": corral.CallJobs, "GET run": corral.CallJobs, "GET run jobs": corral.CallJobs, "GET job": corral.CallJobs,
		"POST rerun": corral.CallJobs, "POST rerun-failed-jobs": corral.CallJobs,
		"GET hooks": corral.CallHooks, "GET hook deliveries": corral.CallHooks, "GET hook delivery": corral.CallHooks,
		"POST hook delivery attempts": corral.CallHooks, "GET rate_limit": corral.CallMeta, "GET meta": corral.CallMeta,
	}
	want := map[string]float64{}
	for name, c := range stats.Calls {
		if class, ok := classOf[name]; ok {
			want[class] += float64(c)
		} else if !strings.Contains(name, "runner ") && name != "POST runner-registration" {
			t.Errorf("stand-in call %q (%d) has no class in this test", name, c)
		}
	}
	for _, class := range corral.CallEndpoints {
		check("forge calls "+class, sum("corral_forge_calls_total", map[string]string{"target": "acme", "endpoint": class}), want[class])
	}
	if want[corral.CallJIT] != n+1 || want[corral.CallJobs] == 0 || want[corral.CallRunners] == 0 {
		t.Errorf("stand-in calls %v: want %d JIT mints and sweeps of jobs and runners", stats.Calls, n+1)
	}
	if got := sum("corral_forge_calls_total", map[string]string{"result": "ok"}); got == 0 {
		t.Error("no successful forge call counted")
	}

	// The rate-limit gauge is the budget the stand-in left the PAT, and
	// the one GET /api/v1/targets shows.
	admin := mintToken(t, st, "admin", corral.ScopeAdmin, "", 0, time.Now(), false)
	_, body := getAs(t, a.Handler(), "/api/v1/targets", admin)
	var tv struct {
		Targets []app.TargetView `json:"targets"`
	}
	if err := json.Unmarshal([]byte(body), &tv); err != nil || len(tv.Targets) != 1 || tv.Targets[0].Budget == nil {
		t.Fatalf("targets: %s %v", body, err)
	}
	budget := sum("corral_forge_rate_limit_remaining", map[string]string{"target": "acme"})
	check("rate-limit budget left", budget, float64(tv.Targets[0].Budget.Remaining))
	// The stand-in, as GitHub, charges neither GET /rate_limit nor a 304.
	charged := sum("corral_forge_calls_total", map[string]string{"target": "acme"}) -
		sum("corral_forge_calls_total", map[string]string{"target": "acme", "endpoint": corral.CallMeta}) -
		sum("corral_forge_calls_total", map[string]string{"target": "acme", "result": corral.CallNotModified})
	check("rate-limit budget left (5000 less the calls charged)", budget, 5000-charged)
	if charged == 0 || float64(stats.CallsByCredential[standin.PATCredential(token)]) < charged {
		t.Errorf("%v calls charged, the stand-in saw %d of the PAT", charged, stats.CallsByCredential[standin.PATCredential(token)])
	}

	// The reconciler's repairs and the failing provider.
	check("jobs rescued by the sweep", sum("corral_reconcile_actions_total", map[string]string{"kind": "rescued"}), 1)
	check("orphans removed", sum("corral_reconcile_actions_total", map[string]string{"kind": "orphan_removed"}), 1)
	check("provider list errors", sum("corral_provider_errors_total", map[string]string{"provider": "broken", "kind": "list"}), float64(broken.lists.Load()))
	check("provider errors of the working provider", sum("corral_provider_errors_total", map[string]string{"provider": "noop"}), 0)

	// No label value is a job id, a repository or a runner name.
	var forbidden []string
	for _, j := range gh.Jobs() {
		forbidden = append(forbidden, fmt.Sprint(j.ID), fmt.Sprint(j.RunID), j.Repo, j.RunnerName, j.Name)
	}
	forbidden = append(forbidden, "acme/app", "app", orphan.InstanceID)
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				v := l.GetValue()
				for _, bad := range forbidden {
					if bad != "" && v == bad {
						t.Errorf("%s has label %s=%q: a job id, repository or runner name", name, l.GetName(), v)
					}
				}
				if strings.HasPrefix(v, "corral-") {
					t.Errorf("%s has label %s=%q: looks like a runner name", name, l.GetName(), v)
				}
			}
		}
	}
}
