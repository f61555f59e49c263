package listener

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/scaleset"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

const pat = "ghp_listener_test_token"

// rig is the stand-in GitHub, a repository target in scale-set mode, a
// pool "ss" (labels corral-ss) and the real ledger on SQLite, observed.
type rig struct {
	s    *standin.Server
	t    corral.Target
	p    corral.Pool
	gc   *github.Client
	st   corral.Store
	obs  *counting
	l    *Listener
	stop func()
	done chan struct{}
}

// counting forwards to the ledger and counts what each job was handed.
type counting struct {
	next Observer
	mu   sync.Mutex
	n    map[int64]map[corral.JobAction]int
}

func (c *counting) ObserveVia(ctx context.Context, t corral.Target, ev corral.JobEvent, source string) error {
	if source != "scaleset" {
		return errors.New("source " + source)
	}
	if err := c.next.ObserveVia(ctx, t, ev, source); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ev.ForgeJobID] == nil {
		c.n[ev.ForgeJobID] = map[corral.JobAction]int{}
	}
	c.n[ev.ForgeJobID][ev.Action]++
	return nil
}

func (c *counting) count(id int64, a corral.JobAction) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id][a]
}

type oneForge struct{ f corral.Forge }

func (o oneForge) Forge(corral.Target) (corral.Forge, error) { return o.f, nil }
func (o oneForge) Parser(corral.TargetKind) (corral.WebhookParser, error) {
	return nil, errors.New("no webhooks in scale-set mode")
}

