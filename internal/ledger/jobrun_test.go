package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
)

func runs(t *testing.T, st corral.Store) []corral.JobRun {
	t.Helper()
	var out []corral.JobRun
	if err := st.View(context.Background(), func(tx corral.ReadTx) error {
		var err error
		out, err = tx.JobRuns(context.Background(), corral.JobRunFilter{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// A completed event is kept for CI analytics with the forge's names, times
// and steps; a redelivered one replaces it; a job the sweep finished with
// an unknown conclusion is kept only once its completed event comes.
func TestLedger_JobRun(t *testing.T) {
	l, st, clk := setup(t)
	ctx := context.Background()
	created := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	started, completed := created.Add(45*time.Second), created.Add(5*time.Minute)
	ingest(t, l, delivery("q1", corral.ActionQueued, 1, "", "corral"))
	done := delivery("c1", corral.ActionCompleted, 1, "", "corral")
	done.Job.Conclusion, done.Job.Workflow = "failure", "CI"
	done.Job.CreatedAt, done.Job.StartedAt, done.Job.CompletedAt, done.Job.At = created, started, completed, completed
	done.Job.Steps = []corral.Step{{Number: 1, Name: "make", Conclusion: "failure", StartedAt: started, CompletedAt: completed}}
	ingest(t, l, done)
	rs := runs(t, st)
	if len(rs) != 1 {
		t.Fatalf("%d runs after one completed job: %+v", len(rs), rs)
	}
	r := rs[0]
	if r.Repo != "acme/app" || r.Workflow != "CI" || r.JobName != "build" || r.Conclusion != "failure" || r.TenantID != "default" ||
		r.TargetID != "acme" || r.QueueTime() != 45*time.Second || r.Duration() != 255*time.Second || len(r.Steps) != 1 || r.Steps[0].Name != "make" {
		t.Errorf("run: %+v (queue %v, duration %v)", r, r.QueueTime(), r.Duration())
	}
	// The same completed delivered again under another id changes nothing twice.
	again := *done.Job
	ingest(t, l, corral.Delivery{ID: "c1-again", Event: "workflow_job", Job: &again})
	if rs := runs(t, st); len(rs) != 1 {
		t.Errorf("%d runs after a redelivery", len(rs))
	}

	// Job 2: the sweep finishes it (the forge forgot it): no analytics
	// record; its late completed webhook brings one.
	ingest(t, l, delivery("q2", corral.ActionQueued, 2, "", "corral"))
	clk.Advance(time.Minute)
	if _, err := l.Finish(ctx, target, 2, ledger.ConclusionUnknown, "sweep: the forge no longer knows it"); err != nil {
		t.Fatal(err)
	}
	if rs := runs(t, st); len(rs) != 1 {
		t.Fatalf("the sweep's unknown conclusion was recorded: %+v", rs)
	}
	late := delivery("c2", corral.ActionCompleted, 2, "", "corral")
	late.Job.Conclusion = "cancelled"
	ingest(t, l, late)
	rs = runs(t, st)
	if len(rs) != 2 || rs[1].Conclusion != "cancelled" || rs[1].Workflow != "" {
		t.Fatalf("after the late completed: %+v", rs)
	}
	// Without the forge's times, corral's own stamps stand in.
	j, _ := job(t, st, 2)
	if !rs[1].QueuedAt.Equal(j.QueuedAt) || rs[1].CompletedAt.IsZero() {
		t.Errorf("job 2's run %+v, job %+v", rs[1], j)
	}
}
