package github_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/forgetest"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
)

// ftHarness runs the forge conformance suite on the stand-in GitHub: an
// organization target with a classic PAT, runners being the stand-in's
// simulated actions runner run from the bootstrap's environment.
type ftHarness struct {
	s   *standin.Server
	url string
}

func (h *ftHarness) Forge(t *testing.T, prefix string) corral.Forge {
	tg := tgt(h.url, corral.ScopeOrg, "acme")
	tg.RunnerPrefix = prefix
	c, err := github.NewClient(tg, github.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (h *ftHarness) QueueJob(t *testing.T, labels []string, busyFor time.Duration) string {
	h.s.QueueJob("acme/app", standin.JobSpec{Name: "forgetest", Labels: labels, Duration: busyFor})
	return "acme/app"
}

func (h *ftHarness) StartRunner(t *testing.T, name string, b corral.Bootstrap) {
	if len(b.Command) != 1 || b.Command[0] != "run.sh" {
		t.Fatalf("bootstrap command %v, want run.sh", b.Command)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = standin.RunRunner(ctx, func(k string) string { return b.Env[k].Reveal() }, io.Discard)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func (h *ftHarness) CredentialEnv() string { return github.EnvJITConfig }

func TestClient_ForgeSuite(t *testing.T) {
	s, url := startStandin(t, standin.Options{Seed: 9})
	forgetest.Run(t, &ftHarness{s: s, url: url})
}
