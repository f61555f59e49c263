package reconciler_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/corral-ci/corral/internal/reconciler"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/scheduler"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

var target = corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, RunnerPrefix: "corral-acme"}

var testPool = corral.Pool{ID: "onprem", TenantID: "default", Labels: []string{"corral"}, Provider: "fake",
	Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}, MaxInstances: 10,
	BootTimeout: time.Minute, MaxJobRuntime: time.Hour, MaxLifetime: 3 * time.Hour}

type rig struct {
	t     testing.TB
	st    corral.Store
	clk   *corral.FakeClock
	forge *fake.Forge
	prov  *fake.Provider
	led   *ledger.Ledger
	s     *scheduler.Scheduler
	r     *reconciler.Reconciler
	rec   *countRec
}

// countRec counts what the reconciler reports (reconciler.Recorder).
type countRec struct {
	mu      sync.Mutex
	actions map[string]int
	errs    map[string]int // provider/kind
}

func (c *countRec) PassDone(time.Duration, error) {}
func (c *countRec) Action(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.actions[kind]++
}
func (c *countRec) ProviderError(provider, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs[provider+"/"+kind]++
}

// counted checks the action counts (kinds not named: zero).
func (g *rig) counted(want map[string]int) {
	g.t.Helper()
	g.rec.mu.Lock()
	defer g.rec.mu.Unlock()
	for _, k := range reconciler.Actions {
		if g.rec.actions[k] != want[k] {
			g.t.Errorf("action %s counted %d times, want %d (all: %v)", k, g.rec.actions[k], want[k], g.rec.actions)
		}
	}
}

func newRig(t testing.TB) *rig { return newRigWith(t, nil) }

// newRigWith is newRig with the reconciler's configuration changed by
// edit first.
func newRigWith(t testing.TB, edit func(*reconciler.Config)) *rig {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g := &rig{t: t, st: st, clk: corral.NewFakeClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)),
		forge: fake.NewForge(), prov: fake.NewProvider(), rec: &countRec{actions: map[string]int{}, errs: map[string]int{}}}
	m, err := route.New([]corral.Pool{testPool}, route.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g.led = ledger.New(st, m, g.clk, nil)
	provs := map[string]corral.Provider{"fake": g.prov}
	g.s, err = scheduler.New(scheduler.Config{Store: st, Forges: g.forge, Providers: provs, Targets: []corral.Target{target},
		Pools: []corral.Pool{testPool}, ControllerID: "test", WarmLabels: route.WarmLabels, Covers: route.Covers, Clock: g.clk})
	if err != nil {
		t.Fatal(err)
	}
	rc := reconciler.Config{Store: st, Forges: g.forge, Providers: provs, Targets: []corral.Target{target},
		Pools: []corral.Pool{testPool}, ControllerID: "test", Ledger: g.led, Retirer: g.s, Clock: g.clk, Recorder: g.rec}
	if edit != nil {
		edit(&rc)
	}
	g.r, err = reconciler.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *rig) put(in corral.Instance) {
	g.t.Helper()
	if in.PoolID == "" {
		in.PoolID = "onprem"
	}
	in.TenantID, in.TargetID = "default", "acme"
	if in.Name == "" {
		in.Name = "corral-acme-" + in.ID
	}
	if err := g.st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutInstance(context.Background(), &in) }); err != nil {
		g.t.Fatal(err)
	}
}

// live reads every live instance.
func (g *rig) live() []corral.Instance {
	g.t.Helper()
	var ins []corral.Instance
	if err := g.st.View(context.Background(), func(tx corral.ReadTx) (err error) {
		ins, err = tx.Instances(context.Background(), corral.InstanceFilter{States: corral.LiveInstanceStates})
		return err
	}); err != nil {
		g.t.Fatal(err)
	}
	return ins
}

func (g *rig) inst(id string) corral.Instance {
	g.t.Helper()
	var in corral.Instance
	if err := g.st.View(context.Background(), func(tx corral.ReadTx) (err error) {
		in, err = tx.Instance(context.Background(), id)
		return err
	}); err != nil {
		g.t.Fatal(err)
	}
	return in
}

