package reconciler_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge"
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
