// Package listener serves GitHub targets in scale-set mode (mode:
// scaleset): with no webhook, a leader-only loop per pool routed to such a
// target registers (or finds) the pool's runner scale set at GitHub, opens
// a message session, long-polls the session's message queue and hands
// each job's state to the ledger, the path webhooks take (the ledger dedups
// by forge job id; the listener hands each job once per state). It
// acquires the offered jobs that the pool has room for (the pool's
// max_instances less the pool's open jobs), holding the rest until room
// frees, and the scheduler mints the runners through the scale set's JIT
// endpoint (Forges wraps the forges for that).
//
// Recovery: a 409 "session exists" (a corral that crashed left its session
// alive) is waited out with backoff until GitHub expires it; a scale set
// GitHub deleted (404) is registered again and a new session opened; a
// failing long poll or 5xx is retried with exponential backoff and ±10%
// jitter, and after MaxFailures in a row the session is closed and opened
// anew. A clean shutdown deletes the session, so the next leader opens one
// at once. The REST sweep of the reconciler stays the backstop.
//
// The protocol client is internal/forge/github/scaleset; the only server
// it was tested against is the stand-in GitHub.
package listener

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/scaleset"
)

// Observer records a job event (the ledger).
type Observer interface {
	ObserveVia(ctx context.Context, t corral.Target, ev corral.JobEvent, source string) error
}

// Recorder counts long polls by result: ok (a message), empty (none within
// the long poll), error, gone (scale set or session deleted), conflict (a
// live session waited out). Cheap and safe for concurrent use.
type Recorder interface {
	ScaleSetPolled(target, result string)
}

// Config assembles a Listener.
type Config struct {
	Forges   corral.Forges
	Observer Observer
	// Store is read for each pool's open jobs (its room).
	Store   corral.Store
	Targets []corral.Target
	Pools   []corral.Pool
	// Owner names the sessions at GitHub (the controller id).
	Owner string
	// MinBackoff and MaxBackoff bound the waits after errors and
	// conflicts; 0: 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// MaxFailures is how many failed long polls in a row make the
	// listener close its session and open another; 0: 5.
	MaxFailures int
	// NewClient opens the scale-set client of a target's forge; nil:
	// scaleset.New over the target's GitHub client.
	NewClient func(corral.Forge) (*scaleset.Client, error)
	Recorder  Recorder
	Logger    *slog.Logger
}

