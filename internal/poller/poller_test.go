package poller

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// queue is a forge whose waiting jobs the test sets; it fails while err is
// set. Only the JobPoller side is used by the poller.
type queue struct {
	corral.Forge
	mu    sync.Mutex
	jobs  []int64
	run   map[int64]bool // jobs listed in_progress
	done  map[int64]bool // jobs Job answers completed (others: not found)
	asked int            // Job calls
	err   error
	polls int
}

func (q *queue) PollJobs(context.Context) ([]corral.JobEvent, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.polls++
	if q.err != nil {
		return nil, false, q.err
	}
	var out []corral.JobEvent
	for _, id := range q.jobs {
		a := corral.ActionQueued
		if q.run[id] {
			a = corral.ActionInProgress
		}
		out = append(out, corral.JobEvent{Action: a, ForgeJobID: id})
	}
	return out, false, nil
}

func (q *queue) Job(_ context.Context, id int64, _ string) (corral.JobEvent, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.asked++
	if q.done[id] {
		return corral.JobEvent{Action: corral.ActionCompleted, ForgeJobID: id, Conclusion: "success"}, nil
	}
	return corral.JobEvent{}, corral.ErrNotFound
}

func (q *queue) set(err error, jobs ...int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.err, q.jobs = err, jobs
}

type forges struct{ q *queue }

func (f forges) Forge(corral.Target) (corral.Forge, error) { return f.q, nil }
func (f forges) Parser(corral.TargetKind) (corral.WebhookParser, error) {
	return nil, errors.New("none")
}

// fakeLedger records what it was handed and refuses job ids in fail.
type fakeLedger struct {
	mu       sync.Mutex
	handed   map[int64]int
	began    map[int64]int // in_progress events
	ended    map[int64]int // completed events
	finished map[int64]int // Finish calls (conclusion unknown)
	fail     map[int64]bool
}

func (l *fakeLedger) Finish(_ context.Context, _ corral.Target, id int64, conclusion, why string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if conclusion != "unknown" || why == "" {
		return false, errors.New("finish without conclusion unknown and a reason")
	}
	if l.fail[id] {
		return false, errors.New("store down")
	}
	l.finished[id]++
	return true, nil
}

func (l *fakeLedger) ObserveVia(_ context.Context, _ corral.Target, ev corral.JobEvent, source string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if source != "poll" {
		return errors.New("unexpected " + source + " " + string(ev.Action))
	}
	if l.fail[ev.ForgeJobID] {
		return errors.New("store down")
	}
	switch ev.Action {
	case corral.ActionInProgress:
		l.began[ev.ForgeJobID]++
	case corral.ActionCompleted:
		l.ended[ev.ForgeJobID]++
	default:
		l.handed[ev.ForgeJobID]++
	}
	return nil
}

func (l *fakeLedger) count(id int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.handed[id]
}

var target = corral.Target{ID: "g", Kind: corral.KindGitea, Mode: corral.ModePoll}

func newPoller(t *testing.T) (*Poller, *queue, *fakeLedger) {
	q, l := &queue{run: map[int64]bool{}, done: map[int64]bool{}}, &fakeLedger{handed: map[int64]int{}, began: map[int64]int{}, ended: map[int64]int{}, finished: map[int64]int{}, fail: map[int64]bool{}}
	p, err := New(Config{Forges: forges{q}, Observer: l, Targets: []corral.Target{
		target, {ID: "w", Kind: corral.KindGitea}}}) // w takes webhooks: not polled
	if err != nil {
		t.Fatal(err)
	}
	return p, q, l
}

// Each open job is handed once per state however often it is listed; a
// job the ledger refused is handed again at the next poll; a job that left
// the list and comes back (a re-run) is handed again.
func TestPoll_HandsEachWaitingJobOnce(t *testing.T) {
	p, q, l := newPoller(t)
	ctx := context.Background()
	if st := p.Statuses(); len(st) != 1 || st[0].Target != "g" {
		t.Fatalf("polled targets %+v, want only g", st)
	}
	q.set(nil, 1, 2)
	l.fail[2] = true
	for range 3 {
		_, _ = p.Poll(ctx, target)
	}
	if l.count(1) != 1 || l.count(2) != 0 {
		t.Fatalf("handed %v, want job 1 once and job 2 never (refused)", l.handed)
	}
	l.fail[2] = false
	if n, err := p.Poll(ctx, target); err != nil || n != 2 {
		t.Fatalf("poll: %d waiting, err %v; want 2, nil", n, err)
	}
	if l.count(2) != 1 {
		t.Fatalf("job 2 handed %d times after the ledger recovered, want 1", l.count(2))
	}
	q.set(nil, 2)
	_, _ = p.Poll(ctx, target)
	q.set(nil, 1, 2)
	_, _ = p.Poll(ctx, target)
	if l.count(1) != 2 || l.count(2) != 1 {
		t.Fatalf("handed %v, want job 1 twice (it left and came back), job 2 once", l.handed)
	}
	if l.finished[1] != 1 {
		t.Fatalf("job 1 left the open jobs and the forge did not know it: finished %d times, want 1", l.finished[1])
	}
	// Job 2 starts: its in_progress is handed once, as the webhook would.
	q.mu.Lock()
	q.run[2] = true
	q.mu.Unlock()
	for range 3 {
		_, _ = p.Poll(ctx, target)
	}
	l.mu.Lock()
	began := l.began[2]
	l.mu.Unlock()
	if began != 1 || l.count(2) != 1 {
		t.Fatalf("job 2: in_progress handed %d times, queued %d; want 1 and 1", began, l.count(2))
	}
	// Job 2 ends: it leaves the list, the forge is asked once how it
	// ended, and the ledger is told; later polls ask nothing more.
	q.mu.Lock()
	q.done[2], q.asked = true, 0
	q.mu.Unlock()
	q.set(nil, 1)
	for range 3 {
		_, _ = p.Poll(ctx, target)
	}
	l.mu.Lock()
	ended := l.ended[2]
	l.mu.Unlock()
	if ended != 1 || q.asked != 1 {
		t.Fatalf("job 2 ended: %d completed events after %d lookups; want 1 and 1", ended, q.asked)
	}
	if st := p.Statuses()[0]; st.Handed != 3 || st.Started != 1 || st.Finished != 2 {
		t.Errorf("status %+v; want 3 handed (job 1 twice), 1 started, 2 finished (job 1 gone, job 2 completed)", st)
	}
}