func (g *rig) job(forgeID int64) (corral.Job, error) {
	var j corral.Job
	err := g.st.View(context.Background(), func(tx corral.ReadTx) (err error) {
		j, err = tx.JobByForgeID(context.Background(), "acme", forgeID)
		return err
	})
	return j, err
}

func TestReconciler_ForgeSweep(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	// Job 1 came by webhook and is finished at the forge; job 2 never came.
	if _, err := g.led.Ingest(ctx, target, corral.Delivery{ID: "d1", Job: &corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: 1, Labels: []string{"corral"}}}); err != nil {
		t.Fatal(err)
	}
	g.clk.Advance(time.Second)
	g.forge.Open = []corral.JobEvent{{Action: corral.ActionQueued, ForgeJobID: 2, Labels: []string{"corral"}}}
	if err := g.r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if j, err := g.job(2); err != nil || j.State != corral.JobRouted {
		t.Fatalf("job 2 = %+v, %v; want routed from the sweep", j, err)
	}
	if j, _ := g.job(1); j.State != corral.JobCompleted {
		t.Fatalf("job 1 = %s, want completed (no longer open at the forge)", j.State)
	}
	if g.forge.Count("jobs") != 1 {
		t.Fatalf("forge job listings = %d, want 1 per target per sweep", g.forge.Count("jobs"))
	}
	if j, _ := g.job(1); j.Conclusion != "unknown" {
		t.Fatalf("job 1 concluded %q, want unknown (the forge no longer knows it)", j.Conclusion)
	}
	g.counted(map[string]int{reconciler.ActRescued: 1, reconciler.ActFinished: 1})
}

// A job missing from a listing that shifted while it was paged is still
// open: it must not be finished; a job finished at the forge gets its
// conclusion.
func TestReconciler_ForgeSweepAbsence(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	for id := int64(3); id <= 4; id++ {
		if _, err := g.led.Ingest(ctx, target, corral.Delivery{ID: fmt.Sprint("d", id), Job: &corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: id, Labels: []string{"corral"}}}); err != nil {
			t.Fatal(err)
		}
	}
	g.clk.Advance(time.Second)
	g.forge.Open = []corral.JobEvent{{Action: corral.ActionQueued, ForgeJobID: 3, Labels: []string{"corral"}}}
	g.forge.Hidden = map[int64]bool{3: true}
	g.forge.Done = map[int64]string{4: "failure"}
	if err := g.r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if j, _ := g.job(3); j.State != corral.JobRouted {
		t.Fatalf("job 3 = %s, want still routed: it is open at the forge", j.State)
	}
	if j, _ := g.job(4); j.State != corral.JobCompleted || j.Conclusion != "failure" {
		t.Fatalf("job 4 = %s %q, want completed with the forge's conclusion", j.State, j.Conclusion)
	}
	if n := g.forge.Count("job"); n != 2 {
		t.Fatalf("single-job lookups = %d, want 2 (one per job gone from the listing)", n)
	}
	g.counted(map[string]int{reconciler.ActFinished: 1})
}

