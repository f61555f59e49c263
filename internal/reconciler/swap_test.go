package reconciler_test

import (
	"context"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// swapRig queues jobs 1 and 2 (found by the forge sweep: no webhooks), has
// the scheduler create one instance for each, brings both runners online,
// and then lets the runners take each other's jobs: the runner made for
// job 1 ran job 2 to its end, the one made for job 2 runs job 1.
func swapRig(t *testing.T) (g *rig, made1, made2 corral.Instance, job1, job2 corral.Job) {
	t.Helper()
	ctx := context.Background()
	g = newRig(t)
	g.forge.Open = []corral.JobEvent{
		{Action: corral.ActionQueued, ForgeJobID: 1, Labels: []string{"corral"}},
		{Action: corral.ActionQueued, ForgeJobID: 2, Labels: []string{"corral"}},
	}
	if err := g.r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	g.s.Wait()
	job1, _ = g.job(1)
	job2, _ = g.job(2)
	var ins []corral.Instance
	if err := g.st.View(ctx, func(tx corral.ReadTx) (err error) {
		ins, err = tx.Instances(ctx, corral.InstanceFilter{States: corral.LiveInstanceStates})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		switch in.JobID {
		case job1.ID:
			made1 = in
		case job2.ID:
			made2 = in
		}
	}
	if made1.ID == "" || made2.ID == "" || len(ins) != 2 {
		t.Fatalf("instances %+v, want one per job", ins)
	}
	g.forge.SetRunner(made1.Name, true, false)
	g.forge.SetRunner(made2.Name, true, false)
	if err := g.r.RunnerSweep(ctx); err != nil {
		t.Fatal(err)
	}
	// The swap, as the forge sees it.
	g.forge.Open = []corral.JobEvent{{Action: corral.ActionInProgress, ForgeJobID: 1, Labels: []string{"corral"}, RunnerName: made2.Name}}
	g.forge.Done = map[int64]string{2: "success"}
	g.forge.SetRunner(made2.Name, true, true)
	return g, made1, made2, job1, job2
}

func (g *rig) timeline(jobID int64) []corral.Event {
	g.t.Helper()
	var tl []corral.Event
	if err := g.st.View(context.Background(), func(tx corral.ReadTx) (err error) {
		tl, err = tx.Timeline(context.Background(), jobID)
		return err
	}); err != nil {
		g.t.Fatal(err)
	}
	return tl
}

// checkSwap: no spare runner for job 2 (another runner finished it), job 1
// runs on the runner made for job 2, and no timeline says a runner came
// online for a job it never ran.
func checkSwap(t *testing.T, g *rig, made1, made2 corral.Instance, job1, job2 corral.Job) {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		if err := g.s.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		g.s.Wait()
	}
	if n := g.prov.Count("create"); n != 2 {
		t.Errorf("provider creates = %d, want 2: a spare runner was started for a job another runner finished", n)
	}
	if j, _ := g.job(2); j.State != corral.JobCompleted {
		t.Errorf("job 2 = %s (%s), want completed", j.State, j.Reason)
	}
	if j, _ := g.job(1); j.State != corral.JobRunning || j.InstanceID != made2.ID {
		t.Errorf("job 1 = %s on %q, want running on %s", j.State, j.InstanceID, made2.ID)
	}
	for _, c := range []struct {
		job corral.Job
		ran string // the instance whose runner ran it
	}{{job1, made2.ID}, {job2, made1.ID}} {
		for _, e := range g.timeline(c.job.ID) {
			if e.Kind == corral.EvRunnerOnline && e.InstanceID != c.ran {
				t.Errorf("job %d: timeline says runner of %s came online for it, but %s ran it: %+v", c.job.ForgeJobID, e.InstanceID, c.ran, e)
			}
		}
	}
}

func TestReconciler_SwappedJobs(t *testing.T) {
	t.Run("exit of the runner that ran another job", func(t *testing.T) {
		g, made1, made2, job1, job2 := swapRig(t)
		g.prov.Exit(made1.ID)
		g.r.HandleExit(context.Background(), made1.ID)
		checkSwap(t, g, made1, made2, job1, job2)
	})
	t.Run("forge sweep sees the swap", func(t *testing.T) {
		g, made1, made2, job1, job2 := swapRig(t)
		// The scheduler wakes at once on every change the sweep makes (in
		// production it runs concurrently; here it runs in between, at the
		// worst moment, deterministically).
		g.led.OnChange = func() {
			if err := g.s.Pass(context.Background()); err != nil {
				t.Error(err)
			}
			g.s.Wait()
		}
		g.clk.Advance(1)
		if err := g.r.ForgeSweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		checkSwap(t, g, made1, made2, job1, job2)
	})
}
