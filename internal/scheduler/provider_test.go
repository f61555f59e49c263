package scheduler_test

import (
	"context"
	"encoding/json"
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
