package scheduler

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// plan is what one pass decided, before any write.
type plan struct {
	assign  []assignment // free instance -> waiting job
	reserve []request    // new instances to reserve
	retire  []corral.Instance
	reasons map[int64]string // job id -> why it still waits (only changes)
	// more: the batch cap left demand unplanned; the scheduler passes
	// again at once (a burst is not served one batch per interval).
	more bool
}

type assignment struct {
	instID string
	jobID  int64
}

// request asks for one instance in the first pool of pools with room.
type request struct {
	job      *corral.Job // nil for a warm runner
	fresh    bool        // job was routed in this very transaction: no instance can cover it yet
	routes   []corral.Route
	targetID string
	tenantID string
	labels   []string // nil = the job's labels (bound runner) or warm labels
}

// free reports whether an instance can still take any job.
func free(in corral.Instance) bool {
	return in.JobID == 0 && (in.State == corral.InstPending || in.State == corral.InstStarting || in.State == corral.InstIdle)
}

func (s *Scheduler) plan(snap snapshot) plan {
	p := plan{reasons: map[int64]string{}}
	covered := map[int64]bool{}
	live := snap.live // pool -> live instances (for the in-memory pre-check); read only
	freeBy := map[string][]*corral.Instance{}
	for i := range snap.insts {
		in := &snap.insts[i]
		if in.JobID != 0 && in.State != corral.InstBusy && in.State != corral.InstDraining {
			covered[in.JobID] = true
		}
		if free(*in) {
			freeBy[in.PoolID] = append(freeBy[in.PoolID], in)
		}
	}
	taken := map[string]bool{}
	demand := map[string]int{} // waiting jobs per first pool
	jobs := append([]corral.Job(nil), snap.jobs...)
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].ID < jobs[j].ID })
	planned := map[string]int{}
	for i := range jobs {
		j := &jobs[i]
		if len(j.Routes) > 0 {
			demand[j.Routes[0].PoolID]++
		}
		if covered[j.ID] {
			continue
		}
		if s.isHeld(j.ID, snap.now) {
			continue // the forge lists it waiting no more: the next poll tells how it stands
		}
		if snap.pausedTargets[j.TargetID] {
			if reason := "waiting: target " + j.TargetID + " is paused"; reason != j.Reason {
				p.reasons[j.ID] = reason
			}
			continue
		}
		if in := s.takeFree(j, freeBy, taken, snap.states); in != nil {
			p.assign = append(p.assign, assignment{instID: in.ID, jobID: j.ID})
			continue
		}
		if len(p.reserve) >= s.cfg.ReserveBatch {
			p.more = true
			continue
		}
		var why []string
		var routes []corral.Route
		for _, r := range j.Routes {
			pool, ok := snap.cfg.pools[r.PoolID]
			if !ok {
				why = append(why, fmt.Sprintf("pool %s is no longer configured", r.PoolID))
				continue
			}
			if st, ok := snap.states[pool.ID]; ok && st != corral.PoolActive {
				why = append(why, fmt.Sprintf("pool %s is %s", pool.ID, st))
				continue
			}
			if rest, e := s.back.resting(pool.ID, snap.now); rest {
				why = append(why, fmt.Sprintf("pool %s backs off after provider errors (%s)", pool.ID, e))
				continue
			}
			if rest, e := s.refused.resting(pool.ID, snap.now); rest {
				why = append(why, fmt.Sprintf("pool %s backs off: the forge refused its runner (%s)", pool.ID, e))
				continue
			}
			if pool.MaxInstances > 0 && live[pool.ID]+planned[pool.ID] >= pool.MaxInstances {
				why = append(why, fmt.Sprintf("pool %s is full (%d/%d)", pool.ID, live[pool.ID]+planned[pool.ID], pool.MaxInstances))
				continue
			}
			routes = append(routes, r)
		}
		if len(routes) == 0 {
			reason := "waiting for room: " + strings.Join(why, "; ")
			if reason != j.Reason {
				p.reasons[j.ID] = reason
			}
			continue
		}
		planned[routes[0].PoolID]++
		p.reserve = append(p.reserve, request{job: j, routes: routes, targetID: j.TargetID, tenantID: j.TenantID})
	}
	s.planWarm(snap, &p, freeBy, taken, demand, live, planned)
	return p
}

