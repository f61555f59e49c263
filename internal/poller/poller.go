// Package poller serves targets in poll mode: with no webhook, a
// leader-only loop per target lists the forge's open jobs (waiting and
// running) at the target's poll interval and hands each job's state it has
// not handed yet to the ledger, the same path webhooks take (the ledger
// dedups by forge job id): queued as the queued webhook, running as the
// in_progress webhook (which marks the job's runner busy).
//
// Cost: one API call per poll while at most 50 jobs wait or run (Gitea's
// status=queued&status=in_progress listing, page 1), conditional (If-None-Match) when the
// forge gives an ETag; plus one call per job that leaves the list (how did
// it end?). After IdleAfter without a waiting job the interval
// doubles (at most once), so an idle target costs half; errors back off
// exponentially up to MaxBackoff; every wait is jittered by ±10% so that
// several corrals do not poll in step.
package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
)

// Observer records a job event found by polling (the ledger).
type Observer interface {
	ObserveVia(ctx context.Context, t corral.Target, ev corral.JobEvent, source string) error
	// Finish completes an open job whose end the forge cannot tell
	// (conclusion "unknown"); false when it was not open.
	Finish(ctx context.Context, t corral.Target, forgeJobID int64, conclusion, why string) (bool, error)
}

// Config assembles a Poller.
type Config struct {
	Forges   corral.Forges
	Observer Observer
	Targets  []corral.Target
	// IdleAfter is how long no job must have waited before the interval
	// doubles; 0 means 5 minutes.
	IdleAfter time.Duration
	// MaxBackoff caps the wait after errors; 0 means one minute.
	MaxBackoff time.Duration
	// Recorder counts polls by result (metrics); nil: none.
	Recorder Recorder
	Logger   *slog.Logger
}

// Recorder observes polls. It must be cheap and safe for concurrent use.
type Recorder interface {
	// Polled reports one poll of target: "ok", "unchanged" or "error".
	Polled(target, result string)
}

