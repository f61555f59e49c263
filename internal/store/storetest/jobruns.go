package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// testJobRuns: a job run round-trips (times to the microsecond, unknown
// times as zero, steps), a second record of a job replaces the first, and
// the list filters by tenant and completion window, oldest first, capped.
func testJobRuns(t *testing.T, s corral.Store) {
	steps := []corral.Step{
		{Number: 1, Name: "Set up job", Conclusion: "success", StartedAt: T0.Add(time.Second), CompletedAt: T0.Add(3 * time.Second)},
		{Number: 2, Name: "Run make", Conclusion: "failure", StartedAt: T0.Add(3 * time.Second), CompletedAt: T0.Add(40 * time.Second)},
	}
	runs := []corral.JobRun{
		{JobID: 1, TenantID: "acme", TargetID: "t1", Repo: "acme/app", Workflow: "CI", JobName: "build", Conclusion: "cancelled",
			CompletedAt: T0}, // replaced below
		{JobID: 1, TenantID: "acme", TargetID: "t1", Repo: "acme/app", Workflow: "CI", JobName: "build", Conclusion: "failure",
			QueuedAt: T0.Add(-time.Minute), StartedAt: T0, CompletedAt: T0.Add(time.Minute), Steps: steps},
		{JobID: 2, TenantID: "acme", TargetID: "t1", Repo: "acme/app", JobName: "lint", Conclusion: "success",
			CompletedAt: T0.Add(2 * time.Minute)},
		{JobID: 3, TenantID: "other", TargetID: "t2", Repo: "other/x", Workflow: "CI", JobName: "build", Conclusion: "success",
			StartedAt: T0, CompletedAt: T0.Add(30 * time.Second)},
	}
	for _, r := range runs {
		update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.PutJobRun(ctx, r) })
	}
	list := func(f corral.JobRunFilter) []corral.JobRun {
		t.Helper()
		var out []corral.JobRun
		if err := s.View(context.Background(), func(tx corral.ReadTx) error {
			var err error
			out, err = tx.JobRuns(context.Background(), f)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ids := func(rs []corral.JobRun) []int64 {
		var out []int64
		for _, r := range rs {
			out = append(out, r.JobID)
		}
		return out
	}
	all := list(corral.JobRunFilter{})
	if got := ids(all); !reflect.DeepEqual(got, []int64{3, 1, 2}) {
		t.Fatalf("all runs: %v, want [3 1 2] (oldest completion first)", got)
	}
	got := all[1]
	want := runs[1]
	want.QueuedAt, want.StartedAt, want.CompletedAt = want.QueuedAt.Truncate(time.Microsecond), want.StartedAt.Truncate(time.Microsecond), want.CompletedAt.Truncate(time.Microsecond)
	if !got.QueuedAt.Equal(want.QueuedAt) || !got.StartedAt.Equal(want.StartedAt) || !got.CompletedAt.Equal(want.CompletedAt) {
		t.Errorf("times: got %v %v %v, want %v %v %v", got.QueuedAt, got.StartedAt, got.CompletedAt, want.QueuedAt, want.StartedAt, want.CompletedAt)
	}
	if got.Conclusion != "failure" || got.Workflow != "CI" || got.JobName != "build" || got.Repo != "acme/app" || got.TargetID != "t1" || len(got.Steps) != 2 {
		t.Errorf("run 1: %+v", got)
	}
	for i, st := range got.Steps {
		if st.Name != steps[i].Name || st.Number != steps[i].Number || st.Conclusion != steps[i].Conclusion || st.Duration() != steps[i].Duration() {
			t.Errorf("step %d: %+v, want %+v", i, st, steps[i])
		}
	}
	if got.Duration() != time.Minute || got.QueueTime() != time.Minute {
		t.Errorf("run 1 duration %v queue %v, want 1m 1m", got.Duration(), got.QueueTime())
	}
	if r := all[2]; !r.QueuedAt.IsZero() || !r.StartedAt.IsZero() || r.Duration() != -1 {
		t.Errorf("run 2 has unknown times: %+v", r)
	}
	if got := ids(list(corral.JobRunFilter{TenantID: "acme"})); !reflect.DeepEqual(got, []int64{1, 2}) {
		t.Errorf("tenant acme: %v, want [1 2]", got)
	}
	if got := ids(list(corral.JobRunFilter{Since: T0.Add(time.Minute), Until: T0.Add(2 * time.Minute)})); !reflect.DeepEqual(got, []int64{1}) {
		t.Errorf("window [T0+1m, T0+2m): %v, want [1]", got)
	}
	if got := ids(list(corral.JobRunFilter{Limit: 2})); !reflect.DeepEqual(got, []int64{3, 1}) {
		t.Errorf("limit 2: %v, want [3 1]", got)
	}
}
