package ledger

import (
	"context"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Recorder observes jobs after their changes are committed (metrics).
// Implementations must be cheap and safe for concurrent use.
type Recorder interface {
	// JobStateChanged: a job entered state to (from "" when it is new).
	JobStateChanged(pool string, from, to corral.JobState)
	// JobStarted: the job's runner took it; the phases of its path, each
	// negative when the timeline lacks either end (a warm runner has no
	// create).
	JobStarted(pool string, p Phases)
	// JobCompleted: the job ended with the forge's conclusion.
	JobCompleted(pool, conclusion string)
}

// Phases splits a job's wait from queued to started along its timeline.
// A phase whose ends the timeline lacks is negative (unknown).
type Phases struct {
	QueueWait time.Duration // queued -> job started
	Requested time.Duration // queued -> instance requested (credential minted after)
	Created   time.Duration // instance requested -> instance created
	Online    time.Duration // instance created -> runner online
	Started   time.Duration // runner online -> job started
}

type jobChange struct {
	from   corral.JobState
	job    corral.Job
	phases Phases // set when the job started
}

// record tells the recorder what the committed transaction changed.
func (l *Ledger) record(_ context.Context, seen []jobChange) {
	if l.Recorder == nil {
		return
	}
	for _, c := range seen {
		j := c.job
		if c.from != j.State {
			l.Recorder.JobStateChanged(j.PoolID, c.from, j.State)
		}
		switch {
		case j.State == corral.JobRunning && c.from != corral.JobRunning:
			l.Recorder.JobStarted(j.PoolID, c.phases)
		case j.State == corral.JobCompleted && c.from != corral.JobCompleted:
			l.Recorder.JobCompleted(j.PoolID, j.Conclusion)
		}
	}
}

// phases reads the job's timeline in tx (with the stamps tx wrote); a read
// error leaves the phases that need it unknown.
func phases(ctx context.Context, tx corral.ReadTx, j corral.Job) Phases {
	p := Phases{QueueWait: -1}
	if !j.StartedAt.IsZero() && !j.QueuedAt.IsZero() && !j.StartedAt.Before(j.QueuedAt) {
		p.QueueWait = j.StartedAt.Sub(j.QueuedAt)
	}
	evs, _ := tx.Timeline(ctx, j.ID)
	first := map[corral.EventKind]time.Time{}
	for _, e := range evs {
		if _, ok := first[e.Kind]; !ok {
			first[e.Kind] = e.At
		}
	}
	span := func(a, b corral.EventKind) time.Duration {
		x, okA := first[a]
		y, okB := first[b]
		if !okA || !okB || y.Before(x) {
			return -1
		}
		return y.Sub(x)
	}
	p.Requested = span(corral.EvQueued, corral.EvInstanceRequested)
	p.Created = span(corral.EvInstanceRequested, corral.EvInstanceCreated)
	p.Online = span(corral.EvInstanceCreated, corral.EvRunnerOnline)
	p.Started = span(corral.EvRunnerOnline, corral.EvJobStarted)
	return p
}
