package scheduler_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/scheduler"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// TestScheduler_ProviderRecorded: a reserved instance records the
// provider instance its pool names and carries the pool's provider options
// to it; an instance is deleted by the provider recorded on it (here one
// no pool names any more, as a retired provider), and by no other.
func TestScheduler_ProviderRecorded(t *testing.T) {
	p := pool("a", 0, 0)
	p.ProviderOptions = json.RawMessage(`{"docker_in_docker":true}`)
	retired := fake.NewProvider()
	r := newRigWith(t, func(c *scheduler.Config) { c.Providers["rack-gone"] = retired }, 0, 0, p)
	r.queue("corral")
	r.pass()
	ins := r.instances(corral.InstStarting)
	if len(ins) != 1 || ins[0].Provider != "a" {
		t.Fatalf("instances = %+v, want one recording provider a", ins)
	}
	if got := string(r.provs["a"].Specs[ins[0].ID].Options); got != string(p.ProviderOptions) {
		t.Errorf("spec options = %s, want the pool's %s", got, p.ProviderOptions)
	}

	// An instance of a pool gone from the config, made by rack-gone.
	ctx := context.Background()
	old := corral.Instance{ID: "old-1", Name: "corral-acme-old-1", PoolID: "gone", TenantID: "default", TargetID: "acme",
		Provider: "rack-gone", ProviderID: "x", State: corral.InstDraining, DrainAt: r.clk.Now(), Reason: "job completed"}
	if err := r.st.Update(ctx, func(tx corral.Tx) error { return tx.PutInstance(ctx, &old) }); err != nil {
		t.Fatal(err)
	}
	deletesA := r.provs["a"].Count("delete")
	r.pass()
	if n := retired.Count("delete"); n != 1 {
		t.Errorf("retired provider deleted %d times, want 1", n)
	}
	if n := r.provs["a"].Count("delete") - deletesA; n != 0 {
		t.Errorf("provider a was asked to delete %d instances it never made", n)
	}
	if left := r.instances(corral.InstDraining); len(left) != 0 {
		t.Errorf("still draining: %+v", left)
	}
}

// termStore is a store whose leader term can lapse (as leader.Fenced's
// Valid says once no renewal was seen for almost a lease).
type termStore struct {
	corral.Store
	lapsed atomic.Bool
}

func (s *termStore) Valid() error {
	if s.lapsed.Load() {
		return corral.ErrFenced
	}
	return nil
}

// TestScheduler_LapsedTermDoesNotAct: a scheduler whose term may have
// lapsed (a leader resumed after a pause) mints no runner credential and
// asks no provider to create or delete; the reserved instance waits, and
// is created once the term is valid again (or by the next leader).
func TestScheduler_LapsedTermDoesNotAct(t *testing.T) {
	var ts *termStore
	r := newRigWith(t, func(c *scheduler.Config) { ts = &termStore{Store: c.Store}; c.Store = ts }, 0, 0, pool("a", 0, 0))
	ts.lapsed.Store(true)
	r.queue("corral")
	r.pass()
	if n, m := r.provs["a"].Count("create"), r.forge.Count("mint"); n != 0 || m != 0 {
		t.Fatalf("with the term lapsed: %d creates, %d mints, want none", n, m)
	}
	if ins := r.instances(corral.InstPending); len(ins) != 1 {
		t.Fatalf("pending instances = %+v, want the one reservation left for the next leader", ins)
	}
	ts.lapsed.Store(false)
	r.pass()
	if n := r.provs["a"].Count("create"); n != 1 {
		t.Fatalf("with the term valid again: %d creates, want 1", n)
	}
	in := r.instances(corral.InstStarting)
	if len(in) != 1 {
		t.Fatalf("starting instances = %+v, want 1", in)
	}
	// A delete waits for a valid term too.
	ctx := context.Background()
	if err := r.s.Retire(ctx, in[0], "test", true); err != nil {
		t.Fatal(err)
	}
	ts.lapsed.Store(true)
	r.pass()
	if n := r.provs["a"].Count("delete"); n != 0 {
		t.Fatalf("with the term lapsed: %d deletes, want none", n)
	}
	ts.lapsed.Store(false)
	r.pass()
	if n := r.provs["a"].Count("delete"); n != 1 {
		t.Fatalf("with the term valid again: %d deletes, want 1", n)
	}
}
