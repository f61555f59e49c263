package scheduler_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/scheduler"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// pickyForge refuses, as GitHub answers 422, to mint a runner for a job
// that carries the label "forge-refuses" (GitHub does so for more than 100
// labels; the label stands for whatever the forge finds wrong with a job).
type pickyForge struct {
	fk      *fake.Forge
	refused *atomic.Int32
}

func (f pickyForge) Forge(corral.Target) (corral.Forge, error) { return f, nil }

func (f pickyForge) Parser(k corral.TargetKind) (corral.WebhookParser, error) { return f.fk.Parser(k) }

func (f pickyForge) OpenJobs(ctx context.Context) ([]corral.JobEvent, error) {
	return f.fk.OpenJobs(ctx)
}

func (f pickyForge) Job(ctx context.Context, id int64, repo string) (corral.JobEvent, error) {
	return f.fk.Job(ctx, id, repo)
}

func (f pickyForge) Runners(ctx context.Context) ([]corral.Runner, error) { return f.fk.Runners(ctx) }

func (f pickyForge) RemoveRunner(ctx context.Context, rn corral.Runner) error {
	return f.fk.RemoveRunner(ctx, rn)
}

func (f pickyForge) MintRunner(ctx context.Context, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	if slices.Contains(spec.Labels, "taken") {
		f.refused.Add(1)
		return corral.Bootstrap{}, &corral.CallError{Op: "job-handle", Target: "acme",
			Err: fmt.Errorf("forgejo job %d: no handle in the job listing: %w (%w)", spec.ForgeJobID, corral.ErrJobNotWaiting, corral.ErrNotFound)}
	}
	if slices.Contains(spec.Labels, "forge-refuses") {
		f.refused.Add(1)
		return corral.Bootstrap{}, &corral.CallError{Op: "generate-jitconfig", Target: "acme", Method: "POST", Status: 422,
			Err: fmt.Errorf("%w: Validation Failed: labels", corral.ErrBadInput)}
	}
	return f.fk.MintRunner(ctx, spec)
}

func TestScheduler_JobFault(t *testing.T) {
	t.Run("one job's bad labels do not stall its pool", func(t *testing.T) {
		var picky pickyForge
		r := newRigWith(t, func(c *scheduler.Config) {
			picky = pickyForge{c.Forges.(*fake.Forge), new(atomic.Int32)}
			c.Forges = picky
		}, 0, 0, pool("onprem", 10, 10))
		bad := r.queue("corral", "forge-refuses")
		r.pass() // the bad job's mint fails
		var good []int64
		for range 4 {
			good = append(good, r.queue("corral"))
		}
		r.pass()
		r.pass()
		starting := r.instances(corral.InstStarting)
		served := map[int64]bool{}
		for _, in := range starting {
			served[in.JobID] = true
		}
		for _, id := range good {
			if j := r.job(id); !served[id] {
				t.Errorf("good job %d not served: state %s, reason %q", id, j.State, j.Reason)
			}
		}
		j := r.job(bad)
		if j.State != corral.JobUnroutable || !strings.Contains(j.Reason, "the forge refused a runner for this job") ||
			!strings.Contains(j.Reason, "Validation Failed") {
			t.Fatalf("bad job: state %s reason %q, want unroutable with the forge's reason", j.State, j.Reason)
		}
		if picky.fk.Count("mint") != 4 || picky.refused.Load() != 1 {
			t.Fatalf("mints = %d and refused = %d, want 4 and 1 (each job once)", picky.fk.Count("mint"), picky.refused.Load())
		}
		var tl []corral.Event
		if err := r.st.View(context.Background(), func(tx corral.ReadTx) (err error) {
			tl, err = tx.Timeline(context.Background(), bad)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(tl, func(e corral.Event) bool {
			return e.Kind == corral.EvUnroutable && strings.Contains(e.Detail, "Validation Failed")
		}) {
			t.Fatalf("timeline %+v lacks unroutable with the reason", tl)
		}
	})
	// Forgejo one-job mode: a short job ran and ended between two polls,
	// so the ledger still shows it waiting and the forge refuses a second
	// runner for it. That is not the pool's fault (its next job must not
	// wait out a backoff), and the job gets no new instance for a while
	// (no forge call per pass) until the poller records how it stands.
	t.Run("a job no longer waiting neither backs the pool off nor loops", func(t *testing.T) {
		var picky pickyForge
		r := newRigWith(t, func(c *scheduler.Config) {
			picky = pickyForge{c.Forges.(*fake.Forge), new(atomic.Int32)}
			c.Forges = picky
		}, 0, 0, pool("onprem", 10, 10))
		gone := r.queue("corral", "taken")
		r.pass()
		next := r.queue("corral")
		for range 3 {
			r.pass()
		}
		if j := r.job(next); len(r.instances(corral.InstStarting)) != 1 || r.instances(corral.InstStarting)[0].JobID != next {
			t.Fatalf("the next job was not served at once: state %s, reason %q", j.State, j.Reason)
		}
		if n := picky.refused.Load(); n != 1 {
			t.Fatalf("%d mints for the job no longer waiting within its hold, want 1", n)
		}
		j := r.job(gone)
		if j.State == corral.JobUnroutable {
			t.Fatalf("the job no longer waiting was refused as unroutable: %q", j.Reason)
		}
		var tl []corral.Event
		if err := r.st.View(context.Background(), func(tx corral.ReadTx) (err error) {
			tl, err = tx.Timeline(context.Background(), gone)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(tl, func(e corral.Event) bool {
			return e.Kind == corral.EvNote && strings.Contains(e.Detail, "no longer lists the job as waiting")
		}) {
			t.Fatalf("timeline %+v lacks the note", tl)
		}
		// After the hold, a job still shown waiting is tried again (the
		// listing may have been stale).
		r.clk.Advance(scheduler.HoldNotWaiting)
		r.pass()
		if n := picky.refused.Load(); n != 2 {
			t.Fatalf("%d mints after the hold, want 2", n)
		}
	})
	t.Run("a provider fault still backs the pool off", func(t *testing.T) {
		r := newRig(t, 0, 0, pool("onprem", 10, 10))
		r.provs["onprem"].CreateErr = fmt.Errorf("disk full: %w", corral.ErrBadInput)
		r.queue("corral")
		r.pass()
		id := r.queue("corral")
		r.pass()
		if j := r.job(id); !strings.Contains(j.Reason, "backs off after provider errors") {
			t.Fatalf("reason %q, want the pool backing off", j.Reason)
		}
	})
	t.Run("runner labels are deduplicated case-insensitively", func(t *testing.T) {
		r := newRig(t, 0, 0, pool("onprem", 10, 10))
		labels := []string{"self-hosted", "corral"}
		for range 3000 {
			labels = append(labels, "Corral", "CORRAL", "run-7", "Run-7")
		}
		r.queue(labels...)
		r.pass()
		ins := r.instances(corral.InstStarting)
		if len(ins) != 1 {
			t.Fatalf("starting %d, want 1", len(ins))
		}
		if got := r.provs["onprem"].Specs[ins[0].ID].Labels; strings.Join(got, ",") != "self-hosted,corral,run-7" {
			t.Fatalf("runner labels: %d of them, first %q, want self-hosted,corral,run-7", len(got), got[:min(len(got), 6)])
		}
	})
}
