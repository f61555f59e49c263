package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// apply writes a plan: assignments and reasons in one transaction, each
// reservation in the transaction that checks the limits, and retirements
// after the forge confirmed the runner is not busy.
// apply carries out a plan; reserved counts the instances it reserved.
func (s *Scheduler) apply(ctx context.Context, snap snapshot, p plan) (reserved int, err error) {
	if len(p.assign) > 0 || len(p.reasons) > 0 {
		err = s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
			for _, a := range p.assign {
				in, err := tx.Instance(ctx, a.instID)
				if err != nil {
					return err
				}
				if !free(in) {
					continue // taken meanwhile
				}
				j, err := tx.Job(ctx, a.jobID)
				if err != nil {
					return err
				}
				if j.State != corral.JobRouted {
					continue // started elsewhere or finished meanwhile
				}
				in.JobID, in.UpdatedAt = a.jobID, snap.now
				if err := tx.PutInstance(ctx, &in); err != nil {
					return err
				}
				if err := tx.AddEvent(ctx, corral.Event{JobID: a.jobID, At: snap.now, Kind: corral.EvNote,
					InstanceID: in.ID, Detail: "given free runner " + in.Name}); err != nil {
					return err
				}
			}
			for id, why := range p.reasons {
				j, err := tx.Job(ctx, id)
				if err != nil {
					return err
				}
				if j.State != corral.JobRouted {
					continue
				}
				j.Reason, j.UpdatedAt = why, snap.now
				if err := tx.PutJob(ctx, &j); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("scheduler assign: %w", err)
		}
	}
	got, err := s.reserveAll(ctx, p.reserve)
	for _, in := range got {
		if in != nil {
			reserved++
			// The reservation recorded the first attempt: create now.
			s.goCall(ctx, *in, s.createClaimed)
		}
	}
	if err != nil {
		return reserved, err
	}
	for _, in := range p.retire {
		if err := s.retire(ctx, in, "idle above min idle and headroom", false); err != nil && ctx.Err() == nil {
			s.log.Info("scale-down skipped", "instance", in.ID, "err", err)
		}
	}
	return reserved, nil
}

// reserveAll reserves every request of a pass in one transaction (one
// durable commit for a burst instead of one per job), each checked under
// LockLimits as reserve does. If that transaction fails, each request is
// tried on its own, so one bad request cannot hold back the others.
func (s *Scheduler) reserveAll(ctx context.Context, reqs []request) ([]*corral.Instance, error) {
	switch len(reqs) {
	case 0:
		return nil, nil
	case 1:
		in, err := s.reserve(ctx, reqs[0])
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.log.Warn("reservation failed", "err", err)
		}
		return []*corral.Instance{in}, nil
	}
	now := s.clock.Now()
	got := make([]*corral.Instance, len(reqs))
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		for i, r := range reqs {
			in, err := s.reserveIn(ctx, tx, r, now)
			if err != nil {
				return err
			}
			got[i] = in
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.log.Info("batched reservation failed; reserving one by one", "requests", len(reqs), "err", err)
		out := make([]*corral.Instance, len(reqs))
		for i, r := range reqs {
			in, err := s.reserve(ctx, r)
			if err != nil {
				if ctx.Err() != nil {
					return out, ctx.Err()
				}
				s.log.Warn("reservation failed", "err", err)
				continue
			}
			out[i] = in
		}
		return out, nil
	}
	for i, r := range reqs {
		s.recordReservation(got[i], r)
	}
	return got, nil
}

// reserve inserts a pending instance in the first pool of r.routes whose
// global, tenant and pool limits leave room, checked under LockLimits in
// the same transaction as the insert. It returns the instance, or nil when
// every pool is full.
func (s *Scheduler) reserve(ctx context.Context, r request) (*corral.Instance, error) {
	now := s.clock.Now()
	var got *corral.Instance
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) (err error) {
		got, err = s.reserveIn(ctx, tx, r, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reserve instance: %w", err)
	}
	s.recordReservation(got, r)
	return got, nil
}

func (s *Scheduler) recordReservation(got *corral.Instance, r request) {
	if got != nil {
		s.rec.InstanceReserved(got.PoolID)
	} else if len(r.routes) > 0 {
		s.rec.LimitHit(r.routes[0].PoolID)
	}
}