// Status is one polled target's health.
type Status struct {
	Target    string    `json:"target"`
	Polls     int64     `json:"polls"`
	Unchanged int64     `json:"unchanged"` // answered "not modified"
	Handed    int64     `json:"handed"`    // new jobs handed to the ledger
	Started   int64     `json:"started"`   // their start (in_progress) handed
	Finished  int64     `json:"finished"`  // their end, asked of the forge, handed
	Failures  int       `json:"failures"`  // consecutive failed polls
	LastOK    time.Time `json:"last_ok,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// Poller polls the targets in a poll mode. Run it on the leader only.
type Poller struct {
	cfg     Config
	log     *slog.Logger
	changed chan struct{}

	mu      sync.Mutex
	targets []corral.Target
	status  map[string]*Status
	handed  map[string]map[int64]handedJob // per target: open jobs already handed
}

// New assembles a poller; it does no I/O.
func New(cfg Config) (*Poller, error) {
	if cfg.Forges == nil || cfg.Observer == nil {
		return nil, errors.New("poller: forges and observer are required")
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = 5 * time.Minute
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Poller{cfg: cfg, log: cfg.Logger.With("component", "poller"), changed: make(chan struct{}, 1),
		status: map[string]*Status{}, handed: map[string]map[int64]handedJob{}}
	p.SetTargets(cfg.Targets)
	return p, nil
}

// SetTargets replaces the targets (the live catalog changed); the ones in
// a poll mode are polled from now on.
func (p *Poller) SetTargets(ts []corral.Target) {
	var polled []corral.Target
	for _, t := range ts {
		if t.Polls() {
			polled = append(polled, t)
		}
	}
	p.mu.Lock()
	same := slices.EqualFunc(polled, p.targets, func(a, b corral.Target) bool {
		return a.ID == b.ID && a.URL == b.URL && a.Scope == b.Scope && a.Path == b.Path &&
			a.Kind == b.Kind && a.EffectivePollInterval() == b.EffectivePollInterval() && a.Token == b.Token
	})
	p.targets = polled
	for _, t := range polled {
		if p.status[t.ID] == nil {
			p.status[t.ID] = &Status{Target: t.ID}
		}
	}
	p.mu.Unlock()
	if !same {
		select {
		case p.changed <- struct{}{}:
		default:
		}
	}
}

// Statuses reports each polled target's health, by target id.
func (p *Poller) Statuses() []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Status, 0, len(p.targets))
	for _, t := range p.targets {
		out = append(out, *p.status[t.ID])
	}
	return out
}

// Check is a readiness check: an error names each polled target whose
// last three polls or more failed.
func (p *Poller) Check(context.Context) (string, error) {
	var bad []error
	st := p.Statuses()
	for _, s := range st {
		if s.Failures >= 3 {
			bad = append(bad, fmt.Errorf("target %s: %d polls failed in a row: %s", s.Target, s.Failures, s.LastError))
		}
	}
	return fmt.Sprintf("%d targets polled", len(st)), errors.Join(bad...)
}

// Run polls until ctx ends; a change of the polled targets restarts the
// loops (what was handed is kept).
func (p *Poller) Run(ctx context.Context) error {
	for {
		p.mu.Lock()
		ts := slices.Clone(p.targets)
		p.mu.Unlock()
		term, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, t := range ts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.loop(term, t)
			}()
		}
		select {
		case <-ctx.Done():
		case <-p.changed:
		}
		stop()
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// loop polls one target until ctx ends.
func (p *Poller) loop(ctx context.Context, t corral.Target) {
	interval := t.EffectivePollInterval()
	lastJob := time.Now()
	wait := time.Duration(0)
	fails := 0
	for {
		if wait > 0 {
			tm := time.NewTimer(jitter(wait))
			select {
			case <-ctx.Done():
				tm.Stop()
				return
			case <-tm.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		n, err := p.Poll(ctx, t)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fails++
			wait = min(interval<<min(fails, 10), max(p.cfg.MaxBackoff, interval))
			if fails == 1 || fails%10 == 0 {
				p.log.Warn("poll failed; backing off", "target", t.ID, "failures", fails, "next", wait, "err", err)
			}
			continue
		}
		if fails > 0 {
			p.log.Info("poll works again", "target", t.ID, "after_failures", fails)
		}
		fails = 0
		now := time.Now()
		if n > 0 {
			lastJob = now
		}
		wait = interval
		if now.Sub(lastJob) >= p.cfg.IdleAfter {
			wait = 2 * interval
		}
	}
}

// Poll lists t's open jobs once and hands what is new to the ledger. It
// returns how many jobs wait or run, as of the forge's last full answer.
func (p *Poller) Poll(ctx context.Context, t corral.Target) (int, error) {
	st := p.stat(t.ID)
	unchanged := false
	err := func() error {
		f, err := p.cfg.Forges.Forge(t)
		if err != nil {
			return err
		}
		jp, ok := f.(corral.JobPoller)
		if !ok {
			return fmt.Errorf("forge kind %s cannot be polled for jobs", t.Kind)
		}
		jobs, same, err := jp.PollJobs(ctx)
		unchanged = same && err == nil
		p.mu.Lock()
		st.Polls++
		if unchanged {
			st.Unchanged++
		}
		p.mu.Unlock()
		if err != nil || unchanged {
			return err
		}
		return p.hand(ctx, f, t, jobs, st)
	}()
	if rec := p.cfg.Recorder; rec != nil {
		switch {
		case err != nil:
			rec.Polled(t.ID, "error")
		case unchanged:
			rec.Polled(t.ID, "unchanged")
		default:
			rec.Polled(t.ID, "ok")
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		st.Failures++
		st.LastError = err.Error()
		return 0, err
	}
	st.Failures, st.LastError, st.LastOK = 0, "", time.Now()
	return len(p.handed[t.ID]), nil
}

// handedJob is what the poller last handed of one open job.
type handedJob struct {
	action corral.JobAction
	repo   string
}

// hand gives the ledger each open job not handed yet in its current state
// (queued, then in_progress). A job handed before and no longer listed has
// left the open jobs: the forge is asked how it ended (one call per job,
// as no completed webhook comes) and the ledger told.
func (p *Poller) hand(ctx context.Context, f corral.Forge, t corral.Target, jobs []corral.JobEvent, st *Status) error {
	p.mu.Lock()
	old := p.handed[t.ID]
	p.mu.Unlock()
	now := make(map[int64]handedJob, len(jobs))
	var errs []error
	for _, ev := range jobs {
		prev, seen := old[ev.ForgeJobID]
		if seen && prev.action == ev.Action {
			now[ev.ForgeJobID] = prev
			continue
		}
		if err := p.cfg.Observer.ObserveVia(ctx, t, ev, "poll"); err != nil {
			errs = append(errs, err) // not marked: the next poll tries again
			if seen {
				now[ev.ForgeJobID] = prev
			}
			continue
		}
		now[ev.ForgeJobID] = handedJob{ev.Action, ev.Repo}
		p.mu.Lock()
		if seen {
			st.Started++
		} else {
			st.Handed++
		}
		p.mu.Unlock()
	}
	for id, h := range old {
		if _, open := now[id]; open {
			continue
		}
		ev, err := f.Job(ctx, id, h.repo)
		switch {
		case errors.Is(err, corral.ErrNotFound):
			// It left the open jobs and the forge no longer knows it
			// (Forgejo's only answer for a job that ended: it keeps no
			// single-job endpoint): finished, how is unknown. Left to
			// the reconcile sweep, it would look waiting for up to a
			// reconcile interval and be given runners the forge refuses.
			changed, err := p.cfg.Observer.Finish(ctx, t, id, ledger.ConclusionUnknown, "poll: it left the open jobs and the forge no longer knows it")
			if err != nil {
				errs = append(errs, err)
				now[id] = h
				continue
			}
			if changed {
				p.mu.Lock()
				st.Finished++
				p.mu.Unlock()
			}
		case err != nil:
			errs = append(errs, err)
			now[id] = h // asked again at the next poll
		case ev.Action == corral.ActionCompleted:
			if err := p.cfg.Observer.ObserveVia(ctx, t, ev, "poll"); err != nil {
				errs = append(errs, err)
				now[id] = h
				continue
			}
			p.mu.Lock()
			st.Finished++
			p.mu.Unlock()
		default:
			now[id] = h // still open: the listing shifted while it was read
		}
	}
	p.mu.Lock()
	p.handed[t.ID] = now
	p.mu.Unlock()
	return errors.Join(errs...)
}

func (p *Poller) stat(id string) *Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.status[id]
	if s == nil {
		s = &Status{Target: id}
		p.status[id] = s
	}
	return s
}

// jitter spreads d by ±10%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}