func newRig(t *testing.T, opt standin.Options, poolMax int) *rig {
	t.Helper()
	s := standin.New(opt)
	s.AddRepo("acme", "app")
	s.AddPAT(pat, "repo")
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	tg := corral.Target{ID: "t", TenantID: "default", Kind: corral.KindGitHub, Scope: corral.ScopeRepo, Path: "acme/app",
		URL: hs.URL, Token: pat, RunnerPrefix: "corral-", Mode: corral.ModeScaleSet}
	gc, err := github.NewClient(tg, github.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p := corral.Pool{ID: "ss", TenantID: "default", Labels: []string{"corral-ss"}, Provider: "process", MaxInstances: poolMax,
		Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}}
	m, err := route.New([]corral.Pool{p}, route.Options{})
	if err != nil {
		t.Fatal(err)
	}
	obs := &counting{next: ledger.New(st, m, nil, nil), n: map[int64]map[corral.JobAction]int{}}
	l, err := New(Config{Forges: oneForge{gc}, Observer: obs, Store: st, Targets: []corral.Target{tg}, Pools: []corral.Pool{p},
		Owner: "test", MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{s: s, t: tg, p: p, gc: gc, st: st, obs: obs, l: l}
}

func (r *rig) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		if err := r.l.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	r.stop = func() { cancel(); <-r.done }
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
}

func (r *rig) status() Status {
	for _, s := range r.l.Statuses() {
		if s.Pool == r.p.ID {
			return s
		}
	}
	return Status{}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) jobStates(t *testing.T) map[int64]corral.JobState {
	var js []corral.Job
	if err := r.st.View(context.Background(), func(tx corral.ReadTx) error {
		var err error
		js, err = tx.Jobs(context.Background(), corral.JobFilter{TargetID: r.t.ID})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	out := map[int64]corral.JobState{}
	for _, j := range js {
		out[j.ForgeJobID] = j.State
	}
	return out
}

// runner starts a runner minted through the listener (the scheduler's
// path) and runs it until ctx ends or it finished its job.
func (r *rig) runner(ctx context.Context, t *testing.T, name string, wg *sync.WaitGroup) {
	b, err := r.l.Forges(oneForge{r.gc}).Forge(r.t)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := b.MintRunner(ctx, corral.RunnerSpec{Name: name, Labels: []string{"corral-ss"}, Pool: r.p.ID})
	if err != nil {
		t.Fatalf("mint %s: %v", name, err)
	}
	if boot.Env[github.EnvJITConfig] == "" || len(boot.Command) == 0 {
		t.Fatalf("bootstrap %+v lacks the JIT config or the command", boot)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = standin.RunRunner(ctx, func(k string) string {
			if k == standin.EnvJITConfig {
				return boot.Env[github.EnvJITConfig].Reveal()
			}
			return ""
		}, io.Discard)
	}()
}

// Five jobs through a pool of max 2: the listener acquires only what the
// pool has room for (its open ledger jobs count), holds the rest and
// acquires them as jobs complete; each job goes to the ledger once per
// state (queued, in_progress, completed) and ends completed there; the
// runners are minted through the scale set. A clean stop deletes the
// session: a new one opens at once although sessions live a minute.
func TestListener_RoomAndStates(t *testing.T) {
	r := newRig(t, standin.Options{ScaleSetLongPoll: 200 * time.Millisecond, SessionTTL: time.Minute}, 2)
	r.run(t)
	waitFor(t, 10*time.Second, "a session open", func() bool { return r.status().Session })
	var ids []int64
	for i := 0; i < 5; i++ {
		ids = append(ids, r.s.QueueJob("acme/app", standin.JobSpec{Labels: []string{"corral-ss"}, Duration: 30 * time.Millisecond}))
	}
	waitFor(t, 10*time.Second, "2 acquired, 3 held", func() bool { s := r.status(); return s.Acquired == 2 && s.Held == 3 })
	time.Sleep(600 * time.Millisecond) // several long polls: still no room
	if s := r.status(); s.Acquired != 2 {
		t.Fatalf("acquired %d jobs with room for 2", s.Acquired)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	started := 0
	peak := 0
	waitFor(t, 20*time.Second, "every job completed in the ledger", func() bool {
		s := r.status()
		for ; int64(started) < s.Acquired; started++ {
			r.runner(ctx, t, "corral-ss-"+string(rune('a'+started)), &wg)
		}
		done := 0
		for _, st := range r.jobStates(t) {
			if st == corral.JobCompleted {
				done++
			}
		}
		peak = max(peak, int(s.Acquired)-done)
		return done == 5
	})
	wg.Wait()
	if peak > 2 {
		t.Errorf("%d jobs acquired and open at once, pool max 2", peak)
	}
	for _, id := range ids {
		for _, a := range []corral.JobAction{corral.ActionQueued, corral.ActionInProgress, corral.ActionCompleted} {
			if n := r.obs.count(id, a); n != 1 {
				t.Errorf("job %d: %s handed %d times, want once", id, a, n)
			}
		}
	}
	for _, j := range r.s.Jobs() {
		if j.Completions != 1 || j.Conclusion != "success" {
			t.Errorf("job %d: %d completions, %q", j.ID, j.Completions, j.Conclusion)
		}
	}
	r.stop()
	c := scaleset.New(r.gc, nil)
	set, _, err := c.EnsureScaleSet(context.Background(), "ss", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenSession(context.Background(), set.ID, "next"); err != nil {
		t.Fatalf("a session after a clean stop: %v (the listener did not delete its own?)", err)
	}
}

// A live session left by a crashed corral (409) is waited out; a scale set
// deleted at GitHub is registered again and served; long polls failing
// make /readyz's check fail after three, and pass again once they work.
func TestListener_Recovery(t *testing.T) {
	r := newRig(t, standin.Options{ScaleSetLongPoll: 100 * time.Millisecond, SessionTTL: 700 * time.Millisecond}, 4)
	crashed := scaleset.New(r.gc, nil)
	set, _, err := crashed.EnsureScaleSet(context.Background(), "ss", []string{"corral-ss"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crashed.OpenSession(context.Background(), set.ID, "crashed"); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	waitFor(t, 10*time.Second, "the stale session waited out", func() bool { s := r.status(); return s.Session && s.Conflicts > 0 })

	if !r.s.DeleteScaleSet("repos/acme/app", "ss") {
		t.Fatal("no scale set to delete")
	}
	waitFor(t, 10*time.Second, "the scale set registered again", func() bool {
		s := r.status()
		return s.Session && s.Registered >= 1 && s.ScaleSetID != set.ID
	})
	id := r.s.QueueJob("acme/app", standin.JobSpec{Labels: []string{"corral-ss"}, Duration: 10 * time.Millisecond})
	waitFor(t, 10*time.Second, "the job acquired on the new scale set", func() bool { return r.obs.count(id, corral.ActionQueued) == 1 })

	r.s.SetFaults(standin.Faults{LongPollFailRate: 1})
	waitFor(t, 10*time.Second, "the readiness check failing", func() bool { _, err := r.l.Check(context.Background()); return err != nil })
	r.s.SetFaults(standin.Faults{})
	waitFor(t, 15*time.Second, "the readiness check passing again", func() bool { _, err := r.l.Check(context.Background()); return err == nil })
}