// TestReconciler_ForgeSweepAbsenceGrace: with AbsentGrace, a job gone
// from the listing whose record changed within the grace is not asked
// about (its webhook is likely on the way); a later sweep, once the grace
// has passed, asks and finishes it.
func TestReconciler_ForgeSweepAbsenceGrace(t *testing.T) {
	const grace = 30 * time.Second
	g := newRigWith(t, func(c *reconciler.Config) { c.AbsentGrace = grace })
	ctx := context.Background()
	if _, err := g.led.Ingest(ctx, target, corral.Delivery{ID: "d4", Job: &corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: 4, Labels: []string{"corral"}}}); err != nil {
		t.Fatal(err)
	}
	g.forge.Done = map[int64]string{4: "success"}
	g.clk.Advance(time.Second)
	if err := g.r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if j, _ := g.job(4); j.State != corral.JobRouted || g.forge.Count("job") != 0 {
		t.Fatalf("within the grace: job 4 = %s after %d lookups, want routed and none", j.State, g.forge.Count("job"))
	}
	g.clk.Advance(grace)
	if err := g.r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if j, _ := g.job(4); j.State != corral.JobCompleted || j.Conclusion != "success" || g.forge.Count("job") != 1 {
		t.Fatalf("after the grace: job 4 = %s %q after %d lookups, want completed (success) after one", j.State, j.Conclusion, g.forge.Count("job"))
	}

	// A job whose record changed again just before the next sweep is
	// still asked about then: it is put off once only.
	if _, err := g.led.Ingest(ctx, target, corral.Delivery{ID: "d5", Job: &corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: 5, Labels: []string{"corral"}}}); err != nil {
		t.Fatal(err)
	}
	g.forge.Done[5] = "failure"
	g.clk.Advance(time.Second)
	if err := g.r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := g.forge.Count("job"); n != 1 {
		t.Fatalf("job 5 asked about within its grace (%d lookups)", n)
	}
	g.clk.Advance(time.Second) // far less than the grace
	if err := g.r.ForgeSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if j, _ := g.job(5); j.State != corral.JobCompleted || g.forge.Count("job") != 2 {
		t.Fatalf("second sweep: job 5 = %s after %d lookups, want completed: put off once only", j.State, g.forge.Count("job"))
	}
}

