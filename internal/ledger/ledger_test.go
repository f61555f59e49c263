package ledger_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

var target = corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub}

func pools() []corral.Pool {
	return []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "process",
		Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 20480, Arch: "x64"},
		Max:    corral.Flavor{CPU: 8, MemoryMB: 16384, DiskMB: 102400}}}
}

func setup(t *testing.T) (*ledger.Ledger, corral.Store, *corral.FakeClock) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, err := route.New(pools(), route.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clk := corral.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	return ledger.New(st, m, clk, nil), st, clk
}

func delivery(id string, a corral.JobAction, job int64, runner string, labels ...string) corral.Delivery {
	return corral.Delivery{ID: id, Event: "workflow_job", Job: &corral.JobEvent{
		Action: a, ForgeJobID: job, RunID: 7, Labels: labels, RunnerName: runner, Repo: "acme/app", Name: "build",
		Conclusion: map[bool]string{true: "success"}[a == corral.ActionCompleted]}}
}

func job(t *testing.T, st corral.Store, forgeID int64) (corral.Job, []corral.Event) {
	t.Helper()
	var j corral.Job
	var tl []corral.Event
	err := st.View(context.Background(), func(tx corral.ReadTx) error {
		var err error
		if j, err = tx.JobByForgeID(context.Background(), target.ID, forgeID); err != nil {
			return err
		}
		tl, err = tx.Timeline(context.Background(), j.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return j, tl
}

func kinds(tl []corral.Event) []corral.EventKind {
	var ks []corral.EventKind
	for _, e := range tl {
		ks = append(ks, e.Kind)
	}
	return ks
}

func ingest(t *testing.T, l *ledger.Ledger, d corral.Delivery) ledger.Result {
	t.Helper()
	res, err := l.Ingest(context.Background(), target, d)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestLedger_Ingest(t *testing.T) {
	t.Run("queued is routed", func(t *testing.T) {
		l, st, _ := setup(t)
		woke := 0
		l.OnChange = func() { woke++ }
		ingest(t, l, delivery("d1", corral.ActionQueued, 5_000_000_001, "", "self-hosted", "corral", "4cpu8gb"))
		j, tl := job(t, st, 5_000_000_001)
		if j.State != corral.JobRouted || len(j.Routes) != 1 || j.Routes[0].PoolID != "linux" || j.Routes[0].Flavor.CPU != 4 {
			t.Fatalf("job = %+v", j)
		}
		if got := kinds(tl); len(got) != 2 || got[0] != corral.EvQueued || got[1] != corral.EvRouted {
			t.Fatalf("timeline = %v", got)
		}
		if woke != 1 {
			t.Fatalf("scheduler woken %d times, want 1", woke)
		}
	})
	t.Run("duplicate delivery changes nothing", func(t *testing.T) {
		l, st, _ := setup(t)
		ingest(t, l, delivery("d1", corral.ActionQueued, 1, "", "corral"))
		res := ingest(t, l, delivery("d1", corral.ActionCompleted, 1, "", "corral"))
		if !res.Duplicate {
			t.Fatal("second delivery with the same id not reported as duplicate")
		}
		j, tl := job(t, st, 1)
		if j.State != corral.JobRouted || len(tl) != 2 {
			t.Fatalf("duplicate changed the ledger: state %s, %d events", j.State, len(tl))
		}
	})
	t.Run("unroutable records the reason", func(t *testing.T) {
		l, st, _ := setup(t)
		ingest(t, l, delivery("d1", corral.ActionQueued, 2, "", "self-hosted", "gpu"))
		j, _ := job(t, st, 2)
		if j.State != corral.JobUnroutable || j.Reason == "" {
			t.Fatalf("job = %s %q", j.State, j.Reason)
		}
		ingest(t, l, delivery("d2", corral.ActionQueued, 3, "", "corral", "64cpu"))
		j, _ = job(t, st, 3)
		if j.State != corral.JobUnroutable || j.Reason == "" {
			t.Fatalf("64cpu job = %s %q, want refused with a reason", j.State, j.Reason)
		}
	})
	t.Run("completed before queued", func(t *testing.T) {
		l, st, _ := setup(t)
		ingest(t, l, delivery("c", corral.ActionCompleted, 9, "corral-x", "corral"))
		ingest(t, l, delivery("q", corral.ActionQueued, 9, "", "corral"))
		ingest(t, l, delivery("p", corral.ActionInProgress, 9, "corral-x", "corral"))
		j, tl := job(t, st, 9)
		if j.State != corral.JobCompleted || j.Conclusion != "success" {
			t.Fatalf("job = %s %q", j.State, j.Conclusion)
		}
		if got := kinds(tl); len(got) != 2 || got[1] != corral.EvJobCompleted {
			t.Fatalf("timeline = %v, want queued, job_completed only", got)
		}
	})
	t.Run("in_progress before queued", func(t *testing.T) {
		l, st, _ := setup(t)
		ingest(t, l, delivery("p", corral.ActionInProgress, 10, "elsewhere-1", "corral"))
		ingest(t, l, delivery("q", corral.ActionQueued, 10, "", "corral"))
		j, _ := job(t, st, 10)
		if j.State != corral.JobRunning || j.RunnerName != "elsewhere-1" {
			t.Fatalf("job = %s on %q, want running on elsewhere-1", j.State, j.RunnerName)
		}
	})
}

func putInstance(t *testing.T, st corral.Store, in corral.Instance) {
	t.Helper()
	if err := st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutInstance(context.Background(), &in) }); err != nil {
		t.Fatal(err)
	}
}

func instance(t *testing.T, st corral.Store, id string) corral.Instance {
	t.Helper()
	var in corral.Instance
	if err := st.View(context.Background(), func(tx corral.ReadTx) (err error) {
		in, err = tx.Instance(context.Background(), id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return in
}

// A runner created for job A takes job B (same labels): B binds to it, A
// loses its instance, and the instance made for B is freed for others.
func TestLedger_BindingSwap(t *testing.T) {
	l, st, clk := setup(t)
	ingest(t, l, delivery("a", corral.ActionQueued, 100, "", "corral"))
	ingest(t, l, delivery("b", corral.ActionQueued, 200, "", "corral"))
	a, _ := job(t, st, 100)
	b, _ := job(t, st, 200)
	now := clk.Now()
	putInstance(t, st, corral.Instance{ID: "ia", Name: "corral-ia", PoolID: "linux", TenantID: "default", TargetID: "acme",
		State: corral.InstStarting, JobID: a.ID, Labels: []string{"corral"}, CreatedAt: now})
	putInstance(t, st, corral.Instance{ID: "ib", Name: "corral-ib", PoolID: "linux", TenantID: "default", TargetID: "acme",
		State: corral.InstStarting, JobID: b.ID, Labels: []string{"corral"}, CreatedAt: now})

	ingest(t, l, delivery("b-run", corral.ActionInProgress, 200, "corral-ia", "corral"))
	ia, ib := instance(t, st, "ia"), instance(t, st, "ib")
	if ia.State != corral.InstBusy || ia.JobID != b.ID {
		t.Fatalf("ia = %s job %d, want busy with job B (%d)", ia.State, ia.JobID, b.ID)
	}
	if ib.JobID != 0 || ib.State != corral.InstStarting {
		t.Fatalf("ib = %s job %d, want starting and freed", ib.State, ib.JobID)
	}
	b, tl := job(t, st, 200)
	if b.State != corral.JobRunning || b.InstanceID != "ia" {
		t.Fatalf("job B = %s on %q", b.State, b.InstanceID)
	}
	if got := kinds(tl); got[len(got)-2] != corral.EvRunnerOnline || got[len(got)-1] != corral.EvJobStarted {
		t.Fatalf("timeline = %v", got)
	}

	ingest(t, l, delivery("b-done", corral.ActionCompleted, 200, "corral-ia", "corral"))
	ia = instance(t, st, "ia")
	if ia.State != corral.InstDraining || ia.Reason != "job completed" {
		t.Fatalf("ia = %s %q, want draining after its job completed", ia.State, ia.Reason)
	}
	if a, _ = job(t, st, 100); a.State != corral.JobRouted {
		t.Fatalf("job A = %s, want still routed (waiting for a runner)", a.State)
	}
}

func TestLedger_Reroute(t *testing.T) {
	l, st, _ := setup(t)
	ingest(t, l, delivery("g", corral.ActionQueued, 1, "", "self-hosted", "gpu"))
	gpu := append(pools(), corral.Pool{ID: "gpu", TenantID: "default", Labels: []string{"gpu"}, Provider: "process",
		Flavor: corral.Flavor{CPU: 8, MemoryMB: 32768, Arch: "x64"}})
	m, err := route.New(gpu, route.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.SetRouter(m)
	n, err := l.Reroute(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Reroute = %d, %v; want 1 job", n, err)
	}
	if j, _ := job(t, st, 1); j.State != corral.JobRouted || j.Routes[0].PoolID != "gpu" {
		t.Fatalf("job = %s %+v", j.State, j.Routes)
	}
}

func TestLedger_Finish(t *testing.T) {
	l, st, _ := setup(t)
	ingest(t, l, delivery("q", corral.ActionQueued, 1, "", "corral"))
	changed, err := l.Finish(context.Background(), target, 1, "unknown", "sweep")
	if err != nil || !changed {
		t.Fatalf("Finish = %v, %v", changed, err)
	}
	if changed, _ = l.Finish(context.Background(), target, 1, "unknown", "sweep"); changed {
		t.Fatal("finishing a completed job changed it again")
	}
	if j, _ := job(t, st, 1); j.State != corral.JobCompleted || j.Conclusion != "unknown" {
		t.Fatalf("job = %s %q", j.State, j.Conclusion)
	}
	// The completed webhook, late, still brings the conclusion; nothing else.
	ingest(t, l, delivery("late", corral.ActionCompleted, 1, "", "corral"))
	j, tl := job(t, st, 1)
	if j.Conclusion != "success" || len(tl) != 3 {
		t.Fatalf("after the late webhook: %q with %d events, want success and 3", j.Conclusion, len(tl))
	}
}
