package scheduler_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/scheduler"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

var target = corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, RunnerPrefix: "corral-acme"}

type rig struct {
	t     *testing.T
	st    corral.Store
	clk   *corral.FakeClock
	forge *fake.Forge
	provs map[string]*fake.Provider
	led   *ledger.Ledger
	s     *scheduler.Scheduler
	cfg   scheduler.Config
	n     int
}

func pool(id string, prio, max int, labels ...string) corral.Pool {
	if len(labels) == 0 {
		labels = []string{"corral"}
	}
	return corral.Pool{ID: id, TenantID: "default", Labels: labels, Provider: id, Priority: prio, MaxInstances: max,
		Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 10240, Arch: "x64"}, IdleTimeout: time.Minute,
		MaxLifetime: time.Hour}
}

func newRig(t *testing.T, tenantMax, globalMax int, pools ...corral.Pool) *rig {
	t.Helper()
	return newRigWith(t, nil, tenantMax, globalMax, pools...)
}

func newRigWith(t *testing.T, mod func(*scheduler.Config), tenantMax, globalMax int, pools ...corral.Pool) *rig {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &rig{t: t, st: st, clk: corral.NewFakeClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)),
		forge: fake.NewForge(), provs: map[string]*fake.Provider{}}
	provs := map[string]corral.Provider{}
	for _, p := range pools {
		fp := fake.NewProvider()
		r.provs[p.Provider] = fp
		provs[p.Provider] = fp
	}
	m, err := route.New(pools, route.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.led = ledger.New(st, m, r.clk, nil)
	cfg := scheduler.Config{Store: st, Forges: r.forge, Providers: provs,
		Tenants: []corral.Tenant{{ID: "default", MaxInstances: tenantMax}}, Targets: []corral.Target{target},
		Pools: pools, MaxInstances: globalMax, ControllerID: "test", WarmLabels: route.WarmLabels, Covers: route.Covers,
		Clock: r.clk, BackoffBase: time.Second, BackoffMax: 8 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	r.cfg = cfg
	r.s, err = scheduler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) queue(labels ...string) int64 {
	r.t.Helper()
	r.n++
	res, err := r.led.Ingest(context.Background(), target, corral.Delivery{ID: fmt.Sprint("q", r.n), Event: "workflow_job",
		Job: &corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: int64(r.n), Labels: labels}})
	if err != nil {
		r.t.Fatal(err)
	}
	return res.JobID
}

