package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// jobFault reports whether a mint error is about the request, that is about
// the job's runner (its labels), rather than about the forge, the target's
// credentials or the pool: the forge refused the request as malformed
// (ErrBadInput: GitHub's 422 for more than 100 labels, any 4xx that is not
// about credentials, a missing object, a conflict or the rate limit).
func jobFault(err error) bool {
	return errors.Is(err, corral.ErrBadInput) && !errors.Is(err, corral.ErrUnauthorized) &&
		!errors.Is(err, corral.ErrRateLimited) && !errors.Is(err, corral.ErrUnavailable)
}

// refuseJob handles a create that failed because of the job itself: the
// job is refused (unroutable) with the forge's reason, visible in the API
// and its timeline, and the instance reserved for it is deleted. The pool
// does not back off: its other jobs are served at once.
func (s *Scheduler) refuseJob(ctx context.Context, in corral.Instance, cause error) {
	now := s.clock.Now()
	msg := cause.Error()
	reason := "the forge refused a runner for this job: " + msg
	s.log.Warn("job refused: the forge refused its runner", "instance", in.ID, "pool", in.PoolID, "job", in.JobID, "err", cause)
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		if _, ok, err := drainFailed(ctx, tx, in.ID, msg, "create failed: the job was refused", now); err != nil || !ok {
			return err
		}
		j, err := tx.Job(ctx, in.JobID)
		if err != nil {
			return err
		}
		if j.State != corral.JobRouted && j.State != corral.JobQueued {
			return nil // it runs elsewhere or is done
		}
		if err := j.Transition(corral.JobUnroutable); err != nil {
			return err
		}
		j.Routes, j.Reason, j.UpdatedAt = nil, reason, now
		if err := tx.PutJob(ctx, &j); err != nil {
			return err
		}
		return tx.AddEvent(ctx, corral.Event{JobID: j.ID, At: now, Kind: corral.EvUnroutable, InstanceID: in.ID, Detail: reason})
	})
	if err != nil {
		s.log.Warn("record a refused job", "instance", in.ID, "job", in.JobID, "err", err)
	}
	s.Wake()
}

// HoldNotWaiting is how long a job whose bound runner the forge refused as
// "no longer waiting" gets no new instance: long enough for the poller's
// next listings to tell the ledger how the job stands (running, or gone
// and finished), short enough that a listing that was merely stale costs
// the job little.
const HoldNotWaiting = 10 * time.Second

// jobNotWaiting handles a runner bound to one job (Forgejo one-job mode)
// that could not be made because the forge no longer lists the job as
// waiting: a runner of corral's took it (a short job can start and end
// between two polls) or it was cancelled. Not the pool's fault: the pool
// does not back off, so its other jobs are served at once. The reserved
// instance is deleted, the job's timeline says why, and the job gets no
// new instance for HoldNotWaiting, which spares the forge a call per
// scheduler pass until the poller records the job's state.
func (s *Scheduler) jobNotWaiting(ctx context.Context, in corral.Instance, cause error) {
	now := s.clock.Now()
	msg := cause.Error()
	s.mu.Lock()
	s.held[in.JobID] = now.Add(HoldNotWaiting)
	s.mu.Unlock()
	s.log.Info("no runner made: the forge no longer lists the job as waiting", "instance", in.ID, "pool", in.PoolID, "job", in.JobID, "err", cause)
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		if _, ok, err := drainFailed(ctx, tx, in.ID, msg, "create skipped: the job is no longer waiting", now); err != nil || !ok {
			return err
		}
		return tx.AddEvent(ctx, corral.Event{JobID: in.JobID, At: now, Kind: corral.EvNote, InstanceID: in.ID,
			Detail: fmt.Sprintf("no runner made: the forge no longer lists the job as waiting (taken or ended); no new instance for %s while the poller learns its state", HoldNotWaiting)})
	})
	if err != nil {
		s.log.Warn("record a job no longer waiting", "instance", in.ID, "job", in.JobID, "err", err)
	}
	s.Wake()
}

// isHeld reports whether job id gets no instance now (jobNotWaiting), and
// forgets holds that are over.
func (s *Scheduler) isHeld(id int64, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.held[id]
	if ok && !now.Before(until) {
		delete(s.held, id)
		return false
	}
	return ok
}

// dedupLabels returns the labels without blanks and case-insensitive
// repeats, each in its first spelling: a runner is registered once per
// label, however often the job names it.
func dedupLabels(ls []string) []string {
	out := make([]string, 0, min(len(ls), 16))
	seen := make(map[string]bool, min(len(ls), 16))
	for _, l := range ls {
		l = strings.TrimSpace(l)
		k := strings.ToLower(l)
		if l == "" || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, l)
	}
	return slices.Clip(out)
}