type results struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *results) Polled(target, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[target+" "+result]++
}

// Failing polls show in the readiness check after three in a row and in
// the metrics, and the loop backs off instead of polling at its interval.
func TestPoll_FailuresBackOffAndShow(t *testing.T) {
	p, q, _ := newPoller(t)
	rec := &results{n: map[string]int{}}
	p.cfg.Recorder = rec
	q.set(errors.New("503 from the forge"))
	ctx := context.Background()
	for range 3 {
		if _, err := p.Poll(ctx, target); err == nil {
			t.Fatal("a failing forge polled without error")
		}
	}
	if _, err := p.Check(ctx); err == nil || !strings.Contains(err.Error(), "target g: 3 polls failed in a row: 503 from the forge") {
		t.Fatalf("check: %v", err)
	}
	q.set(nil)
	if _, err := p.Poll(ctx, target); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Check(ctx); err != nil {
		t.Fatalf("check after a good poll: %v", err)
	}
	if rec.n["g error"] != 3 || rec.n["g ok"] != 1 {
		t.Fatalf("recorded %v, want 3 errors and 1 ok for target g", rec.n)
	}

	// The loop: 100 ms interval, the forge failing for 1.5 s. Without
	// backoff that is ~15 polls; with it (0.2, 0.4, 0.8 s ...) at most 5.
	p2, q2, _ := newPoller(t)
	p2.cfg.MaxBackoff = 10 * time.Second
	fast := target
	fast.PollInterval = 100 * time.Millisecond
	p2.SetTargets([]corral.Target{fast})
	q2.set(errors.New("down"))
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p2.Run(run) }()
	time.Sleep(1500 * time.Millisecond)
	q2.mu.Lock()
	failed := q2.polls
	q2.mu.Unlock()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if failed < 2 || failed > 5 {
		t.Errorf("%d polls while the forge failed for 1.5 s at a 100 ms interval; want 2..5 (exponential backoff)", failed)
	}
}

// A target that switches to poll mode in the live catalog is polled from
// then on; one idle for IdleAfter is polled at twice its interval.
func TestRun_CatalogChangeAndIdleBackoff(t *testing.T) {
	p, q, _ := newPoller(t)
	p.SetTargets(nil) // nothing polls
	p.cfg.IdleAfter = 300 * time.Millisecond
	polls := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.polls
	}
	run, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(run) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	if n := polls(); n != 0 {
		t.Fatalf("%d polls with no target in poll mode", n)
	}
	fast := target
	fast.PollInterval = 100 * time.Millisecond
	p.SetTargets([]corral.Target{fast})
	// 2 s at 100 ms: ~20 polls without the idle backoff; with it, ~3 in
	// the first 300 ms and ~9 at 200 ms for the rest.
	time.Sleep(2 * time.Second)
	n := polls()
	t.Logf("%d polls", n)
	if n < 5 || n > 16 {
		t.Errorf("%d polls in 2 s at a 100 ms interval, idle after 300 ms; want 5..16 (interval doubled when idle)", n)
	}
}

// A handed job that leaves the open jobs and that the forge no longer
// knows (Forgejo's only answer for a job that ended) is finished at once
// with conclusion unknown, not left waiting for the reconcile sweep; a
// ledger that cannot record it is asked again at the next poll.
func TestPoll_JobGoneIsFinished(t *testing.T) {
	p, q, l := newPoller(t)
	ctx := context.Background()
	q.set(nil, 5, 6)
	_, _ = p.Poll(ctx, target)
	l.fail[6] = true
	q.set(nil)
	_, _ = p.Poll(ctx, target)
	if l.finished[5] != 1 || l.finished[6] != 0 {
		t.Fatalf("finished %v after the jobs left; want job 5 once, job 6 not yet (store down)", l.finished)
	}
	l.fail[6] = false
	for range 3 {
		_, _ = p.Poll(ctx, target)
	}
	if l.finished[5] != 1 || l.finished[6] != 1 {
		t.Fatalf("finished %v; want each job once", l.finished)
	}
	if q.asked != 3 {
		t.Errorf("%d lookups; want 3 (job 5 once, job 6 twice)", q.asked)
	}
}
