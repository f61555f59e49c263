// Package ledger turns a forge's news about jobs (webhook deliveries and
// sweep results) into the job ledger: idempotent ingest, dedup by delivery
// id, state transitions through the domain's tables, routing and the
// timeline. A duplicate delivery, a redelivery or an out-of-order event
// (completed before queued) changes nothing twice.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/route"
)

// Router routes a job's labels to pools (package route implements it).
type Router interface {
	Route(tenantID, targetID string, labels []string) route.Decision
}

// ConclusionUnknown is the conclusion of a job corral saw finish without
// being told how (the forge sweep found it gone).
const ConclusionUnknown = "unknown"

// ReasonJobCompleted is why an instance whose runner finished its job is
// drained.
const ReasonJobCompleted = "job completed"

// Ledger ingests forge events into the store.
type Ledger struct {
	store  corral.Store
	router atomic.Pointer[routerBox]
	clock  corral.Clock
	log    *slog.Logger
	// OnChange is called after a commit that created demand or freed
	// capacity, so the scheduler wakes at once. It must not block.
	OnChange func()
	// Recorder observes jobs as they change state, after the commit
	// (metrics); nil = none.
	Recorder Recorder
	// Leader, when set, tells whether this replica leads now: it returns
	// the store the leader writes through (fenced: its term checked as the
	// transaction's last statement) and the scheduler's Reserver, or nils
	// on a follower. A leader's queued webhook then reserves its job's
	// instance in the ingest's own transaction (merged.go).
	Leader func() (corral.Store, Reserver)

	lagMu sync.Mutex
	lags  map[string]lag // by target: how late its webhooks arrive
}

// lag is how long after its event (the forge's time) a target's latest
// webhook was ingested, and when.
type lag struct {
	late time.Duration
	at   time.Time
}

// lagFresh is how long a webhook's lateness stands for its target's: a
// target whose webhooks stopped has no backlog to measure.
const lagFresh = 30 * time.Second

// WebhookLag tells how late target's webhooks arrive now: how long after
// the forge's time of its event the latest webhook was ingested (the
// forge gives whole seconds, so up to a second more), or 0 when none came
// within the last 30 s or the forge's clock is ahead. In a burst, webhooks
// queue behind one another at the forge: this is how far behind.
func (l *Ledger) WebhookLag(targetID string) time.Duration {
	l.lagMu.Lock()
	g := l.lags[targetID]
	l.lagMu.Unlock()
	if g.at.IsZero() || l.clock.Now().Sub(g.at) > lagFresh {
		return 0
	}
	return g.late
}

// noteLag records how late target's webhook about ev came.
func (l *Ledger) noteLag(targetID string, ev *corral.JobEvent, now time.Time) {
	if ev == nil || ev.At.IsZero() {
		return
	}
	late := max(now.Sub(ev.At), 0)
	l.lagMu.Lock()
	if l.lags == nil {
		l.lags = map[string]lag{}
	}
	l.lags[targetID] = lag{late, now}
	l.lagMu.Unlock()
}

