package scheduler

import (
	"context"
	"errors"

	"slices"
	"strings"

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
