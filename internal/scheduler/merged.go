package scheduler

import (
	"context"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
)

// The webhook path of a leader makes one durable write: the ingest of a
// queued job calls ReserveFor inside its own transaction, so the job, its
// delivery id and its instance commit together, and the create starts
// right after that commit instead of after a pass and a second commit.
//
//	webhook ──> ingest tx: delivery id, job (routed), ReserveFor ──> commit ──> 202
//	                                         │ marks the instance in flight     │
//	                                         └── done(true) ──> claims ──> Run: mint + create
//	                                             done(false): unmarked, nothing to create
//
// The instance is marked in flight before the commit, so that a pass that
// sees it pending in the store meanwhile does not take it for one a crash
// left behind and create it a second time.

var _ ledger.Reserver = (*Scheduler)(nil)

// claimQueue bounds the claims waiting for Run; beyond it a claim is left
// to the next pass (which adopts the pending instance).
const claimQueue = 4096

// ReserveFor reserves an instance for job j, just routed in tx, checking
// the limits in tx as every reservation does. It leaves the job to the
// next pass (nil, nil) when one of its pools keeps warm runners (a free one
// may serve it), when every pool rests after failures, or when no pool has
// room (the job's reason then says so, written in tx).
func (s *Scheduler) ReserveFor(ctx context.Context, tx corral.Tx, j corral.Job, now time.Time) (func(committed bool), error) {
	v := s.v()
	var routes []corral.Route
	for _, rt := range j.Routes {
		pool, ok := v.pools[rt.PoolID]
		if !ok {
			continue
		}
		if keepsWarm(pool) {
			return nil, nil
		}
		if rest, _ := s.back.resting(pool.ID, now); rest {
			continue
		}
		if rest, _ := s.refused.resting(pool.ID, now); rest {
			continue
		}
		routes = append(routes, rt)
	}
	if len(routes) == 0 {
		return nil, nil
	}
	r := request{job: &j, fresh: true, routes: routes, targetID: j.TargetID, tenantID: j.TenantID}
	in, err := s.reserveIn(ctx, tx, r, now)
	if err != nil || in == nil {
		return nil, err
	}
	got := *in
	s.mu.Lock()
	s.inflight[got.ID] = true
	s.mu.Unlock()
	var once bool
	return func(committed bool) {
		if once {
			return
		}
		once = true
		if !committed {
			s.unmark(got.ID)
			return
		}
		s.recordReservation(&got, r)
		select {
		case s.claims <- got:
		default:
			s.unmark(got.ID)
			s.Wake()
		}
	}, nil
}

// keepsWarm reports whether a pool may have free runners waiting for jobs.
func keepsWarm(p corral.Pool) bool {
	return p.MinIdle > 0 || len(p.Schedules) > 0 || p.HeadroomCount > 0 || p.HeadroomPercent > 0
}

func (s *Scheduler) unmark(id string) {
	s.mu.Lock()
	delete(s.inflight, id)
	s.mu.Unlock()
}

// serveClaims creates the instances that webhooks reserved until ctx ends;
// the claims left then are unmarked, so that a pass adopts them.
func (s *Scheduler) serveClaims(ctx context.Context) {
	for {
		select {
		case in := <-s.claims:
			s.goClaimed(ctx, in, s.createClaimed)
		case <-ctx.Done():
			for {
				select {
				case in := <-s.claims:
					s.unmark(in.ID)
				default:
					return
				}
			}
		}
	}
}
