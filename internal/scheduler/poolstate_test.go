package scheduler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/scheduler"
)

func (r *rig) setState(pool string, st corral.PoolState) {
	r.t.Helper()
	if err := r.st.Update(context.Background(), func(tx corral.Tx) error {
		return tx.SetPoolState(context.Background(), pool, st, r.clk.Now())
	}); err != nil {
		r.t.Fatal(err)
	}
}

// A pool's state in the store (set through the API on any replica) rules
// every pass: paused and draining pools get nothing new, a paused pool
// keeps its runners, a draining one loses its free runners, and a job
// that another pool accepts is served there.
func TestScheduler_PoolStates(t *testing.T) {
	t.Run("paused: nothing new, nothing removed", func(t *testing.T) {
		warm := pool("warm", 10, 5)
		warm.MinIdle = 1
		r := newRig(t, 0, 0, warm)
		r.pass()
		if n := byPool(r.instances(corral.LiveInstanceStates...))["warm"]; n != 1 {
			t.Fatalf("warm runners = %d, want 1", n)
		}
		r.setState("warm", corral.PoolPaused)
		a, b := r.queue("corral"), r.queue("corral")
		r.pass()
		r.pass()
		ins := r.instances(corral.LiveInstanceStates...)
		if len(ins) != 1 || ins[0].State == corral.InstDraining {
			t.Fatalf("a paused pool changed its instances: %+v", ins)
		}
		// The warm runner may serve one job; the other waits, saying why.
		waiting := r.job(b)
		if ins[0].JobID == b {
			waiting = r.job(a)
		}
		if !strings.Contains(waiting.Reason, "pool warm is paused") {
			t.Fatalf("reason = %q", waiting.Reason)
		}
		r.setState("warm", corral.PoolActive)
		r.pass()
		if n := len(r.instances(corral.LiveInstanceStates...)); n < 2 {
			t.Fatalf("resumed pool: %d live instances, want the waiting job served", n)
		}
	})
	t.Run("draining: free runners go, jobs go to another pool", func(t *testing.T) {
		first := pool("first", 10, 5)
		first.MinIdle = 2
		second := pool("second", 20, 5)
		r := newRig(t, 0, 0, first, second)
		r.pass()
		if got := byPool(r.instances(corral.LiveInstanceStates...)); got["first"] != 2 {
			t.Fatalf("warm runners = %v, want 2 in pool first", got)
		}
		r.setState("first", corral.PoolDraining)
		j := r.queue("corral")
		r.pass()
		r.pass()
		live := byPool(r.instances(corral.InstPending, corral.InstStarting, corral.InstIdle, corral.InstBusy))
		if live["first"] != 0 || live["second"] != 1 {
			t.Fatalf("after draining first: %v, want none in first and the job's instance in second", live)
		}
		for _, in := range r.instances(corral.InstPending, corral.InstStarting, corral.InstIdle) {
			if in.PoolID == "second" && in.JobID != j {
				t.Fatalf("instance %s in second is not the job's (%d)", in.ID, in.JobID)
			}
		}
	})
	t.Run("a job whose only pool drains waits, saying why", func(t *testing.T) {
		// (The plan reads the states once per pass; each reservation
		// reads them again under the limits lock, which no test here
		// interleaves.)
		r := newRig(t, 0, 0, pool("only", 10, 5))
		j := r.queue("corral")
		r.setState("only", corral.PoolDraining)
		r.pass()
		if n := len(r.instances(corral.LiveInstanceStates...)); n != 0 {
			t.Fatalf("%d instances in a draining pool", n)
		}
		if got := r.job(j).Reason; !strings.Contains(got, "pool only is draining") {
			t.Fatalf("reason = %q", got)
		}
	})
}

// lockHookStore runs hook inside every transaction right after LockLimits:
// a test's way to commit something "just before" a reservation's lock.
type lockHookStore struct {
	corral.Store
	hook func(ctx context.Context, tx corral.Tx, poolID string) error
}

func (s lockHookStore) Update(ctx context.Context, fn func(corral.Tx) error) error {
	return s.Store.Update(ctx, func(tx corral.Tx) error { return fn(lockHookTx{tx, s.hook}) })
}

type lockHookTx struct {
	corral.Tx
	hook func(ctx context.Context, tx corral.Tx, poolID string) error
}

func (t lockHookTx) LockLimits(ctx context.Context, tenantID, poolID string) error {
	if err := t.Tx.LockLimits(ctx, tenantID, poolID); err != nil {
		return err
	}
	return t.hook(ctx, t.Tx, poolID)
}

// The state is read again by each reservation, under the limits lock: a
// drain that lands after the pass planned (another replica's API call)
// still stops the reservation.
func TestScheduler_PoolStateAtReservation(t *testing.T) {
	drained := false
	r := newRigWith(t, func(c *scheduler.Config) {
		c.Store = lockHookStore{Store: c.Store, hook: func(ctx context.Context, tx corral.Tx, poolID string) error {
			drained = true
			return tx.SetPoolState(ctx, poolID, corral.PoolDraining, time.Now())
		}}
	}, 0, 0, pool("only", 10, 5))
	j := r.queue("corral")
	r.pass()
	if !drained {
		t.Fatal("no reservation took the limits lock: the plan never got to reserve")
	}
	if n := len(r.instances(corral.LiveInstanceStates...)); n != 0 {
		t.Fatalf("%d instances reserved in a pool drained before the reservation's check", n)
	}
	if got := r.job(j).Reason; !strings.Contains(got, "pool only is draining") {
		t.Fatalf("reason = %q", got)
	}
}
