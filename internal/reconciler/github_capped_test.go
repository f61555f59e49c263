package reconciler_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/reconciler"
)

// GitHub caps a run search by status (1,000 runs; lowered here to 20) and
// offers no finer search within one second: the sweep's list is then
// short of what is queued. The forge sweep must not finish the jobs that
// fell off the capped list: it asks GitHub about each of them instead.
func TestReconciler_ForgeSweepCappedGitHubList(t *testing.T) {
	g := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gh := standin.New(standin.Options{RunListCap: 20, RateLimit: 1 << 20})
	srv := httptest.NewServer(gh)
	defer srv.Close()
	defer gh.Close()
	gh.AddRepo("acme", "app")
	gh.AddPAT("ghp_capped", "repo")
	for range 25 { // one second: no created= search splits them
		gh.QueueJob("acme/app", standin.JobSpec{Name: "build", Labels: []string{"self-hosted", "corral"}})
	}
	tg := corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, Scope: corral.ScopeRepo, Path: "acme/app",
		URL: srv.URL, Token: "ghp_capped", RunnerPrefix: "corral-acme"}
	r, err := reconciler.New(reconciler.Config{Store: g.st, Forges: forge.NewRegistry(&http.Client{Timeout: 10 * time.Second}, nil),
		Providers: nil, Targets: []corral.Target{tg}, Pools: []corral.Pool{testPool}, ControllerID: "test",
		Ledger: g.led, Retirer: g.s, Clock: g.clk})
	if err != nil {
		t.Fatal(err)
	}
	jobs := gh.Jobs()
	for _, j := range jobs { // as their webhooks brought them
		if _, err := g.led.Observe(ctx, tg, corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: j.ID, RunID: j.RunID,
			RunAttempt: 1, Repo: j.Repo, Name: j.Name, Labels: j.Labels, At: j.QueuedAt}); err != nil {
			t.Fatal(err)
		}
	}
	g.clk.Advance(time.Second)
	if err := r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if cj, err := g.job(j.ID); err != nil || cj.State == corral.JobCompleted {
			t.Fatalf("job %d = %+v, %v: finished while still queued at GitHub", j.ID, cj, err)
		}
	}
	if n := gh.Stats().Calls["GET job"]; n != 5 {
		t.Fatalf("%d single-job lookups, want 5 (the jobs past the cap)", n)
	}
}

// oneForge serves one forge client for every target.
type oneForge struct{ f corral.Forge }

func (o oneForge) Forge(corral.Target) (corral.Forge, error) { return o.f, nil }
func (oneForge) Parser(corral.TargetKind) (corral.WebhookParser, error) {
	return github.Parser{}, nil
}

// Between full sweeps the forge sweep leaves unlisted the runs whose jobs
// the ledger holds and that did not change: the jobs of such a run are not
// taken as absent (no single-job lookup), a matrix job whose queued webhook
// was lost beside an announced sibling is found at the next full sweep, and
// a job whose run closed unannounced is still asked about and finished.
func TestReconciler_ForgeSweepSkimsKnownRuns(t *testing.T) {
	g := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gh := standin.New(standin.Options{Now: g.clk.Now, RateLimit: 1 << 20})
	srv := httptest.NewServer(gh)
	defer srv.Close()
	defer gh.Close()
	gh.AddRepo("acme", "app")
	gh.AddPAT("ghp_skim", "repo")
	tg := corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, Scope: corral.ScopeRepo, Path: "acme/app",
		URL: srv.URL, Token: "ghp_skim", RunnerPrefix: "corral-acme"}
	client, err := github.NewClient(tg, github.Options{Clock: g.clk})
	if err != nil {
		t.Fatal(err)
	}
	r, err := reconciler.New(reconciler.Config{Store: g.st, Forges: oneForge{client}, Targets: []corral.Target{tg},
		Pools: []corral.Pool{testPool}, ControllerID: "test", Ledger: g.led, Retirer: g.s, Clock: g.clk})
	if err != nil {
		t.Fatal(err)
	}
	labels := []string{"self-hosted", "corral"}
	announce := func(id int64) { // as its queued webhook would
		t.Helper()
		for _, j := range gh.Jobs() {
			if j.ID != id {
				continue
			}
			if _, err := g.led.Observe(ctx, tg, corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: j.ID, RunID: j.RunID,
				RunAttempt: 1, Repo: j.Repo, Name: j.Name, Labels: j.Labels, At: j.QueuedAt}); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("job %d not at the stand-in", id)
	}
	calls := func(name string) int { return gh.Stats().Calls[name] }

	single := gh.QueueJob("acme/app", standin.JobSpec{Name: "lint", Labels: labels})
	announce(single)
	g.clk.Advance(time.Second)
	if err := r.ForgeSweep(ctx); err != nil { // the client's first sweep: full
		t.Fatal(err)
	}
	matrix := gh.QueueRun("acme/app", standin.JobSpec{Name: "test (1)", Labels: labels}, standin.JobSpec{Name: "test (2)", Labels: labels})
	announce(matrix[0]) // matrix[1]'s webhook is lost
	if !gh.CompleteJob(single, "cancelled") {
		t.Fatal("CompleteJob refused")
	}
	g.clk.Advance(30 * time.Second)
	listings, lookups := calls("GET run jobs"), calls("GET job")
	if err := r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := calls("GET run jobs") - listings; n != 0 {
		t.Fatalf("skim sweep listed %d runs' jobs, want 0 (the one open run is known and unchanged)", n)
	}
	if n := calls("GET job") - lookups; n != 1 {
		t.Fatalf("skim sweep looked up %d jobs, want 1 (the cancelled one; not the skipped run's)", n)
	}
	if j, err := g.job(single); err != nil || j.State != corral.JobCompleted {
		t.Fatalf("cancelled job whose run closed unannounced = %+v, %v; want completed", j, err)
	}
	if j, err := g.job(matrix[0]); err != nil || j.State == corral.JobCompleted {
		t.Fatalf("announced job of the skipped run = %+v, %v; want still open", j, err)
	}
	if _, err := g.job(matrix[1]); err == nil {
		t.Fatal("the unannounced sibling was found by a skim sweep: the run was listed")
	}
	g.clk.Advance(github.DefaultFullSweepEvery)
	if err := r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if j, err := g.job(matrix[1]); err != nil || j.State == corral.JobCompleted {
		t.Fatalf("unannounced sibling after the full sweep = %+v, %v; want recorded, open", j, err)
	}
}