// reserveIn is one reservation inside tx (see reserve).
func (s *Scheduler) reserveIn(ctx context.Context, tx corral.Tx, r request, now time.Time) (*corral.Instance, error) {
	if r.job != nil && !r.fresh {
		j, err := tx.Job(ctx, r.job.ID)
		if err != nil {
			return nil, err
		}
		if j.State != corral.JobRouted {
			return nil, nil // started or finished meanwhile
		}
		ins, err := tx.Instances(ctx, corral.InstanceFilter{JobID: j.ID,
			States: []corral.InstanceState{corral.InstPending, corral.InstStarting, corral.InstIdle}})
		if err != nil {
			return nil, err
		}
		if len(ins) > 0 {
			return nil, nil // covered meanwhile (another replica)
		}
	}
	var full []string
	for _, rt := range r.routes {
		pool, ok := s.v().pools[rt.PoolID]
		if !ok {
			continue
		}
		if err := tx.LockLimits(ctx, r.tenantID, pool.ID); err != nil {
			return nil, err
		}
		if why, err := s.room(ctx, tx, pool, r.tenantID, r.targetID); err != nil {
			return nil, err
		} else if why != "" {
			full = append(full, why)
			continue
		}
		in := s.newInstance(pool, rt, r, now)
		if err := tx.PutInstance(ctx, &in); err != nil {
			return nil, err
		}
		if r.job != nil {
			if err := tx.AddEvent(ctx, corral.Event{JobID: r.job.ID, At: now, Kind: corral.EvInstanceRequested,
				InstanceID: in.ID, Detail: fmt.Sprintf("%s in pool %s", in.Name, pool.ID)}); err != nil {
				return nil, err
			}
		}
		return &in, nil
	}
	if r.job != nil && len(full) > 0 {
		j, err := tx.Job(ctx, r.job.ID)
		if err != nil {
			return nil, err
		}
		why := "waiting for room: " + strings.Join(full, "; ")
		if j.Reason != why {
			j.Reason, j.UpdatedAt = why, now
			return nil, tx.PutJob(ctx, &j)
		}
	}
	return nil, nil
}

// room returns "" when the pool, its tenant and the whole controller can
// take one more instance, or which limit is reached.
func (s *Scheduler) room(ctx context.Context, tx corral.Tx, pool corral.Pool, tenantID, targetID string) (string, error) {
	// Read at each reservation, under the limits lock: a pool paused or
	// drained through any replica gets nothing new from here on.
	states, err := tx.PoolStates(ctx)
	if err != nil {
		return "", err
	}
	if st, ok := states[pool.ID]; ok && st != corral.PoolActive {
		return fmt.Sprintf("pool %s is %s", pool.ID, st), nil
	}
	if targetID != "" {
		paused, err := tx.PausedTargets(ctx)
		if err != nil {
			return "", err
		}
		if paused[targetID] {
			return fmt.Sprintf("target %s is paused", targetID), nil
		}
	}
	if pool.MaxInstances > 0 {
		n, err := tx.CountInstances(ctx, corral.CountFilter{PoolID: pool.ID})
		if err != nil {
			return "", err
		}
		if n >= pool.MaxInstances {
			return fmt.Sprintf("pool %s is full (%d/%d)", pool.ID, n, pool.MaxInstances), nil
		}
	}
	if t, ok := s.v().tenants[tenantID]; ok && t.MaxInstances > 0 {
		n, err := tx.CountInstances(ctx, corral.CountFilter{TenantID: tenantID})
		if err != nil {
			return "", err
		}
		if n >= t.MaxInstances {
			return fmt.Sprintf("tenant %s is full (%d/%d)", tenantID, n, t.MaxInstances), nil
		}
	}
	if s.cfg.MaxInstances > 0 {
		n, err := tx.CountInstances(ctx, corral.CountFilter{})
		if err != nil {
			return "", err
		}
		if n >= s.cfg.MaxInstances {
			return fmt.Sprintf("global limit reached (%d/%d)", n, s.cfg.MaxInstances), nil
		}
	}
	return "", nil
}

func (s *Scheduler) newInstance(pool corral.Pool, rt corral.Route, r request, now time.Time) corral.Instance {
	id := newID()
	prefix := "corral"
	if t, ok := s.v().targets[r.targetID]; ok && t.RunnerPrefix != "" {
		prefix = t.RunnerPrefix
	}
	in := corral.Instance{
		ID: id, Name: prefix + "-" + id[:12], PoolID: pool.ID, TenantID: r.tenantID, TargetID: r.targetID,
		Provider: pool.Provider, State: corral.InstPending, Flavor: rt.Flavor, CreatedAt: now, UpdatedAt: now,
		// The reserving scheduler creates it at once: the attempt is
		// recorded with the reservation, in the same commit.
		Attempts: 1,
	}
	if lt := pool.MaxLifetime; lt > 0 {
		in.ExpiresAt = now.Add(lt)
	}
	switch {
	case r.labels != nil:
		in.Labels = append([]string(nil), r.labels...)
	case r.job != nil:
		in.Labels = dedupLabels(r.job.Labels)
		in.JobID = r.job.ID
	}
	return in
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(errors.New("crypto/rand failed: " + err.Error()))
	}
	return hex.EncodeToString(b[:])
}