// Status is one scale set's health as the listener sees it.
type Status struct {
	Target     string `json:"target"`
	Pool       string `json:"pool"`
	ScaleSet   string `json:"scale_set"`
	ScaleSetID int64  `json:"scale_set_id,omitempty"`
	Session    bool   `json:"session"` // a session is open
	Registered int64  `json:"registered"`
	Conflicts  int64  `json:"conflicts"` // 409s waited out
	Polls      int64  `json:"polls"`
	Messages   int64  `json:"messages"`
	Acquired   int64  `json:"acquired"`
	Held       int    `json:"held"`   // offered, not acquired for lack of room
	Handed     int64  `json:"handed"` // job states handed to the ledger
	Failures   int    `json:"failures"`
	// LastOK is the last successful long poll.
	LastOK    time.Time `json:"last_ok,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

type key struct{ target, pool string }

type setRef struct {
	c  *scaleset.Client
	id int64
}

// Listener runs the scale-set loops. Run it on the leader only.
type Listener struct {
	cfg     Config
	log     *slog.Logger
	changed chan struct{}

	mu      sync.Mutex
	targets []corral.Target
	pools   []corral.Pool
	status  map[key]*Status
	sets    map[key]setRef
	clients map[string]*scaleset.Client
	held    map[key]map[int64]scaleset.Item // offered, not acquired yet, by request id
	handed  map[string]map[int64]handedJob  // per target: forge job id -> last state handed
	gen     map[string]corral.Forge         // the forge a target's client was made for
	regs    map[key]int64                   // scale set ids registered, to tell re-registration
	probed  map[string]bool                 // targets whose server version was checked
}

type handedJob struct {
	rank int
	at   time.Time
}

// New assembles a listener; it does no I/O.
func New(cfg Config) (*Listener, error) {
	if cfg.Forges == nil || cfg.Observer == nil || cfg.Store == nil {
		return nil, errors.New("listener: forges, observer and store are required")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 5
	}
	if cfg.Owner == "" {
		cfg.Owner = "corral"
	}
	if cfg.NewClient == nil {
		cfg.NewClient = func(f corral.Forge) (*scaleset.Client, error) {
			src, ok := f.(scaleset.Source)
			if !ok {
				return nil, fmt.Errorf("listener: the forge client %T cannot open a scale-set client", f)
			}
			return scaleset.New(src, nil), nil
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{cfg: cfg, log: cfg.Logger.With("component", "scaleset-listener"), changed: make(chan struct{}, 1),
		status: map[key]*Status{}, sets: map[key]setRef{}, clients: map[string]*scaleset.Client{},
		held: map[key]map[int64]scaleset.Item{}, handed: map[string]map[int64]handedJob{},
		gen: map[string]corral.Forge{}, regs: map[key]int64{}, probed: map[string]bool{}}
	l.SetConfig(cfg.Targets, cfg.Pools)
	return l, nil
}

// ScaleSetName is the name of pool p's scale set: the pool's id.
func ScaleSetName(p corral.Pool) string { return p.ID }

// scaleSetLabels are the labels a pool's scale set is registered with:
// the pool's labels (its id when it has none).
func scaleSetLabels(p corral.Pool) []string {
	if len(p.Labels) == 0 {
		return []string{p.ID}
	}
	return slices.Clone(p.Labels)
}

// serves tells whether pool p takes jobs of target t.
func serves(p corral.Pool, t corral.Target) bool {
	if len(p.Targets) > 0 {
		return slices.Contains(p.Targets, t.ID)
	}
	return p.TenantID == t.TenantID
}

// units lists the (target, pool) pairs served in scale-set mode.
func units(ts []corral.Target, ps []corral.Pool) [][2]int {
	var out [][2]int
	for i, t := range ts {
		if t.Mode != corral.ModeScaleSet {
			continue
		}
		for j, p := range ps {
			if serves(p, t) {
				out = append(out, [2]int{i, j})
			}
		}
	}
	return out
}

// SetConfig replaces the targets and pools (the live catalog changed);
// the loops restart when what they serve changed.
func (l *Listener) SetConfig(ts []corral.Target, ps []corral.Pool) {
	var tsel []corral.Target
	for _, t := range ts {
		if t.Mode == corral.ModeScaleSet {
			tsel = append(tsel, t)
		}
	}
	l.mu.Lock()
	same := slices.EqualFunc(tsel, l.targets, func(a, b corral.Target) bool {
		return a.ID == b.ID && a.URL == b.URL && a.Scope == b.Scope && a.Path == b.Path && a.Token == b.Token && a.TenantID == b.TenantID
	}) && slices.EqualFunc(ps, l.pools, func(a, b corral.Pool) bool {
		return a.ID == b.ID && a.TenantID == b.TenantID && slices.Equal(a.Labels, b.Labels) &&
			slices.Equal(a.Targets, b.Targets) && a.MaxInstances == b.MaxInstances
	})
	l.targets, l.pools = tsel, slices.Clone(ps)
	for _, u := range units(l.targets, l.pools) {
		k := key{l.targets[u[0]].ID, l.pools[u[1]].ID}
		if l.status[k] == nil {
			l.status[k] = &Status{Target: k.target, Pool: k.pool, ScaleSet: ScaleSetName(l.pools[u[1]])}
		}
	}
	l.mu.Unlock()
	if !same {
		select {
		case l.changed <- struct{}{}:
		default:
		}
	}
}

// Statuses reports each scale set's health.
func (l *Listener) Statuses() []Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Status
	for _, u := range units(l.targets, l.pools) {
		k := key{l.targets[u[0]].ID, l.pools[u[1]].ID}
		s := *l.status[k]
		s.Held = len(l.held[k])
		out = append(out, s)
	}
	return out
}

// Check is a readiness check: an error names each scale set whose last
// three long polls (or registrations) or more failed.
func (l *Listener) Check(context.Context) (string, error) {
	var bad []error
	st := l.Statuses()
	for _, s := range st {
		if s.Failures >= 3 {
			bad = append(bad, fmt.Errorf("target %s pool %s: %d scale-set calls failed in a row: %s", s.Target, s.Pool, s.Failures, s.LastError))
		}
	}
	return fmt.Sprintf("%d scale sets listened to", len(st)), errors.Join(bad...)
}

// Run listens until ctx ends; a change of targets or pools restarts the
// loops (each closes its session first).
func (l *Listener) Run(ctx context.Context) error {
	for {
		l.mu.Lock()
		var work []struct {
			t corral.Target
			p corral.Pool
		}
		for _, u := range units(l.targets, l.pools) {
			work = append(work, struct {
				t corral.Target
				p corral.Pool
			}{l.targets[u[0]], l.pools[u[1]]})
		}
		l.mu.Unlock()
		term, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, w := range work {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l.serve(term, w.t, w.p)
			}()
		}
		select {
		case <-ctx.Done():
		case <-l.changed:
		}
		stop()
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// client returns the scale-set client of t, made anew when the forge
// client of t changed.
func (l *Listener) client(t corral.Target) (*scaleset.Client, error) {
	f, err := l.cfg.Forges.Forge(t)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.clients[t.ID]; c != nil && l.gen[t.ID] == f {
		return c, nil
	}
	c, err := l.cfg.NewClient(f)
	if err != nil {
		return nil, err
	}
	l.clients[t.ID], l.gen[t.ID] = c, f
	return c, nil
}

// serve keeps one pool's scale set listened to until ctx ends.
func (l *Listener) serve(ctx context.Context, t corral.Target, p corral.Pool) {
	k := key{t.ID, p.ID}
	fails := 0
	for ctx.Err() == nil {
		served, err := l.session(ctx, t, p)
		if ctx.Err() != nil {
			return
		}
		if served {
			fails = 0
		}
		fails++
		l.failed(k, err)
		wait := l.backoff(fails)
		if errors.Is(err, scaleset.ErrGone) {
			wait = l.cfg.MinBackoff // deleted at GitHub: register again at once
		}
		if fails == 1 || fails%10 == 0 {
			l.log.Warn("scale-set session ended; opening another", "target", t.ID, "pool", p.ID, "failures", fails, "next", wait, "err", err)
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// backoff is the wait after n failures in a row: MinBackoff doubled per
// failure up to MaxBackoff, jittered ±10%.
func (l *Listener) backoff(n int) time.Duration {
	return jitter(min(l.cfg.MinBackoff<<min(n-1, 16), l.cfg.MaxBackoff))
}

func (l *Listener) failed(k key, err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.status[k]; s != nil {
		s.Failures++
		s.LastError = err.Error()
		s.Session = false
	}
}

func (l *Listener) stat(k key, f func(*Status)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.status[k]; s != nil {
		f(s)
	}
}

func (l *Listener) record(t, result string) {
	if l.cfg.Recorder != nil {
		l.cfg.Recorder.ScaleSetPolled(t, result)
	}
}

// session registers (or finds) the scale set, opens a session and serves
// its messages until an error or ctx ends; served tells whether a long
// poll succeeded. The session is deleted on the way out.
func (l *Listener) session(ctx context.Context, t corral.Target, p corral.Pool) (served bool, err error) {
	k := key{t.ID, p.ID}
	c, err := l.client(t)
	if err != nil {
		return false, err
	}
	name := ScaleSetName(p)
	l.checkVersion(ctx, t, p)
	set, created, err := c.EnsureScaleSet(ctx, name, scaleSetLabels(p))
	if err != nil {
		return false, fmt.Errorf("register scale set %s: %w", name, err)
	}
	l.mu.Lock()
	prev, known := l.regs[k]
	l.regs[k] = set.ID
	l.sets[k] = setRef{c: c, id: set.ID}
	l.mu.Unlock()
	switch {
	case created && known && prev != set.ID:
		l.log.Warn("scale set was deleted at GitHub; registered again", "target", t.ID, "pool", p.ID, "scale_set", name, "id", set.ID, "old_id", prev)
	case created:
		l.log.Info("scale set registered", "target", t.ID, "pool", p.ID, "scale_set", name, "id", set.ID)
	}
	l.stat(k, func(s *Status) {
		s.ScaleSetID = set.ID
		if created {
			s.Registered++
		}
	})
	se, conflicts, err := l.open(ctx, c, t, p, set.ID)
	if conflicts > 0 {
		l.stat(k, func(s *Status) { s.Conflicts += int64(conflicts) })
	}
	if err != nil {
		return false, fmt.Errorf("open a session of scale set %s: %w", name, err)
	}
	l.stat(k, func(s *Status) { s.Session = true })
	defer func() {
		l.stat(k, func(s *Status) { s.Session = false })
		if errors.Is(err, scaleset.ErrGone) {
			return // nothing left to close
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := c.CloseSession(cctx, se); cerr != nil {
			l.log.Warn("could not delete the scale-set session; GitHub expires it", "target", t.ID, "pool", p.ID, "err", cerr)
		}
	}()
	var last int64
	fails := 0
	for {
		room, err := l.room(ctx, t, p)
		if err != nil && ctx.Err() == nil {
			l.log.Warn("cannot read the pool's open jobs; acquiring none this round", "pool", p.ID, "err", err)
			room = 0
		}
		if err := l.acquire(ctx, c, se, t, p, room); err != nil && ctx.Err() == nil {
			l.log.Warn("acquiring jobs failed; retried at the next message", "pool", p.ID, "err", err)
		}
		m, err := c.NextMessage(ctx, se, last, capacity(p))
		if ctx.Err() != nil {
			return served, nil
		}
		if errors.Is(err, scaleset.ErrGone) {
			l.record(t.ID, "gone")
			return served, err
		}
		if err != nil {
			l.record(t.ID, "error")
			fails++
			l.failed(k, err)
			if fails >= l.cfg.MaxFailures {
				return served, fmt.Errorf("%d long polls failed in a row: %w", fails, err)
			}
			if !sleep(ctx, l.backoff(fails)) {
				return served, nil
			}
			continue
		}
		served, fails = true, 0
		l.stat(k, func(s *Status) {
			s.Polls++
			s.Failures, s.LastError, s.LastOK = 0, "", time.Now()
		})
		if m == nil {
			l.record(t.ID, "empty")
			continue
		}
		l.record(t.ID, "ok")
		l.stat(k, func(s *Status) { s.Messages++ })
		l.handle(ctx, t, p, m)
		last = m.ID
		if err := c.Ack(ctx, se, m.ID); err != nil && ctx.Err() == nil {
			// The next poll's lastMessageId acknowledges it too.
			l.log.Debug("acknowledging a message failed", "pool", p.ID, "message", m.ID, "err", err)
		}
	}
}

// prober is the GitHub client's probe of the server's version.
type prober interface {
	Probe(ctx context.Context) (github.ProbeResult, error)
}

// checkVersion says once per target, in the log, when the server is a
// GHES release that drops a scale set's labels beyond its name (before
// 3.18) and pool p has such labels.
func (l *Listener) checkVersion(ctx context.Context, t corral.Target, p corral.Pool) {
	labels := scaleSetLabels(p)
	if len(labels) == 1 && labels[0] == ScaleSetName(p) {
		return
	}
	f, err := l.cfg.Forges.Forge(t)
	if err != nil {
		return
	}
	pr, ok := f.(prober)
	l.mu.Lock()
	done := l.probed[t.ID]
	l.probed[t.ID] = true
	l.mu.Unlock()
	if !ok || done {
		return
	}
	res, err := pr.Probe(ctx)
	switch {
	case err != nil:
		l.log.Warn("cannot read the server's version; GHES before 3.18 drops a scale set's labels beyond its name", "target", t.ID, "err", err)
	case res.Server && !github.ScaleSetLabelsKept(res.Version):
		l.log.Warn("GHES before 3.18 drops a scale set's labels beyond its name: jobs must say runs-on: <pool id>, or give the pool one label, its id",
			"target", t.ID, "pool", p.ID, "ghes", res.Version, "labels", labels)
	case res.Server:
		l.log.Info("GHES keeps multi-label scale sets; acquirejobs is used", "target", t.ID, "ghes", res.Version)
	}
}

// open opens a session, waiting out a live one (409) that a crashed
// corral left, with backoff until GitHub expires it.
func (l *Listener) open(ctx context.Context, c *scaleset.Client, t corral.Target, p corral.Pool, setID int64) (*scaleset.Session, int, error) {
	conflicts := 0
	for {
		se, err := c.OpenSession(ctx, setID, l.cfg.Owner)
		if !errors.Is(err, scaleset.ErrConflict) {
			if conflicts > 0 && err == nil {
				l.log.Info("stale scale-set session expired; listening again", "target", t.ID, "pool", p.ID, "conflicts", conflicts)
			}
			return se, conflicts, err
		}
		conflicts++
		l.record(t.ID, "conflict")
		if conflicts == 1 {
			l.log.Warn("the scale set has a live session (a corral that stopped without closing it?); waiting until GitHub expires it",
				"target", t.ID, "pool", p.ID)
		}
		if !sleep(ctx, l.backoff(conflicts)) {
			return nil, conflicts, ctx.Err()
		}
	}
}

// capacity is what the listener reports as the scale set's most runners.
func capacity(p corral.Pool) int {
	if p.MaxInstances > 0 {
		return p.MaxInstances
	}
	return 1000
}

// room is how many more jobs pool p can take: its max_instances less its
// open jobs in the ledger (those held, not acquired, do not count).
func (l *Listener) room(ctx context.Context, t corral.Target, p corral.Pool) (int, error) {
	var jobs []corral.Job
	err := l.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		jobs, err = tx.Jobs(ctx, corral.JobFilter{TargetID: t.ID, States: []corral.JobState{
			corral.JobPending, corral.JobQueued, corral.JobRouted, corral.JobRunning}})
		return err
	})
	if err != nil {
		return 0, err
	}
	k := key{t.ID, p.ID}
	l.mu.Lock()
	held := map[int64]bool{}
	for _, it := range l.held[k] {
		held[forgeJobID(it)] = true
	}
	l.mu.Unlock()
	open := 0
	for _, j := range jobs {
		if held[j.ForgeJobID] {
			continue
		}
		if j.PoolID == p.ID || (j.PoolID == "" && len(j.Routes) > 0 && j.Routes[0].PoolID == p.ID) {
			open++
		}
	}
	return max(capacity(p)-open, 0), nil
}

// handle hands a message's job states to the ledger and holds the jobs
// offered, for acquire.
func (l *Listener) handle(ctx context.Context, t corral.Target, p corral.Pool, m *scaleset.Message) {
	k := key{t.ID, p.ID}
	for _, it := range m.Items {
		switch it.Type {
		case "JobAvailable":
			l.mu.Lock()
			if l.held[k] == nil {
				l.held[k] = map[int64]scaleset.Item{}
			}
			l.held[k][it.RequestID] = it
			l.mu.Unlock()
		case "JobAssigned":
			l.hand(ctx, t, k, it, corral.ActionQueued)
		case "JobStarted":
			l.hand(ctx, t, k, it, corral.ActionInProgress)
		case "JobCompleted":
			l.mu.Lock()
			delete(l.held[k], it.RequestID)
			l.mu.Unlock()
			l.hand(ctx, t, k, it, corral.ActionCompleted)
		default:
			l.log.Debug("scale-set message item ignored", "type", it.Type)
		}
	}
}

// acquire asks GitHub for the held jobs, oldest first, as many as the
// pool has room for; each acquired job goes to the ledger as queued.
func (l *Listener) acquire(ctx context.Context, c *scaleset.Client, se *scaleset.Session, t corral.Target, p corral.Pool, room int) error {
	k := key{t.ID, p.ID}
	l.mu.Lock()
	ids := make([]int64, 0, len(l.held[k]))
	for id := range l.held[k] {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	if len(ids) == 0 || room <= 0 {
		return nil
	}
	slices.Sort(ids)
	ids = ids[:min(len(ids), room)]
	got, err := c.Acquire(ctx, se, ids)
	if err != nil {
		return err
	}
	l.mu.Lock()
	items := make([]scaleset.Item, 0, len(got))
	for _, id := range ids {
		it, ok := l.held[k][id]
		delete(l.held[k], id) // acquired, or gone (cancelled, taken): GitHub offers it again to a new session if it still waits
		if ok && slices.Contains(got, id) {
			items = append(items, it)
		}
	}
	l.mu.Unlock()
	l.stat(k, func(s *Status) { s.Acquired += int64(len(items)) })
	for _, it := range items {
		l.hand(ctx, t, k, it, corral.ActionQueued)
	}
	return nil
}

var rank = map[corral.JobAction]int{corral.ActionQueued: 1, corral.ActionInProgress: 2, corral.ActionCompleted: 3}

// hand gives the ledger one job state it was not given yet.
func (l *Listener) hand(ctx context.Context, t corral.Target, k key, it scaleset.Item, a corral.JobAction) {
	id := forgeJobID(it)
	now := time.Now()
	l.mu.Lock()
	h := l.handed[t.ID]
	if h == nil {
		h = map[int64]handedJob{}
		l.handed[t.ID] = h
	}
	if prev, ok := h[id]; ok && prev.rank >= rank[a] {
		l.mu.Unlock()
		return
	}
	if len(h) > 10000 { // forget finished jobs of long ago
		for jid, hj := range h {
			if hj.rank == rank[corral.ActionCompleted] && now.Sub(hj.at) > 10*time.Minute {
				delete(h, jid)
			}
		}
	}
	l.mu.Unlock()
	ev := corral.JobEvent{Action: a, ForgeJobID: id, RunID: it.RunID, Repo: it.Owner + "/" + it.Repo, Name: it.Name,
		Labels: slices.Clone(it.Labels), RunnerID: it.RunnerID, RunnerName: it.RunnerName, At: now, CreatedAt: it.QueueTime}
	if a == corral.ActionCompleted {
		ev.Conclusion = conclusion(it.Result)
	}
	if err := l.cfg.Observer.ObserveVia(ctx, t, ev, "scaleset"); err != nil {
		// Not marked: the next message or the REST sweep hands it again.
		l.log.Warn("the ledger could not record a scale-set job state", "target", t.ID, "job", id, "state", a, "err", err)
		return
	}
	l.mu.Lock()
	h[id] = handedJob{rank: rank[a], at: now}
	if s := l.status[k]; s != nil {
		s.Handed++
	}
	l.mu.Unlock()
}

// forgeJobID is the ledger key of a scale-set job. A jobId that is a
// hexadecimal number is read as the REST workflow-job id (the stand-in
// GitHub sends that; the REST sweep then dedups with the listener). Any
// other jobId (whose relation to the REST id is not known here) is hashed
// into a key above every REST id, and the message's runner request id
// stands in when jobId is empty.
func forgeJobID(it scaleset.Item) int64 {
	if n, err := strconv.ParseInt(it.JobID, 16, 64); err == nil && n > 0 && n < 1<<53 {
		return n
	}
	h := fnv.New64a()
	if it.JobID != "" {
		h.Write([]byte("job:" + it.JobID))
	} else {
		h.Write([]byte("request:" + strconv.FormatInt(it.RequestID, 10)))
	}
	return int64(h.Sum64()>>3) | 1<<60
}

// conclusion maps a scale-set result to the REST conclusion words.
func conclusion(r string) string {
	switch strings.ToLower(r) {
	case "succeeded", "success":
		return "success"
	case "failed", "failure":
		return "failure"
	case "canceled", "cancelled":
		return "cancelled"
	case "":
		return "unknown"
	}
	return strings.ToLower(r)
}

// Mint mints a runner of spec.Pool's scale set for target t (its JIT
// config): the bootstrap runs run.sh with the config in the environment,
// as for REST JIT runners.
func (l *Listener) Mint(ctx context.Context, t corral.Target, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	l.mu.Lock()
	ref, ok := l.sets[key{t.ID, spec.Pool}]
	l.mu.Unlock()
	if !ok {
		return corral.Bootstrap{}, fmt.Errorf("scale set of pool %s on target %s is not registered yet (the listener runs on the leader)", spec.Pool, t.ID)
	}
	jit, err := ref.c.JITConfig(ctx, ref.id, spec.Name)
	if err != nil {
		return corral.Bootstrap{}, fmt.Errorf("scale-set JIT config for pool %s: %w", spec.Pool, err)
	}
	return corral.Bootstrap{RunnerID: jit.RunnerID, Command: slices.Clone(github.JITCommand),
		Env: map[string]corral.Secret{github.EnvJITConfig: jit.Config}}, nil
}

// Forges wraps inner so that the forges of scale-set targets mint runners
// through their pool's scale set (Mint); everything else is inner's.
func (l *Listener) Forges(inner corral.Forges) corral.Forges { return forges{inner, l} }

type forges struct {
	corral.Forges
	l *Listener
}

func (f forges) Forge(t corral.Target) (corral.Forge, error) {
	fg, err := f.Forges.Forge(t)
	if err != nil || t.Mode != corral.ModeScaleSet {
		return fg, err
	}
	return minter{Forge: fg, l: f.l, t: t}, nil
}

type minter struct {
	corral.Forge
	l *Listener
	t corral.Target
}

func (m minter) MintRunner(ctx context.Context, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	return m.l.Mint(ctx, m.t, spec)
}

// DiagnoseRunner passes through to the forge, when it diagnoses.
func (m minter) DiagnoseRunner(out string) error {
	if d, ok := m.Forge.(corral.RunnerDiagnoser); ok {
		return d.DiagnoseRunner(out)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter spreads d by ±10%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}
