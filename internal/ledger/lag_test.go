package ledger_test

import (
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// TestLedger_WebhookLag: how late a target's latest webhook came after its
// event, for 30 s; a duplicate delivery or a sweep's observation does not
// count, and a forge clock ahead of corral's reads as no lag.
func TestLedger_WebhookLag(t *testing.T) {
	l, _, clk := setup(t)
	if got := l.WebhookLag(target.ID); got != 0 {
		t.Fatalf("lag before any webhook = %s, want 0", got)
	}
	d := delivery("d1", corral.ActionQueued, 1, "", "self-hosted", "linux")
	d.Job.At = clk.Now().Add(-7 * time.Second)
	ingest(t, l, d)
	if got := l.WebhookLag(target.ID); got != 7*time.Second {
		t.Fatalf("lag = %s, want 7s", got)
	}
	if got := l.WebhookLag("other-target"); got != 0 {
		t.Fatalf("another target's lag = %s, want 0", got)
	}
	clk.Advance(10 * time.Second)
	dup := delivery("d1", corral.ActionQueued, 1, "", "self-hosted", "linux") // a redelivery of d1
	dup.Job.At = clk.Now().Add(-time.Hour)
	if res := ingest(t, l, dup); !res.Duplicate {
		t.Fatal("redelivery not taken for a duplicate")
	}
	if got := l.WebhookLag(target.ID); got != 7*time.Second {
		t.Fatalf("lag after a duplicate = %s, want 7s (unchanged)", got)
	}
	if _, err := l.Observe(t.Context(), target, corral.JobEvent{Action: corral.ActionInProgress, ForgeJobID: 1, RunID: 7,
		Labels: []string{"self-hosted", "linux"}, At: clk.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := l.WebhookLag(target.ID); got != 7*time.Second {
		t.Fatalf("lag after a sweep's observation = %s, want 7s (unchanged)", got)
	}
	d2 := delivery("d2", corral.ActionQueued, 2, "", "self-hosted", "linux")
	d2.Job.At = clk.Now().Add(2 * time.Second) // the forge's clock runs ahead
	ingest(t, l, d2)
	if got := l.WebhookLag(target.ID); got != 0 {
		t.Fatalf("lag of an event stamped in corral's future = %s, want 0", got)
	}
	d3 := delivery("d3", corral.ActionQueued, 3, "", "self-hosted", "linux")
	d3.Job.At = clk.Now().Add(-3 * time.Second)
	ingest(t, l, d3)
	clk.Advance(31 * time.Second)
	if got := l.WebhookLag(target.ID); got != 0 {
		t.Fatalf("lag 31 s after the last webhook = %s, want 0 (no webhook, no backlog)", got)
	}
}