func (r *rig) pass() {
	r.t.Helper()
	if err := r.s.Pass(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.s.Wait()
}

func (r *rig) instances(states ...corral.InstanceState) []corral.Instance {
	r.t.Helper()
	var ins []corral.Instance
	if err := r.st.View(context.Background(), func(tx corral.ReadTx) (err error) {
		ins, err = tx.Instances(context.Background(), corral.InstanceFilter{States: states})
		return err
	}); err != nil {
		r.t.Fatal(err)
	}
	return ins
}

func (r *rig) job(id int64) corral.Job {
	r.t.Helper()
	var j corral.Job
	if err := r.st.View(context.Background(), func(tx corral.ReadTx) (err error) {
		j, err = tx.Job(context.Background(), id)
		return err
	}); err != nil {
		r.t.Fatal(err)
	}
	return j
}

func byPool(ins []corral.Instance) map[string]int {
	m := map[string]int{}
	for _, in := range ins {
		m[in.PoolID]++
	}
	return m
}

func TestScheduler_Pass(t *testing.T) {
	t.Run("a routed job gets one instance with one forge call", func(t *testing.T) {
		r := newRig(t, 0, 0, pool("onprem", 10, 4))
		id := r.queue("self-hosted", "corral", "run-42")
		r.pass()
		ins := r.instances(corral.InstStarting)
		if len(ins) != 1 || ins[0].JobID != id || ins[0].ProviderID == "" {
			t.Fatalf("instances = %+v", ins)
		}
		if got := r.forge.Count("mint"); got != 1 {
			t.Fatalf("forge mint calls = %d, want 1", got)
		}
		spec := r.provs["onprem"].Specs[ins[0].ID]
		if spec.Bootstrap.Env["TOKEN"] == "" || spec.Deadline.IsZero() || !strings.HasPrefix(spec.Name, "corral-acme-") {
			t.Fatalf("spec = %+v", spec)
		}
		if strings.Join(spec.Labels, ",") != "self-hosted,corral,run-42" {
			t.Fatalf("runner labels = %v, want exactly the job's", spec.Labels)
		}
		r.pass() // nothing more to do
		if got := len(r.instances(corral.LiveInstanceStates...)); got != 1 {
			t.Fatalf("second pass made %d instances, want 1", got)
		}
	})
	t.Run("pool max holds and the job says why it waits", func(t *testing.T) {
		r := newRig(t, 0, 0, pool("onprem", 10, 3))
		var ids []int64
		for i := 0; i < 10; i++ {
			ids = append(ids, r.queue("corral"))
		}
		r.pass()
		if n := len(r.instances(corral.LiveInstanceStates...)); n != 3 {
			t.Fatalf("live instances = %d, want 3", n)
		}
		if j := r.job(ids[9]); !strings.Contains(j.Reason, "pool onprem is full (3/3)") {
			t.Fatalf("reason = %q", j.Reason)
		}
	})
	t.Run("priorities overflow to the next pool", func(t *testing.T) {
		r := newRig(t, 0, 0, pool("onprem", 10, 2), pool("cloud", 20, 5))
		for i := 0; i < 4; i++ {
			r.queue("corral")
		}
		r.pass()
		if got := byPool(r.instances(corral.LiveInstanceStates...)); got["onprem"] != 2 || got["cloud"] != 2 {
			t.Fatalf("instances per pool = %v, want onprem 2, cloud 2", got)
		}
	})
	t.Run("tenant and global limits", func(t *testing.T) {
		r := newRig(t, 3, 0, pool("a", 10, 10), pool("b", 20, 10))
		for i := 0; i < 6; i++ {
			r.queue("corral")
		}
		r.pass()
		if n := len(r.instances(corral.LiveInstanceStates...)); n != 3 {
			t.Fatalf("tenant max 3: live = %d", n)
		}
		g := newRig(t, 0, 2, pool("a", 10, 10))
		for i := 0; i < 6; i++ {
			g.queue("corral")
		}
		g.pass()
		if n := len(g.instances(corral.LiveInstanceStates...)); n != 2 {
			t.Fatalf("global max 2: live = %d", n)
		}
	})
	t.Run("a failing pool backs off and others serve", func(t *testing.T) {
		rec := &provErrs{n: map[string]int{}}
		r := newRigWith(t, func(c *scheduler.Config) { c.Recorder = rec }, 0, 0, pool("onprem", 10, 5), pool("cloud", 20, 5))
		r.provs["onprem"].CreateErr = fmt.Errorf("hypervisor down: %w", corral.ErrUnavailable)
		id := r.queue("corral")
		r.pass() // onprem fails
		if got := r.provs["onprem"].Count("create"); got != 1 {
			t.Fatalf("onprem creates = %d", got)
		}
		if rec.get("onprem/create") != 1 || len(rec.n) != 1 {
			t.Fatalf("provider errors %v, want onprem/create once", rec.n)
		}
		r.pass() // failed instance deleted; the job goes to cloud while onprem rests
		r.pass()
		busy := r.instances(corral.InstStarting)
		if len(busy) != 1 || busy[0].PoolID != "cloud" || busy[0].JobID != id {
			t.Fatalf("starting = %+v, want one in cloud for the job", busy)
		}
		if got := r.provs["onprem"].Count("create"); got != 1 {
			t.Fatalf("onprem retried during its rest: %d creates", got)
		}
		if n := len(r.instances(corral.InstDraining)); n != 0 {
			t.Fatalf("%d failed instances not cleaned up", n)
		}
		// After the rest onprem is tried again, and recovers.
		r.provs["onprem"].CreateErr = nil
		r.clk.Advance(9 * time.Second)
		r.queue("corral")
		r.pass()
		if got := byPool(r.instances(corral.InstStarting)); got["onprem"] != 1 {
			t.Fatalf("after the rest: %v, want one instance in onprem", got)
		}
	})
	t.Run("a mint failure keeps the job waiting", func(t *testing.T) {
		r := newRig(t, 0, 0, pool("onprem", 10, 5))
		r.forge.MintErr = fmt.Errorf("forge 502: %w", corral.ErrUnavailable)
		id := r.queue("corral")
		r.pass()
		r.pass()
		if j := r.job(id); j.State != corral.JobRouted {
			t.Fatalf("job = %s, want still routed", j.State)
		}
		if r.provs["onprem"].Count("create") != 0 {
			t.Fatal("provider called without a credential")
		}
		r.forge.MintErr = nil
		r.clk.Advance(10 * time.Second)
		r.pass()
		if n := len(r.instances(corral.InstStarting)); n != 1 {
			t.Fatalf("after the forge recovered: %d starting, want 1", n)
		}
	})
}

func TestScheduler_Warm(t *testing.T) {
	t.Run("min idle by schedule", func(t *testing.T) {
		p := pool("onprem", 10, 10)
		p.MinIdle = 1
		p.Schedules = []corral.IdleSchedule{{Days: []time.Weekday{time.Wednesday}, From: 9 * time.Hour, To: 17 * time.Hour, MinIdle: 3}}
		r := newRig(t, 0, 0, p) // 2026-11-25 is a Wednesday, 10:00 UTC
		r.pass()
		ins := r.instances(corral.LiveInstanceStates...)
		if len(ins) != 3 {
			t.Fatalf("warm instances in the window = %d, want 3", len(ins))
		}
		for _, in := range ins {
			if in.JobID != 0 || !route.Covers(in.Labels, []string{"self-hosted", "corral", "linux"}) {
				t.Fatalf("warm instance %+v", in)
			}
		}
		// Outside the window: 1; idle ones above it go after the idle timeout,
		// once the forge has removed their registration (not busy).
		r.clk.Set(time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC))
		for _, in := range ins {
			r.forge.SetRunner(in.Name, true, false)
		}
		r.forge.SetRunner(ins[0].Name, true, true) // busy at the forge: never killed
		r.pass()
		if n := len(r.instances(corral.InstDraining, corral.InstDeleted)); n < 1 || n > 2 {
			t.Fatalf("retired = %d, want 1 or 2 of 3 (the busy one kept)", n)
		}
		if _, ok := r.forge.Regs[ins[0].Name]; !ok {
			t.Fatal("busy runner's registration removed")
		}
	})
	t.Run("headroom percent above demand", func(t *testing.T) {
		p := pool("onprem", 10, 20)
		p.HeadroomPercent = 50
		r := newRig(t, 0, 0, p)
		for i := 0; i < 4; i++ {
			r.queue("corral", fmt.Sprint("unique-", i))
		}
		r.pass()
		ins := r.instances(corral.LiveInstanceStates...)
		warm := 0
		for _, in := range ins {
			if in.JobID == 0 {
				warm++
			}
		}
		if len(ins) != 6 || warm != 2 {
			t.Fatalf("instances = %d (warm %d), want 4 for jobs + 2 headroom", len(ins), warm)
		}
	})
	t.Run("busy instances count, though a pass does not read them", func(t *testing.T) {
		// A pass reads busy instances as counts per pool (InstanceCounts):
		// they still set the headroom and fill the pool.
		p := pool("onprem", 10, 7)
		p.HeadroomPercent = 50
		r := newRig(t, 0, 0, p)
		now := r.clk.Now()
		if err := r.st.Update(context.Background(), func(tx corral.Tx) error {
			for i := 0; i < 4; i++ {
				in := corral.Instance{ID: fmt.Sprint("busy-", i), Name: fmt.Sprint("busy-", i), PoolID: "onprem", TenantID: "default",
					TargetID: target.ID, State: corral.InstBusy, JobID: int64(1000 + i), Provider: "onprem", ProviderID: fmt.Sprint("p-", i),
					CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
				if err := tx.PutInstance(context.Background(), &in); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		r.pass()
		if got := len(r.instances(corral.InstPending, corral.InstStarting, corral.InstIdle)); got != 2 {
			t.Fatalf("warm instances = %d, want 2 (50 %% of 4 busy)", got)
		}
		var ids []int64
		for i := 0; i < 3; i++ {
			ids = append(ids, r.queue("corral", fmt.Sprint("unique-", i)))
		}
		r.pass()
		if n := len(r.instances(corral.LiveInstanceStates...)); n != 7 {
			t.Fatalf("live instances = %d, want 7 (the pool's max)", n)
		}
		if j := r.job(ids[2]); !strings.Contains(j.Reason, "pool onprem is full (7/7)") {
			t.Fatalf("reason = %q, want the pool full with the busy ones counted", j.Reason)
		}
	})
	t.Run("a waiting job takes a free warm runner", func(t *testing.T) {
		p := pool("onprem", 10, 10)
		p.MinIdle = 1
		r := newRig(t, 0, 0, p)
		r.pass()
		id := r.queue("self-hosted", "corral")
		r.pass()
		ins := r.instances(corral.LiveInstanceStates...)
		bound := 0
		for _, in := range ins {
			if in.JobID == id {
				bound++
			}
		}
		if bound != 1 || r.forge.Count("mint") != 2 {
			t.Fatalf("bound = %d, mints = %d; want the warm runner given to the job and one new warm one", bound, r.forge.Count("mint"))
		}
	})
}

func TestScheduler_Adopt(t *testing.T) {
	r := newRig(t, 0, 0, pool("onprem", 10, 5))
	id := r.queue("corral")
	// A create cut short by a crash: the row says one attempt, the provider
	// has the instance for one row and not for the other.
	now := r.clk.Now()
	for _, iid := range []string{"made", "lost"} {
		in := corral.Instance{ID: iid, Name: "corral-acme-" + iid, PoolID: "onprem", TenantID: "default", TargetID: "acme",
			State: corral.InstPending, Attempts: 1, Labels: []string{"corral"}, JobID: id, CreatedAt: now, UpdatedAt: now}
		if err := r.st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutInstance(context.Background(), &in) }); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = r.provs["onprem"].Create(context.Background(), corral.InstanceSpec{InstanceID: "made", PoolID: "onprem", ControllerID: "test"})
	r.pass()
	r.pass()
	made := r.instances(corral.InstStarting)
	got := map[string]bool{}
	for _, in := range made {
		got[in.ID] = true
	}
	if !got["made"] || !got["lost"] {
		t.Fatalf("starting = %v, want made adopted and lost created again", got)
	}
	if n := r.provs["onprem"].Count("create"); n != 2 {
		t.Fatalf("provider creates = %d, want 2 (the test's and the retry of lost)", n)
	}
}

func TestScheduler_New(t *testing.T) {
	if _, err := scheduler.New(scheduler.Config{}); err == nil {
		t.Fatal("New accepted an empty config")
	}
}

// An instance whose engine stays unreachable is written off as lost after
// a while, so it stops holding a place under the limits.
func TestScheduler_Lost(t *testing.T) {
	r := newRig(t, 0, 0, pool("onprem", 10, 2))
	now := r.clk.Now()
	for id, drained := range map[string]time.Duration{"old": 6 * time.Minute, "new": time.Minute, "never": time.Minute} {
		in := corral.Instance{ID: id, Name: "corral-acme-" + id, PoolID: "onprem", TenantID: "default", TargetID: "acme",
			State: corral.InstDraining, Reason: "job completed", DrainAt: now.Add(-drained), CreatedAt: now, ProviderID: "p-" + id}
		if id == "never" { // its create failed as the engine went: the provider never made it
			in.ProviderID, in.Reason = "", "create failed"
		}
		if err := r.st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutInstance(context.Background(), &in) }); err != nil {
			t.Fatal(err)
		}
	}
	r.provs["onprem"].DeleteErr = fmt.Errorf("engine down: %w", corral.ErrUnavailable)
	r.pass()
	got := map[string]corral.Instance{}
	for _, in := range r.instances() {
		got[in.ID] = in
	}
	if in := got["old"]; in.State != corral.InstDeleted || !strings.HasPrefix(in.Reason, "lost") {
		t.Fatalf("old = %s %q, want deleted as lost", in.State, in.Reason)
	}
	if in := got["new"]; in.State != corral.InstDraining {
		t.Fatalf("new = %s, want still draining (its engine may come back)", in.State)
	}
	if in := got["never"]; in.State != corral.InstDeleted || !strings.HasPrefix(in.Reason, "lost") {
		t.Fatalf("never = %s %q, want deleted as lost at once (nothing of it was made that a wait could save)", in.State, in.Reason)
	}
}

func TestScheduler_ManagedRunner(t *testing.T) {
	p := pool("onprem", 10, 4)
	p.ManagedRunner = true
	dir := "/var/lib/corral/runners/github/2.331.0/linux-x64"
	var fail error
	r := newRigWith(t, func(c *scheduler.Config) {
		c.RunnerDir = func(corral.Pool, corral.Target) (string, error) { return dir, fail }
	}, 0, 0, p)
	r.queue("corral")
	r.pass()
	for _, spec := range r.provs["onprem"].Specs {
		if spec.RunnerDir != dir || spec.Image != dir {
			t.Fatalf("spec runner dir %q image %q, want the managed release for both", spec.RunnerDir, spec.Image)
		}
	}
	if len(r.provs["onprem"].Specs) != 1 {
		t.Fatalf("%d creates, want 1", len(r.provs["onprem"].Specs))
	}
	// No acceptable release: the job waits and says why; nothing is minted.
	fail = fmt.Errorf("no release of github for linux-x64 yet: %w", corral.ErrNotFound)
	mints := r.forge.Count("mint")
	id := r.queue("corral", "other")
	r.pass()
	r.pass()
	if r.forge.Count("mint") != mints {
		t.Fatal("a runner credential was minted with no runner to give it")
	}
	if j := r.job(id); j.State != corral.JobRouted || !strings.Contains(j.Reason, "no release") {
		t.Fatalf("job = %s %q, want routed and saying why it waits", j.State, j.Reason)
	}
}

// provErrs counts the provider errors a scheduler reports.
type provErrs struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *provErrs) InstanceReserved(string)         {}
func (p *provErrs) LimitHit(string)                 {}
func (p *provErrs) InstanceCreated(string)          {}
func (p *provErrs) PoolBackoff(string, string, int) {}
func (p *provErrs) ProviderError(provider, kind string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n[provider+"/"+kind]++
}
func (p *provErrs) get(k string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[k]
}
