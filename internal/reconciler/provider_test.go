package reconciler_test

import (
	"context"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// TestReconciler_ProviderSweepByRecordedProvider: an instance is judged
// vanished only by the provider instance recorded on it, not by its
// pool's: a pool that moved to another provider (or one whose provider
// was retired) must not make the new one drain the old one's instances.
func TestReconciler_ProviderSweepByRecordedProvider(t *testing.T) {
	g := newRig(t)
	started := g.clk.Now()
	g.put(corral.Instance{ID: "mine", State: corral.InstBusy, Provider: "fake", ProviderID: "p1", StartedAt: started})
	g.put(corral.Instance{ID: "theirs", State: corral.InstBusy, Provider: "rack-retired", ProviderID: "p2", StartedAt: started})
	g.put(corral.Instance{ID: "legacy", State: corral.InstBusy, ProviderID: "p3", StartedAt: started}) // no provider recorded: its pool's
	g.clk.Advance(time.Minute)
	if err := g.r.ProviderSweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]corral.InstanceState{"mine": corral.InstDraining, "legacy": corral.InstDraining, "theirs": corral.InstBusy} {
		if got := g.inst(id).State; got != want {
			t.Errorf("instance %s: %s, want %s", id, got, want)
		}
	}
}