// New assembles a ledger. It does no I/O.
func New(store corral.Store, router Router, clock corral.Clock, log *slog.Logger) *Ledger {
	if clock == nil {
		clock = corral.SystemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Ledger{store: store, clock: clock, log: log.With("component", "ledger")}
	l.SetRouter(router)
	return l
}

type routerBox struct{ Router }

// SetRouter replaces the router (the live catalog changed). Safe to call
// while events are ingested.
func (l *Ledger) SetRouter(r Router) { l.router.Store(&routerBox{r}) }

// Result tells what an ingest did.
type Result struct {
	Duplicate bool  // the delivery id was seen before: nothing changed
	JobID     int64 // the job touched, if any
	Changed   bool  // the ledger changed
	Created   bool  // the job was new to the ledger
	Reserved  bool  // the job's instance was reserved in the same commit
}

// Ingest records a verified webhook delivery and applies its job event, in
// one transaction. It returns only after the commit. When this replica
// leads (see Leader), the same transaction reserves the instance of a job
// the event routed: one durable write from webhook to reservation.
func (l *Ledger) Ingest(ctx context.Context, t corral.Target, d corral.Delivery) (Result, error) {
	if l.Leader != nil && d.Job != nil && d.Job.Action == corral.ActionQueued {
		// Only a queued job may need an instance; other events keep the
		// plain path (no fence check on a write that reserves nothing).
		if st, rs := l.Leader(); st != nil && rs != nil {
			res, err := l.ingest(ctx, st, rs, t, d)
			if !errors.Is(err, corral.ErrFenced) {
				return res, err
			}
			// The term ended under this write (rolled back whole): record
			// the delivery as a follower does; the next leader reserves.
			l.log.Info("lost the lead during a merged ingest; ingesting without reservation", "delivery", d.ID, "err", err)
		}
	}
	return l.ingest(ctx, l.store, nil, t, d)
}

func (l *Ledger) ingest(ctx context.Context, st corral.Store, rs Reserver, t corral.Target, d corral.Delivery) (Result, error) {
	var res Result
	var seen []jobChange
	var claim claims
	now := l.clock.Now()
	err := updateRetry(ctx, st, func(tx corral.Tx) error {
		claim.end(false) // a previous run of fn was rolled back
		res, seen = Result{}, seen[:0]
		fresh, err := tx.InsertDelivery(ctx, t.ID, d.ID, now)
		if err != nil {
			return err
		}
		if !fresh {
			res.Duplicate = true
			return nil
		}
		if d.Job == nil {
			return nil
		}
		res.JobID, res.Changed, err = l.apply(ctx, tx, t, *d.Job, now, "webhook", &seen)
		if err != nil || rs == nil {
			return err
		}
		res.Reserved, err = claim.reserve(ctx, tx, rs, d.Job.Action, seen, now)
		return err
	})
	claim.end(err == nil)
	if err != nil {
		return Result{}, fmt.Errorf("ingest delivery %s for target %s: %w", d.ID, t.ID, err)
	}
	l.record(ctx, seen)
	if !res.Duplicate {
		l.noteLag(t.ID, d.Job, now)
	}
	if res.Changed && !res.Reserved && l.OnChange != nil {
		// A reserved job needs no pass: its create is under way.
		l.OnChange()
	}
	return res, nil
}

// Observe applies a job event found by a sweep of the forge's API.
func (l *Ledger) Observe(ctx context.Context, t corral.Target, ev corral.JobEvent) (Result, error) {
	return l.observe(ctx, t, ev, "sweep")
}

// ObserveVia applies a job event found by source (e.g. "poll": the poller
// of a target in poll mode); the job's queued stamp names the source.
func (l *Ledger) ObserveVia(ctx context.Context, t corral.Target, ev corral.JobEvent, source string) error {
	_, err := l.observe(ctx, t, ev, source)
	return err
}

func (l *Ledger) observe(ctx context.Context, t corral.Target, ev corral.JobEvent, source string) (Result, error) {
	var res Result
	var seen []jobChange
	now := l.clock.Now()
	err := updateRetry(ctx, l.store, func(tx corral.Tx) error {
		var err error
		res, seen = Result{}, seen[:0]
		res.JobID, res.Changed, err = l.apply(ctx, tx, t, ev, now, source, &seen)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("observe job %d of target %s: %w", ev.ForgeJobID, t.ID, err)
	}
	for _, c := range seen {
		res.Created = res.Created || c.from == ""
	}
	l.record(ctx, seen)
	if res.Changed && l.OnChange != nil {
		l.OnChange()
	}
	return res, nil
}

// Finish marks an open job completed because the forge no longer lists it
// as open (the forge sweep), with the conclusion given.
func (l *Ledger) Finish(ctx context.Context, t corral.Target, forgeJobID int64, conclusion, why string) (bool, error) {
	ev := corral.JobEvent{Action: corral.ActionCompleted, ForgeJobID: forgeJobID, Conclusion: conclusion}
	var changed bool
	var seen []jobChange
	now := l.clock.Now()
	err := l.store.Update(ctx, func(tx corral.Tx) error {
		seen = seen[:0]
		j, err := tx.JobByForgeID(ctx, t.ID, forgeJobID)
		if err != nil {
			return err
		}
		if !j.State.Open() {
			changed = false
			return nil
		}
		_, changed, err = l.apply(ctx, tx, t, ev, now, why, &seen)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("finish job %d of target %s: %w", forgeJobID, t.ID, err)
	}
	l.record(ctx, seen)
	if changed && l.OnChange != nil {
		l.OnChange()
	}
	return changed, nil
}

// apply is the one place where a job event changes the ledger.
func (l *Ledger) apply(ctx context.Context, tx corral.Tx, t corral.Target, ev corral.JobEvent, now time.Time, source string, seen *[]jobChange) (int64, bool, error) {
	j, err := tx.JobByForgeID(ctx, t.ID, ev.ForgeJobID)
	isNew := errors.Is(err, corral.ErrNotFound)
	if err != nil && !isNew {
		return 0, false, err
	}
	if isNew {
		j = corral.Job{
			TargetID: t.ID, TenantID: t.TenantID, ForgeJobID: ev.ForgeJobID,
			State: corral.JobPending, CreatedAt: now, QueuedAt: now,
		}
		if !ev.At.IsZero() && ev.Action == corral.ActionQueued {
			j.QueuedAt = ev.At
		}
	}
	if !j.State.Open() {
		// Nothing leaves completed: a late or duplicate event. A sweep may
		// have finished the job before its completed webhook came; that
		// webhook still brings the conclusion.
		if ev.Action == corral.ActionCompleted && j.Conclusion == ConclusionUnknown && ev.Conclusion != "" {
			j.Conclusion, j.UpdatedAt = ev.Conclusion, now
			if err := tx.PutJob(ctx, &j); err != nil {
				return 0, false, err
			}
			if err := tx.PutJobRun(ctx, runOf(j, ev)); err != nil {
				return 0, false, err
			}
			return j.ID, true, nil
		}
		return j.ID, false, nil
	}
	from := j.State
	if isNew {
		from = ""
	}
	fillJob(&j, ev)
	if isNew && (ev.Action == corral.ActionInProgress || ev.Action == corral.ActionCompleted) {
		// Insert first: binding an instance needs the job's id. A new
		// queued or waiting job is inserted once, below, when it is whole.
		if err := tx.PutJob(ctx, &j); err != nil {
			return 0, false, err
		}
	}
	var evs []corral.Event
	stamp := func(k corral.EventKind, inst, detail string) {
		evs = append(evs, corral.Event{At: now, Kind: k, InstanceID: inst, Detail: detail})
	}
	if isNew {
		stamp(corral.EvQueued, "", "via "+source)
	}

	changed := isNew
	switch ev.Action {
	case corral.ActionWaiting:
		// A job blocked on approval or needs: recorded, no demand yet.
	case corral.ActionQueued:
		if j.State == corral.JobPending {
			l.route(&j, stamp)
			changed = true
		}
	case corral.ActionInProgress:
		if j.State != corral.JobRunning {
			if err := l.start(ctx, tx, &j, ev, now, stamp); err != nil {
				return 0, false, err
			}
			changed = true
		}
	case corral.ActionCompleted:
		if err := l.complete(ctx, tx, &j, ev, now, stamp); err != nil {
			return 0, false, err
		}
		changed = true
	default:
		return 0, false, fmt.Errorf("job %d: unknown action %q: %w", ev.ForgeJobID, ev.Action, corral.ErrBadInput)
	}
	if !changed {
		return j.ID, false, nil
	}
	j.UpdatedAt = now
	if err := tx.PutJob(ctx, &j); err != nil {
		return 0, false, err
	}
	for _, e := range evs {
		e.JobID = j.ID
		if err := tx.AddEvent(ctx, e); err != nil {
			return 0, false, err
		}
	}
	if ev.Action == corral.ActionCompleted && j.Conclusion != ConclusionUnknown {
		if err := tx.PutJobRun(ctx, runOf(j, ev)); err != nil {
			return 0, false, err
		}
	}
	c := jobChange{from: from, job: j}
	if l.Recorder != nil && j.State == corral.JobRunning && from != corral.JobRunning {
		// The timeline is read in this transaction, not after the commit:
		// no second round trip on the webhook's path.
		c.phases = phases(ctx, tx, j)
	}
	*seen = append(*seen, c)
	return j.ID, true, nil
}

// runOf is the CI analytics record of job j completed by ev: the forge's
// names and times where the event carries them, else the job's own.
func runOf(j corral.Job, ev corral.JobEvent) corral.JobRun {
	r := corral.JobRun{JobID: j.ID, TenantID: j.TenantID, TargetID: j.TargetID, Repo: j.Repo, Workflow: ev.Workflow,
		JobName: j.Name, Conclusion: j.Conclusion, QueuedAt: ev.CreatedAt, StartedAt: ev.StartedAt,
		CompletedAt: ev.CompletedAt, Steps: ev.Steps}
	if r.JobName == "" {
		r.JobName = ev.Name
	}
	if r.QueuedAt.IsZero() {
		r.QueuedAt = j.QueuedAt
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = j.StartedAt
	}
	if r.CompletedAt.IsZero() {
		r.CompletedAt = j.CompletedAt
	}
	if r.CompletedAt.IsZero() {
		r.CompletedAt = j.UpdatedAt
	}
	return r
}

// fillJob copies what the event knows and the job does not.
func fillJob(j *corral.Job, ev corral.JobEvent) {
	if len(j.Labels) == 0 && len(ev.Labels) > 0 {
		j.Labels = route.BoundLabels(ev.Labels)
	}
	if j.RunID == 0 {
		j.RunID = ev.RunID
	}
	if j.RunAttempt == 0 {
		j.RunAttempt = ev.RunAttempt
	}
	if j.Repo == "" {
		j.Repo = ev.Repo
	}
	if j.Name == "" {
		j.Name = ev.Name
	}
}

func (l *Ledger) route(j *corral.Job, stamp func(corral.EventKind, string, string)) {
	d := l.router.Load().Route(j.TenantID, j.TargetID, j.Labels)
	if len(d.Routes) == 0 {
		_ = j.Transition(corral.JobUnroutable)
		j.Routes = nil
		j.Reason = d.Reason
		stamp(corral.EvUnroutable, "", d.Reason)
		return
	}
	_ = j.Transition(corral.JobRouted)
	j.Routes = d.Routes
	j.Reason = ""
	stamp(corral.EvRouted, "", routesText(d.Routes))
}

func routesText(rs []corral.Route) string {
	s := ""
	for i, r := range rs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s (%dcpu %dMiB)", r.PoolID, r.Flavor.CPU, r.Flavor.MemoryMB)
	}
	return s
}

// Reroute routes again every job that waits (routed or unroutable) with
// the current router: after a config change a job may find a pool.
func (l *Ledger) Reroute(ctx context.Context) (int, error) {
	n := 0
	now := l.clock.Now()
	err := l.store.Update(ctx, func(tx corral.Tx) error {
		n = 0
		jobs, err := tx.Jobs(ctx, corral.JobFilter{States: []corral.JobState{corral.JobRouted, corral.JobUnroutable, corral.JobQueued}})
		if err != nil {
			return err
		}
		for i := range jobs {
			j := &jobs[i]
			d := l.router.Load().Route(j.TenantID, j.TargetID, j.Labels)
			if sameRoutes(d.Routes, j.Routes) && (len(d.Routes) > 0 || d.Reason == j.Reason) {
				continue
			}
			var evs []corral.Event
			l.route(j, func(k corral.EventKind, inst, detail string) {
				evs = append(evs, corral.Event{JobID: j.ID, At: now, Kind: k, Detail: "re-route: " + detail})
			})
			j.UpdatedAt = now
			if err := tx.PutJob(ctx, j); err != nil {
				return err
			}
			for _, e := range evs {
				if err := tx.AddEvent(ctx, e); err != nil {
					return err
				}
			}
			n++
		}
		return nil
	})
	return n, err
}

func sameRoutes(a, b []corral.Route) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// updateRetry runs an Update again when it lost a race to insert the same
// new job (another replica took the first event of that job at the same
// moment): the second run finds the job and applies the event to it, so
// the webhook is never refused for it.
func updateRetry(ctx context.Context, st corral.Store, fn func(corral.Tx) error) error {
	var err error
	for range 3 {
		if err = st.Update(ctx, fn); !errors.Is(err, corral.ErrConflict) {
			return err
		}
	}
	return err
}

// RetryJob routes one unroutable job again with the current router (after
// a configuration fix) and returns it as it now stands: routed, or still
// unroutable with the reason. A job in another state is refused with
// ErrConflict; tenantID, when not empty, must be the job's tenant (else
// ErrNotFound).
func (l *Ledger) RetryJob(ctx context.Context, id int64, tenantID string) (corral.Job, error) {
	now := l.clock.Now()
	var out corral.Job
	err := l.store.Update(ctx, func(tx corral.Tx) error {
		j, err := tx.Job(ctx, id)
		if err != nil {
			return err
		}
		if tenantID != "" && j.TenantID != tenantID {
			return corral.ErrNotFound
		}
		if j.State != corral.JobUnroutable {
			return fmt.Errorf("job %d is %s, not unroutable: %w", id, j.State, corral.ErrConflict)
		}
		var evs []corral.Event
		l.route(&j, func(k corral.EventKind, inst, detail string) {
			evs = append(evs, corral.Event{JobID: j.ID, At: now, Kind: k, Detail: "retry: " + detail})
		})
		j.UpdatedAt = now
		if err := tx.PutJob(ctx, &j); err != nil {
			return err
		}
		for _, e := range evs {
			if err := tx.AddEvent(ctx, e); err != nil {
				return err
			}
		}
		out = j
		return nil
	})
	if err == nil && out.State == corral.JobRouted && l.OnChange != nil {
		l.OnChange()
	}
	return out, err
}
