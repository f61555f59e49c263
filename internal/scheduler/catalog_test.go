package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/scheduler"
)

// The live catalog: a pool's new limit holds from the next reservation on,
// without a new scheduler.
func TestScheduler_SetConfig(t *testing.T) {
	t.Run("a lowered max holds from the next reservation", func(t *testing.T) {
		p := pool("onprem", 10, 6)
		r := newRig(t, 0, 0, p)
		for i := 0; i < 3; i++ {
			r.queue("corral")
		}
		r.pass()
		if n := len(r.instances(corral.LiveInstanceStates...)); n != 3 {
			t.Fatalf("live = %d, want 3", n)
		}
		p.MaxInstances = 4
		r.s.SetConfig([]corral.Tenant{{ID: "default"}}, []corral.Target{target}, []corral.Pool{p})
		var last int64
		for i := 0; i < 5; i++ {
			last = r.queue("corral")
		}
		r.pass()
		if n := len(r.instances(corral.LiveInstanceStates...)); n != 4 {
			t.Fatalf("live = %d after max lowered to 4, want 4", n)
		}
		if j := r.job(last); !strings.Contains(j.Reason, "pool onprem is full (4/4)") {
			t.Fatalf("reason = %q", j.Reason)
		}
	})
	t.Run("a removed pool drains its free runners", func(t *testing.T) {
		warm := pool("warm", 10, 5)
		warm.MinIdle = 2
		other := pool("other", 20, 5)
		r := newRig(t, 0, 0, warm, other)
		r.pass()
		if got := byPool(r.instances(corral.LiveInstanceStates...)); got["warm"] != 2 {
			t.Fatalf("warm runners = %v, want 2 in pool warm", got)
		}
		r.s.SetConfig([]corral.Tenant{{ID: "default"}}, []corral.Target{target}, []corral.Pool{other})
		r.pass()
		r.pass()
		if got := byPool(r.instances(corral.LiveInstanceStates...)); got["warm"] != 0 {
			t.Fatalf("after removing pool warm: live %v, want none left in it", got)
		}
	})
}

// A pool's backoff is in the store: a new scheduler (a new leader) on the
// same store continues it instead of calling the failing provider again.
func TestScheduler_BackoffSurvivesLeaderChange(t *testing.T) {
	r := newRig(t, 0, 0, pool("onprem", 10, 5))
	r.provs["onprem"].CreateErr = fmt.Errorf("hypervisor down: %w", corral.ErrUnavailable)
	r.queue("corral")
	r.pass()
	calls := r.provs["onprem"].Count("create")
	if calls == 0 {
		t.Fatal("no create call")
	}
	var rows []corral.Backoff
	if err := r.st.View(context.Background(), func(tx corral.ReadTx) (err error) {
		rows, err = tx.Backoffs(context.Background())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].PoolID != "onprem" || rows[0].Kind != scheduler.BackoffProvider || !strings.Contains(rows[0].LastError, "hypervisor down") {
		t.Fatalf("backoff rows = %+v", rows)
	}
	// A new leader: a fresh scheduler on the same store, run for a moment.
	s2, err := scheduler.New(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s2.LoadBackoffs(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	s2.Wait()
	if got := r.provs["onprem"].Count("create"); got != calls {
		t.Fatalf("the new leader called the resting pool's provider: %d creates, want %d", got, calls)
	}
	j := r.job(1)
	if !strings.Contains(j.Reason, "backs off after provider errors") {
		t.Fatalf("job reason = %q, want the backoff", j.Reason)
	}
}