func TestReconciler_RunnerSweep(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	for _, name := range []string{"corral-acme-ghost", "corral-acme-busyghost", "corral-acme-s1"} {
		if _, err := g.forge.MintRunner(ctx, corral.RunnerSpec{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	g.forge.SetRunner("corral-acme-busyghost", true, true)
	g.forge.SetRunner("corral-acme-s1", true, false)
	g.put(corral.Instance{ID: "s1", State: corral.InstStarting, StartedAt: g.clk.Now()})
	if err := g.r.RunnerSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.forge.Regs["corral-acme-ghost"]; ok {
		t.Fatal("ghost registration not removed")
	}
	if _, ok := g.forge.Regs["corral-acme-busyghost"]; !ok {
		t.Fatal("busy registration removed")
	}
	if in := g.inst("s1"); in.State != corral.InstIdle {
		t.Fatalf("s1 = %s, want idle once its runner is online", in.State)
	}
	g.counted(map[string]int{reconciler.ActGhost: 1})
}

func TestReconciler_ProviderSweep(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	past := g.clk.Now().Add(-time.Minute)
	for _, id := range []string{"orphan", "exited", "deleted"} {
		if _, err := g.prov.Create(ctx, corral.InstanceSpec{InstanceID: id, PoolID: "onprem", ControllerID: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	g.prov.Exit("exited")
	g.put(corral.Instance{ID: "exited", State: corral.InstBusy, StartedAt: past})
	g.put(corral.Instance{ID: "deleted", State: corral.InstDeleted, StartedAt: past})
	g.put(corral.Instance{ID: "vanished", State: corral.InstIdle, StartedAt: past})
	if err := g.r.ProviderSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if g.prov.Len() != 1 {
		t.Fatalf("provider holds %d instances, want 1 (orphan and deleted removed)", g.prov.Len())
	}
	for _, id := range []string{"exited", "vanished"} {
		if in := g.inst(id); in.State != corral.InstDraining {
			t.Fatalf("%s = %s, want draining", id, in.State)
		}
	}
	// The orphan and the instance the store marked deleted are orphans.
	g.counted(map[string]int{reconciler.ActOrphan: 2, reconciler.ActVanished: 1})
	// The scheduler finishes the job: provider delete, registration gone.
	if err := g.s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	g.s.Wait()
	if g.prov.Len() != 0 || g.inst("exited").State != corral.InstDeleted {
		t.Fatalf("after the scheduler pass: provider %d, exited %s", g.prov.Len(), g.inst("exited").State)
	}
}

func TestReconciler_Timeouts(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	now := g.clk.Now()
	for _, name := range []string{"boot", "bootbusy"} {
		if _, err := g.forge.MintRunner(ctx, corral.RunnerSpec{Name: "corral-acme-" + name}); err != nil {
			t.Fatal(err)
		}
	}
	g.forge.SetRunner("corral-acme-bootbusy", true, true) // took a job; the webhook was lost
	g.put(corral.Instance{ID: "boot", State: corral.InstStarting, StartedAt: now.Add(-2 * time.Minute)})
	g.put(corral.Instance{ID: "bootbusy", State: corral.InstStarting, StartedAt: now.Add(-2 * time.Minute)})
	g.put(corral.Instance{ID: "long", State: corral.InstBusy, BusyAt: now.Add(-2 * time.Hour)})
	g.put(corral.Instance{ID: "old", State: corral.InstIdle, ExpiresAt: now.Add(-time.Second)})
	g.put(corral.Instance{ID: "fine", State: corral.InstBusy, BusyAt: now.Add(-time.Minute)})
	g.put(corral.Instance{ID: "late", State: corral.InstIdle, ExpiresAt: now.Add(30 * time.Minute)})
	g.put(corral.Instance{ID: "latebusy", State: corral.InstBusy, BusyAt: now, ExpiresAt: now.Add(30 * time.Minute)})
	g.put(corral.Instance{ID: "unpooled", State: corral.InstIdle, PoolID: "removed"})
	err := g.r.Timeouts(ctx)
	if err == nil {
		t.Fatal("want an error about the busy runner that was not retired")
	}
	want := map[string]corral.InstanceState{"boot": corral.InstDraining, "bootbusy": corral.InstStarting,
		"long": corral.InstDraining, "old": corral.InstDraining, "fine": corral.InstBusy,
		"late": corral.InstDraining, "latebusy": corral.InstBusy, "unpooled": corral.InstDraining}
	for id, st := range want {
		if got := g.inst(id).State; got != st {
			t.Errorf("%s = %s, want %s", id, got, st)
		}
	}
	if _, ok := g.forge.Regs["corral-acme-bootbusy"]; !ok {
		t.Fatal("busy runner's registration removed")
	}
	// bootbusy was not retired (its runner is busy): not counted.
	g.counted(map[string]int{reconciler.ActBootTimeout: 1, reconciler.ActJobTimeout: 1, reconciler.ActLifetime: 2, reconciler.ActPoolRemoved: 1})
}

// Failed provider calls are counted by provider and kind; the failed
// orphan delete is not counted as removed.
func TestReconciler_ProviderErrors(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	if _, err := g.prov.Create(ctx, corral.InstanceSpec{InstanceID: "orphan", PoolID: "onprem", ControllerID: "test"}); err != nil {
		t.Fatal(err)
	}
	g.prov.DeleteErr = fmt.Errorf("engine down: %w", corral.ErrUnavailable)
	if err := g.r.ProviderSweep(ctx); err == nil {
		t.Fatal("want the failed delete as an error")
	}
	g.counted(nil)
	if got := g.rec.errs["fake/delete"]; got != 1 || len(g.rec.errs) != 1 {
		t.Errorf("provider errors %v, want fake/delete once", g.rec.errs)
	}
}

// TestReconciler_ExitWaitsForWebhook: with ExitWait, a runner that exits
// while the ledger still shows its job waiting is left as it is (its
// instance still covers the job) until the job's webhook arrives, and the
// forge is not asked; without a webhook the forge is asked once the wait
// is over, as it is at once without ExitWait.
func TestReconciler_ExitWaitsForWebhook(t *testing.T) {
	ctx := context.Background()
	const wait = 5 * time.Second
	g := newRigWith(t, func(c *reconciler.Config) { c.ExitWait = wait })
	for _, id := range []int64{1, 2} {
		if _, err := g.led.Observe(ctx, target, corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: id, Labels: []string{"corral"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	g.s.Wait()
	live := g.live()
	inst := map[int64]corral.Instance{}
	for _, id := range []int64{1, 2} {
		j, err := g.job(id)
		if err != nil || j.State != corral.JobRouted {
			t.Fatalf("job %d: %+v %v, want routed", id, j, err)
		}
		for _, in := range live {
			if in.JobID == j.ID {
				inst[id] = in
			}
		}
		if inst[id].ID == "" {
			t.Fatalf("no instance for job %d among %+v", id, live)
		}
		g.prov.Exit(inst[id].ID)
		g.r.HandleExit(ctx, inst[id].ID)
	}
	check := func(when string, wantCalls int, wantState map[int64]corral.InstanceState) {
		t.Helper()
		if n := g.forge.Count("job"); n != wantCalls {
			t.Errorf("%s: forge asked about a job %d times, want %d", when, n, wantCalls)
		}
		for id, want := range wantState {
			if got := g.inst(inst[id].ID).State; got != want {
				t.Errorf("%s: instance of job %d is %s, want %s", when, id, got, want)
			}
		}
	}
	check("at the exits", 0, map[int64]corral.InstanceState{1: inst[1].State, 2: inst[2].State})

	// Job 1's webhooks arrive: in_progress (the exit waits on, for the
	// job's end), then completed: the ledger drains the instance as its
	// job's end, so its registration is left to the forge (no DELETE),
	// and the forge was never asked.
	if _, err := g.led.Observe(ctx, target, corral.JobEvent{Action: corral.ActionInProgress, ForgeJobID: 1, Labels: []string{"corral"},
		RunnerName: inst[1].Name}); err != nil {
		t.Fatal(err)
	}
	g.r.RecheckExits(ctx)
	check("after job 1's in_progress", 0, map[int64]corral.InstanceState{2: inst[2].State})
	if got := g.inst(inst[1].ID).State; got == corral.InstDraining {
		t.Errorf("after job 1's in_progress: instance draining already (%s), want it left for the completed webhook", g.inst(inst[1].ID).Reason)
	}
	if _, err := g.led.Observe(ctx, target, corral.JobEvent{Action: corral.ActionCompleted, ForgeJobID: 1, Labels: []string{"corral"},
		RunnerName: inst[1].Name, Conclusion: "success"}); err != nil {
		t.Fatal(err)
	}
	g.r.RecheckExits(ctx)
	check("after job 1's completed", 0, map[int64]corral.InstanceState{1: corral.InstDraining, 2: inst[2].State})
	if in := g.inst(inst[1].ID); in.Reason != ledger.ReasonJobCompleted {
		t.Errorf("instance of job 1 drained for %q, want %q (the forge deregisters the runner)", in.Reason, ledger.ReasonJobCompleted)
	}

	// The provider sweep meanwhile (it sees job 2's runner exited) waits
	// too; the scheduler makes no second runner for job 2.
	g.clk.Advance(wait - time.Second)
	if err := g.r.ProviderSweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	g.s.Wait()
	g.r.RecheckExits(ctx)
	check("before the wait is over", 0, map[int64]corral.InstanceState{2: inst[2].State})
	if n := g.prov.Count("create"); n != 2 {
		t.Errorf("provider creates = %d, want 2 (job 2 is still covered by its exited runner's instance)", n)
	}

	// Job 2's webhook never comes: once the wait is over the forge is
	// asked, says the job is done, and the instance is drained.
	g.forge.Open = []corral.JobEvent{{Action: corral.ActionCompleted, ForgeJobID: 2, Labels: []string{"corral"},
		RunnerName: inst[2].Name, Conclusion: "success"}}
	g.clk.Advance(2 * time.Second)
	g.r.RecheckExits(ctx)
	check("after the wait", 1, map[int64]corral.InstanceState{2: corral.InstDraining})
	if j, _ := g.job(2); j.State != corral.JobCompleted {
		t.Errorf("job 2 is %s, want completed (from the forge's answer)", j.State)
	}
	g.r.RecheckExits(ctx)
	check("nothing left waiting", 1, nil)
	if err := g.s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	g.s.Wait()
	if n := g.forge.Count("remove"); n != 0 {
		t.Errorf("registrations removed %d times, want 0: both jobs' ends are known, their ephemeral runners deregistered by the forge", n)
	}
}

// TestReconciler_ExitWaitRunningJob: a runner that exits while its job is
// shown running and no completed webhook comes within ExitWait is drained
// as exited (its registration removed), without asking the forge.
func TestReconciler_ExitWaitRunningJob(t *testing.T) {
	ctx := context.Background()
	const wait = 5 * time.Second
	g := newRigWith(t, func(c *reconciler.Config) { c.ExitWait = wait })
	if _, err := g.led.Observe(ctx, target, corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: 7, Labels: []string{"corral"}}); err != nil {
		t.Fatal(err)
	}
	if err := g.s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	g.s.Wait()
	live := g.live()
	if len(live) != 1 {
		t.Fatalf("live instances %+v, want one", live)
	}
	in := live[0]
	if _, err := g.led.Observe(ctx, target, corral.JobEvent{Action: corral.ActionInProgress, ForgeJobID: 7, Labels: []string{"corral"},
		RunnerName: in.Name}); err != nil {
		t.Fatal(err)
	}
	g.prov.Exit(in.ID)
	g.r.HandleExit(ctx, in.ID)
	g.clk.Advance(wait - time.Second)
	g.r.RecheckExits(ctx)
	if got := g.inst(in.ID).State; got == corral.InstDraining {
		t.Fatalf("drained %s before the wait was over", g.inst(in.ID).Reason)
	}
	g.clk.Advance(2 * time.Second)
	g.r.RecheckExits(ctx)
	if got := g.inst(in.ID); got.State != corral.InstDraining || got.Reason != "runner exited" {
		t.Errorf("after the wait: instance %s (%q), want draining (runner exited)", got.State, got.Reason)
	}
	if n := g.forge.Count("job"); n != 0 {
		t.Errorf("forge asked about the running job %d times, want 0", n)
	}
}

// TestReconciler_ExitWaitFollowsWebhookLag: when the target's webhooks
// arrive late (a burst queued at the forge), an exit waits ExitWait plus
// that lateness before it asks the forge about its job.
func TestReconciler_ExitWaitFollowsWebhookLag(t *testing.T) {
	ctx := context.Background()
	const wait, late = 5 * time.Second, 10 * time.Second
	g := newRigWith(t, func(c *reconciler.Config) { c.ExitWait = wait })
	// Another job's webhook, 10 s after its event.
	if _, err := g.led.Ingest(ctx, target, corral.Delivery{ID: "late-1", Event: "workflow_job", Job: &corral.JobEvent{
		Action: corral.ActionQueued, ForgeJobID: 9, Labels: []string{"other"}, At: g.clk.Now().Add(-late)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.led.Observe(ctx, target, corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: 1, Labels: []string{"corral"}}); err != nil {
		t.Fatal(err)
	}
	if err := g.s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	g.s.Wait()
	var in corral.Instance
	for _, l := range g.live() {
		if l.JobID != 0 {
			in = l
		}
	}
	if in.ID == "" {
		t.Fatal("no instance for job 1")
	}
	g.prov.Exit(in.ID)
	g.r.HandleExit(ctx, in.ID)
	g.clk.Advance(wait + time.Second) // past ExitWait, within ExitWait + lag
	g.r.RecheckExits(ctx)
	if n := g.forge.Count("job"); n != 0 {
		t.Fatalf("forge asked %d times %s after the exit, want 0: the webhooks run %s late", n, wait+time.Second, late)
	}
	if got := g.inst(in.ID).State; got == corral.InstDraining {
		t.Fatalf("instance drained %s after the exit, within ExitWait + lag", wait+time.Second)
	}
	g.clk.Advance(late)
	g.r.RecheckExits(ctx)
	if n := g.forge.Count("job"); n != 1 {
		t.Fatalf("forge asked %d times after ExitWait + lag, want 1", n)
	}
	if got := g.inst(in.ID).State; got != corral.InstDraining {
		t.Fatalf("instance %s after ExitWait + lag, want draining", got)
	}
}