// takeFree finds a free instance that can serve the job: same target, a
// pool the job accepts with the same flavor, labels that cover the job's.
func (s *Scheduler) takeFree(j *corral.Job, freeBy map[string][]*corral.Instance, taken map[string]bool, states map[string]corral.PoolState) *corral.Instance {
	for _, r := range j.Routes {
		if states[r.PoolID] == corral.PoolDraining {
			continue // its free runners are going
		}
		for _, in := range freeBy[r.PoolID] {
			if taken[in.ID] || in.TargetID != j.TargetID || in.Flavor != r.Flavor {
				continue
			}
			if !s.cfg.Covers(in.Labels, j.Labels) {
				continue
			}
			taken[in.ID] = true
			return in
		}
	}
	return nil
}

// planWarm keeps min idle plus headroom free runners per pool and picks
// free runners above that to scale down.
func (s *Scheduler) planWarm(snap snapshot, p *plan, freeBy map[string][]*corral.Instance, taken map[string]bool, demand, live, planned map[string]int) {
	for _, id := range snap.cfg.order {
		pool := snap.cfg.pools[id]
		want := pool.MinIdleAt(snap.now) + pool.Headroom(demand[id]+snap.busy[id])
		var spare []*corral.Instance
		for _, in := range freeBy[id] {
			if !taken[in.ID] {
				spare = append(spare, in)
			}
		}
		switch snap.states[id] {
		case corral.PoolPaused: // nothing new, nothing removed
			continue
		case corral.PoolDraining: // nothing new; free runners go
			for _, in := range spare {
				if in.State != corral.InstPending {
					p.retire = append(p.retire, *in)
				}
			}
			continue
		}
		if n := len(spare); n < want {
			target := s.warmTarget(pool)
			if target == "" {
				continue
			}
			if len(p.reserve)+want-n > s.cfg.ReserveBatch {
				p.more = true
			}
			for k := 0; k < want-n && len(p.reserve) < s.cfg.ReserveBatch; k++ {
				if rest, _ := s.back.resting(id, snap.now); rest {
					break
				}
				if rest, _ := s.refused.resting(id, snap.now); rest {
					break
				}
				if pool.MaxInstances > 0 && live[id]+planned[id] >= pool.MaxInstances {
					break
				}
				planned[id]++
				p.reserve = append(p.reserve, request{
					routes: []corral.Route{{PoolID: id, Flavor: pool.Flavor}}, targetID: target,
					tenantID: pool.TenantID, labels: s.cfg.WarmLabels(pool),
				})
			}
			continue
		}
		// Above the target: runners created for jobs that went elsewhere
		// go first, then the longest idle past the idle timeout.
		warm := s.cfg.WarmLabels(pool)
		sort.SliceStable(spare, func(a, b int) bool {
			wa, wb := sameSet(spare[a].Labels, warm), sameSet(spare[b].Labels, warm)
			if wa != wb {
				return !wa
			}
			return spare[a].UpdatedAt.Before(spare[b].UpdatedAt)
		})
		for _, in := range spare[:len(spare)-want] {
			if in.State == corral.InstPending {
				continue // not created yet; looked at again once it is
			}
			if sameSet(in.Labels, warm) && snap.now.Sub(in.UpdatedAt) < idleTimeout(pool) {
				continue
			}
			p.retire = append(p.retire, *in)
		}
	}
	// A pool removed from the catalog drains: its free runners go (those
	// bound to a job serve it first); pending ones fail their create.
	for id, ins := range freeBy {
		if _, ok := snap.cfg.pools[id]; ok {
			continue
		}
		for _, in := range ins {
			if !taken[in.ID] && in.State != corral.InstPending {
				p.retire = append(p.retire, *in)
			}
		}
	}
}

func idleTimeout(p corral.Pool) time.Duration {
	if p.IdleTimeout > 0 {
		return p.IdleTimeout
	}
	return 10 * time.Minute
}

// warmTarget is the target a pool's warm runners register at: its first
// target, or the first target of its tenant.
func (s *Scheduler) warmTarget(p corral.Pool) string {
	if len(p.Targets) > 0 {
		return p.Targets[0]
	}
	ids := make([]string, 0, len(s.v().targets))
	for id, t := range s.v().targets {
		if t.TenantID == p.TenantID {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]bool, len(a))
	for _, x := range a {
		m[strings.ToLower(x)] = true
	}
	for _, x := range b {
		if !m[strings.ToLower(x)] {
			return false
		}
	}
	return true
}
