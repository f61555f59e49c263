package scheduler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/scheduler"
)

func (r *rig) pauseTarget(id string, paused bool) {
	r.t.Helper()
	if err := r.st.Update(context.Background(), func(tx corral.Tx) error {
		return tx.SetTargetPaused(context.Background(), id, paused, r.clk.Now())
	}); err != nil {
		r.t.Fatal(err)
	}
}

// A target paused in the store (through the API on any replica) takes no
// new job: its jobs wait, saying why, neither taking a free warm runner nor
// getting a new one; nothing is lost, and on resume they are served.
func TestScheduler_TargetPaused(t *testing.T) {
	warm := pool("warm", 10, 5)
	warm.MinIdle = 1
	r := newRig(t, 0, 0, warm)
	r.pass()
	if n := len(r.instances(corral.LiveInstanceStates...)); n != 1 {
		t.Fatalf("warm runners = %d, want 1", n)
	}
	r.pauseTarget(target.ID, true)
	a, b := r.queue("corral"), r.queue("corral")
	r.pass()
	r.pass()
	ins := r.instances(corral.LiveInstanceStates...)
	if len(ins) != 1 || ins[0].JobID != 0 {
		t.Fatalf("a paused target's jobs got runners: %+v", ins)
	}
	for _, j := range []int64{a, b} {
		got := r.job(j)
		if got.State != corral.JobRouted || !strings.Contains(got.Reason, "target "+target.ID+" is paused") {
			t.Fatalf("job %d: state %s, reason %q; want routed, waiting for the paused target", j, got.State, got.Reason)
		}
	}
	r.pauseTarget(target.ID, false)
	r.pass()
	served := 0
	for _, in := range r.instances(corral.LiveInstanceStates...) {
		if in.JobID == a || in.JobID == b {
			served++
		}
	}
	if served != 2 {
		t.Fatalf("after resume %d of 2 jobs have a runner", served)
	}
}

// The pause is read again by each reservation, under the limits lock: a
// pause that lands after the pass planned still stops the reservation.
func TestScheduler_TargetPausedAtReservation(t *testing.T) {
	paused := false
	r := newRigWith(t, func(c *scheduler.Config) {
		c.Store = lockHookStore{Store: c.Store, hook: func(ctx context.Context, tx corral.Tx, poolID string) error {
			paused = true
			return tx.SetTargetPaused(ctx, target.ID, true, time.Now())
		}}
	}, 0, 0, pool("only", 10, 5))
	j := r.queue("corral")
	r.pass()
	if !paused {
		t.Fatal("no reservation took the limits lock")
	}
	if n := len(r.instances(corral.LiveInstanceStates...)); n != 0 {
		t.Fatalf("%d instances reserved for a target paused before the reservation's check", n)
	}
	if got := r.job(j).Reason; !strings.Contains(got, "target "+target.ID+" is paused") {
		t.Fatalf("reason = %q", got)
	}
}
