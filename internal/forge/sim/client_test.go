package sim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func TestNewClient(t *testing.T) {
	for _, tg := range []corral.Target{
		{ID: "a", URL: "not a url"},
		{ID: "a", URL: "ftp://127.0.0.1"},
		{URL: "http://127.0.0.1:1"},
	} {
		if _, err := NewClient(tg, nil); !errors.Is(err, corral.ErrBadInput) {
			t.Errorf("NewClient(%+v) err = %v, want ErrBadInput", tg, err)
		}
	}
}

func TestClient_MintRunner(t *testing.T) {
	ctx := context.Background()
	t.Run("409 from a leftover registration is resolved", func(t *testing.T) {
		f := newFixture(t, Options{})
		id := f.sim.QueueJob("t1", JobSpec{Labels: []string{"x"}, Duration: 10 * time.Millisecond})
		stale, err := f.client.MintRunner(ctx, corral.RunnerSpec{Name: "corral-1", Labels: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		// corral crashed after minting; on restart it mints the same name.
		b, err := f.client.MintRunner(ctx, corral.RunnerSpec{Name: "corral-1", Labels: []string{"x"}})
		if err != nil {
			t.Fatalf("second mint: %v", err)
		}
		if b.RunnerID == stale.RunnerID {
			t.Fatalf("got the stale runner id %d", b.RunnerID)
		}
		st := f.sim.Stats()
		if st.Calls["POST jitconfig"] != 3 || st.Calls["DELETE runner"] != 1 || st.Registered != 1 {
			t.Errorf("calls %v registered %d", st.Calls, st.Registered)
		}
		// The stale credential is dead; the new one runs the job.
		if err := startRunner(t, stale).wait(t, 5*time.Second); err == nil {
			t.Error("stale credential connected")
		}
		if err := startRunner(t, b).wait(t, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if j := f.job(t, id); j.Completions != 1 || j.RunnerName != "corral-1" {
			t.Errorf("job = %+v", j)
		}
	})
	t.Run("409 from a busy runner stays a conflict", func(t *testing.T) {
		f := newFixture(t, Options{})
		id := f.sim.QueueJob("t1", JobSpec{Labels: []string{"x"}, Duration: time.Minute})
		b, err := f.client.MintRunner(ctx, corral.RunnerSpec{Name: "corral-1", Labels: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		startRunner(t, b)
		eventually(t, 5*time.Second, "job running", func() bool { return f.job(t, id).State == StateInProgress })
		_, err = f.client.MintRunner(ctx, corral.RunnerSpec{Name: "corral-1", Labels: []string{"x"}})
		var ce *corral.CallError
		if !errors.Is(err, corral.ErrConflict) || !errors.As(err, &ce) || ce.Status != http.StatusConflict {
			t.Fatalf("err = %v, want a 409 ErrConflict CallError", err)
		}
		if j := f.job(t, id); j.State != StateInProgress {
			t.Errorf("busy runner's job = %+v", j)
		}
	})
	t.Run("validation", func(t *testing.T) {
		f := newFixture(t, Options{})
		_, err := f.client.MintRunner(ctx, corral.RunnerSpec{Name: "corral-1"})
		if !errors.Is(err, corral.ErrBadInput) {
			t.Errorf("no labels: err = %v", err)
		}
	})
	t.Run("unknown target", func(t *testing.T) {
		f := newFixture(t, Options{})
		c := f.newClient(t, corral.Target{ID: "nope", URL: f.http.URL})
		if _, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "a", Labels: []string{"x"}}); !errors.Is(err, corral.ErrNotFound) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("target path with a slash", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.sim.AddTarget("octo/repo", f.hooks.srv.URL, hookSecret)
		c := f.newClient(t, corral.Target{ID: "octo", Path: "octo/repo", URL: f.http.URL + "/"})
		b, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "a", Labels: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		if rs := f.sim.Runners("octo/repo"); len(rs) != 1 || rs[0].ID != b.RunnerID {
			t.Errorf("runners = %+v", rs)
		}
	})
}

func TestClient_RemoveRunner(t *testing.T) {
	ctx := context.Background()
	t.Run("busy is refused", func(t *testing.T) {
		f := newFixture(t, Options{})
		id := f.sim.QueueJob("t1", JobSpec{Labels: []string{"x"}, Duration: time.Minute})
		b, err := f.client.MintRunner(ctx, corral.RunnerSpec{Name: "corral-1", Labels: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		startRunner(t, b)
		eventually(t, 5*time.Second, "job running", func() bool { return f.job(t, id).State == StateInProgress })
		err = f.client.RemoveRunner(ctx, corral.Runner{ID: b.RunnerID, Name: "corral-1"})
		var ce *corral.CallError
		if !errors.Is(err, corral.ErrBusy) || !errors.As(err, &ce) {
			t.Fatalf("err = %v, want ErrBusy", err)
		}
		if ce.Status != http.StatusUnprocessableEntity || ce.Method != http.MethodDelete || ce.Op != "remove-runner" ||
			ce.Target != "t1" || !strings.Contains(ce.URL, "/runners/") || ce.RequestID == "" {
			t.Errorf("call error = %+v", ce)
		}
		if rs := f.sim.Runners("t1"); len(rs) != 1 || !rs[0].Busy || !rs[0].Online {
			t.Errorf("runners = %+v", rs)
		}
	})
	t.Run("idle runner exits at its next poll", func(t *testing.T) {
		f := newFixture(t, Options{})
		b, err := f.client.MintRunner(ctx, corral.RunnerSpec{Name: "corral-1", Labels: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		p := startRunner(t, b)
		eventually(t, 5*time.Second, "runner online", func() bool { return f.sim.Stats().AliveRunners == 1 })
		rs, err := f.client.Runners(ctx)
		if err != nil || len(rs) != 1 || !rs[0].Online || rs[0].Busy {
			t.Fatalf("Runners = %+v, %v", rs, err)
		}
		if err := f.client.RemoveRunner(ctx, rs[0]); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t, 5*time.Second); !errors.Is(err, ErrRunnerRemoved) {
			t.Fatalf("runner err = %v, want ErrRunnerRemoved", err)
		}
		if !strings.Contains(p.log.String(), "removed") {
			t.Errorf("log = %q", p.log.String())
		}
		if st := f.sim.Stats(); st.AliveRunners != 0 || st.Registered != 0 {
			t.Errorf("alive/registered = %d/%d", st.AliveRunners, st.Registered)
		}
	})
	t.Run("gone is fine", func(t *testing.T) {
		f := newFixture(t, Options{})
		if err := f.client.RemoveRunner(ctx, corral.Runner{ID: 42}); err != nil {
			t.Errorf("by id: %v", err)
		}
		if err := f.client.RemoveRunner(ctx, corral.Runner{Name: "corral-9"}); err != nil {
			t.Errorf("by name: %v", err)
		}
	})
}

func TestClient_Runners(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	for _, name := range []string{"corral-a", "other-b", "corral-c"} {
		if _, err := f.client.MintRunner(ctx, corral.RunnerSpec{Name: name, Labels: []string{"x", "Y"}}); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := f.client.Runners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Name != "corral-a" || rs[1].Name != "corral-c" || rs[0].Online || len(rs[0].Labels) != 2 {
		t.Errorf("runners = %+v", rs)
	}
}

func TestClient_failRate(t *testing.T) {
	f := newFixture(t, Options{Seed: 3})
	ctx := context.Background()
	id := f.sim.QueueJob("t1", JobSpec{Labels: []string{"x"}, Duration: 50 * time.Millisecond})
	b, err := f.client.MintRunner(ctx, corral.RunnerSpec{Name: "corral-1", Labels: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	f.sim.SetFaults(Faults{FailRate: 1})
	_, err = f.client.MintRunner(ctx, corral.RunnerSpec{Name: "corral-2", Labels: []string{"x"}})
	var ce *corral.CallError
	if !errors.Is(err, corral.ErrUnavailable) || !errors.As(err, &ce) {
		t.Fatalf("mint err = %v, want ErrUnavailable", err)
	}
	if ce.Status != http.StatusInternalServerError || ce.Op != "generate-jitconfig" || ce.Method != http.MethodPost ||
		ce.Target != "t1" || ce.RequestID == "" || !strings.HasPrefix(ce.URL, f.http.URL) {
		t.Errorf("call error = %+v", ce)
	}
	if _, err := f.client.OpenJobs(ctx); !errors.Is(err, corral.ErrUnavailable) {
		t.Errorf("OpenJobs err = %v", err)
	}
	if _, err := f.client.Runners(ctx); !errors.Is(err, corral.ErrUnavailable) {
		t.Errorf("Runners err = %v", err)
	}
	if err := f.client.RemoveRunner(ctx, corral.Runner{ID: b.RunnerID}); !errors.Is(err, corral.ErrUnavailable) {
		t.Errorf("RemoveRunner err = %v", err)
	}
	// Runner-side calls never fail at random.
	if err := startRunner(t, b).wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if j := f.job(t, id); j.Completions != 1 {
		t.Errorf("job = %+v", j)
	}
}

func TestClient_unreachable(t *testing.T) {
	f := newFixture(t, Options{})
	url := f.http.URL
	f.http.Close()
	c := f.newClient(t, corral.Target{ID: "t1", URL: url})
	_, err := c.OpenJobs(context.Background())
	var ce *corral.CallError
	if !errors.Is(err, corral.ErrUnavailable) || !errors.As(err, &ce) || ce.Status != 0 {
		t.Errorf("err = %v", err)
	}
}

func TestClient_Job(t *testing.T) {
	f := newFixture(t, Options{})
	id := f.sim.QueueJob("t1", JobSpec{Labels: []string{"corral"}, Duration: time.Second})
	ev, err := f.client.Job(context.Background(), id, "")
	if err != nil || ev.ForgeJobID != id || ev.Action != corral.ActionQueued {
		t.Fatalf("Job = %+v, %v; want the queued job", ev, err)
	}
	if _, err := f.client.Job(context.Background(), id+1000, ""); !errors.Is(err, corral.ErrNotFound) {
		t.Fatalf("unknown job: %v, want ErrNotFound", err)
	}
}
