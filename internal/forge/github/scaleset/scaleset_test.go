package scaleset

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
)

const pat = "ghp_scaleset_test_token"

func setup(t *testing.T, opt standin.Options) (*standin.Server, *Client) {
	t.Helper()
	s := standin.New(opt)
	s.AddRepo("acme", "app")
	s.AddPAT(pat, "repo")
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	gc, err := github.NewClient(corral.Target{ID: "t", Kind: corral.KindGitHub, Scope: corral.ScopeRepo, Path: "acme/app",
		URL: hs.URL, Token: pat, RunnerPrefix: "corral-"}, github.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s, New(gc, nil)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// One job through the client: registered scale set, session, the job
// offered, acquired, assigned, run by a scale-set JIT runner, started and
// completed, every message acknowledged; the session closed cleanly lets
// the next one open at once.
func TestClient_OneJob(t *testing.T) {
	s, c := setup(t, standin.Options{ScaleSetLongPoll: 200 * time.Millisecond, SessionTTL: time.Minute})
	ctx := ctxT(t, 20*time.Second)
	set, created, err := c.EnsureScaleSet(ctx, "corral-small", []string{"corral-small"})
	if err != nil || !created {
		t.Fatalf("ensure: %+v created %v err %v", set, created, err)
	}
	if again, created, err := c.EnsureScaleSet(ctx, "corral-small", nil); err != nil || created || again.ID != set.ID {
		t.Fatalf("second ensure: %+v created %v err %v; want the same scale set", again, created, err)
	}
	se, err := c.OpenSession(ctx, set.ID, "corral")
	if err != nil {
		t.Fatal(err)
	}
	jobID := s.QueueJob("acme/app", standin.JobSpec{Labels: []string{"corral-small"}, Duration: 20 * time.Millisecond})
	seen := map[string]Item{}
	var last int64
	for i := 0; i < 20 && seen["JobCompleted"].Type == ""; i++ {
		m, err := c.NextMessage(ctx, se, last, 1)
		if err != nil {
			t.Fatal(err)
		}
		if m == nil {
			continue
		}
		last = m.ID
		if err := c.Ack(ctx, se, m.ID); err != nil {
			t.Fatal(err)
		}
		for _, it := range m.Items {
			seen[it.Type] = it
			switch it.Type {
			case "JobAvailable":
				got, err := c.Acquire(ctx, se, []int64{it.RequestID})
				if err != nil || len(got) != 1 {
					t.Fatalf("acquire: %v %v", got, err)
				}
			case "JobAssigned":
				jit, err := c.JITConfig(ctx, set.ID, "corral-small-1")
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					_ = standin.RunRunner(ctx, func(k string) string {
						if k == standin.EnvJITConfig {
							return jit.Config.Reveal()
						}
						return ""
					}, io.Discard)
				}()
			}
		}
	}
	if seen["JobStarted"].RunnerName != "corral-small-1" || seen["JobCompleted"].Result != "success" {
		t.Fatalf("messages %+v; want the job started on corral-small-1 and completed", seen)
	}
	for _, j := range s.Jobs() {
		if j.ID == jobID && (j.Completions != 1 || j.RunnerName != "corral-small-1") {
			t.Errorf("job ran %d times on %q", j.Completions, j.RunnerName)
		}
	}
	if err := c.CloseSession(ctx, se); err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenSession(ctx, set.ID, "corral"); err != nil {
		t.Fatalf("session after a clean close: %v", err)
	}
}

// A crash leaves a live session: the next corral gets ErrConflict and
// OpenSessionWait waits it out. A scale set GitHub deleted answers
// ErrGone; EnsureScaleSet registers it again.
func TestClient_ConflictAndDeletion(t *testing.T) {
	s, c := setup(t, standin.Options{ScaleSetLongPoll: 100 * time.Millisecond, SessionTTL: 500 * time.Millisecond})
	ctx := ctxT(t, 20*time.Second)
	set, _, err := c.EnsureScaleSet(ctx, "corral-big", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenSession(ctx, set.ID, "corral"); err != nil {
		t.Fatal(err)
	}
	// "Crash": the session is never closed.
	if _, err := c.OpenSession(ctx, set.ID, "corral"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second session: %v, want ErrConflict", err)
	}
	start := time.Now()
	se, conflicts, err := c.OpenSessionWait(ctx, set.ID, "corral", 100*time.Millisecond)
	if err != nil || conflicts == 0 {
		t.Fatalf("wait out the stale session: %v after %d conflicts", err, conflicts)
	}
	t.Logf("stale session waited out in %v (%d conflicts)", time.Since(start).Round(time.Millisecond), conflicts)
	if !s.DeleteScaleSet("repos/acme/app", "corral-big") {
		t.Fatal("no scale set to delete")
	}
	if _, err := c.NextMessage(ctx, se, 0, 1); !errors.Is(err, ErrGone) {
		t.Fatalf("poll after deletion: %v, want ErrGone", err)
	}
	again, created, err := c.EnsureScaleSet(ctx, "corral-big", nil)
	if err != nil || !created || again.ID == set.ID {
		t.Fatalf("re-register: %+v created %v err %v; want a new scale set", again, created, err)
	}
	if _, err := c.OpenSession(ctx, again.ID, "corral"); err != nil {
		t.Fatalf("session on the re-registered scale set: %v", err)
	}
}
