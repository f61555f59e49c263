package github_test

// The client against the stand-in GitHub (package standin): real paths,
// status codes, headers, tokens, rate limits and a simulated runner.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
)

const pat = "ghp_standin_all_scopes_0123456789"

func startStandin(t *testing.T, opt standin.Options) (*standin.Server, string) {
	t.Helper()
	s := standin.New(opt)
	s.AddRepo("acme", "app")
	s.AddEnterprise("big", "acme")
	s.AddPAT(pat, "repo", "admin:org", "manage_runners:enterprise")
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, hs.URL
}

func tgt(url string, scope corral.Scope, path string) corral.Target {
	return corral.Target{ID: "t-" + path, Kind: corral.KindGitHub, Scope: scope, Path: path, URL: url, Token: pat,
		RunnerPrefix: "corral-", Settings: map[string]string{}}
}

func newClient(t *testing.T, tg corral.Target, cache *github.Cache) *github.Client {
	t.Helper()
	c, err := github.NewClient(tg, github.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func deadline(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// runAndWait runs the simulated runner from b and waits for job id to be
// completed at the stand-in.
func runAndWait(t *testing.T, ctx context.Context, s *standin.Server, b corral.Bootstrap, id int64) string {
	t.Helper()
	var log bytes.Buffer
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		var buf bytes.Buffer
		err := standin.RunRunner(ctx, func(k string) string { return b.Env[k].Reveal() }, &buf)
		mu.Lock()
		log.Write(buf.Bytes())
		mu.Unlock()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("runner: %v\n%s", err, log.String())
		}
	case <-ctx.Done():
		t.Fatal("runner did not finish in time")
	}
	for _, j := range s.Jobs() {
		if j.ID == id && (j.Status != "completed" || j.Completions != 1) {
			t.Fatalf("job %d: %+v", id, j)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return log.String()
}

func TestStandin_JITFlow(t *testing.T) {
	for _, scope := range []struct {
		s    corral.Scope
		path string
	}{{corral.ScopeRepo, "acme/app"}, {corral.ScopeOrg, "acme"}, {corral.ScopeEnterprise, "big"}} {
		t.Run(string(scope.s), func(t *testing.T) {
			ctx := deadline(t, 30*time.Second)
			s, url := startStandin(t, standin.Options{})
			c := newClient(t, tgt(url, scope.s, scope.path), nil)
			c.ObserveRepo("acme/app") // org: also listed; enterprise: only observed
			id := s.QueueJob("acme/app", standin.JobSpec{Name: "build", Labels: []string{"self-hosted", "linux"}, Duration: 50 * time.Millisecond})
			open, err := c.OpenJobs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(open) != 1 || open[0].ForgeJobID != id || open[0].Action != corral.ActionQueued || open[0].Repo != "acme/app" {
				t.Fatalf("open jobs = %+v", open)
			}
			b, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-1", Labels: open[0].Labels})
			if err != nil {
				t.Fatal(err)
			}
			runAndWait(t, ctx, s, b, id)
			if open, err = c.OpenJobs(ctx); err != nil || len(open) != 0 {
				t.Fatalf("after the job: %+v %v", open, err)
			}
			ev, err := c.Job(ctx, id, "acme/app")
			if err != nil || ev.Action != corral.ActionCompleted || ev.RunnerName != "corral-1" {
				t.Fatalf("job = %+v %v", ev, err)
			}
			if rs, err := c.Runners(ctx); err != nil || len(rs) != 0 {
				t.Fatalf("runners after an ephemeral job: %+v %v", rs, err)
			}
			st := s.Stats()
			if st.Calls["POST generate-jitconfig"] != 1 || st.RateLimitViolations != 0 {
				t.Fatalf("calls %v, violations %v", st.Calls, st.Violations)
			}
		})
	}
}

func TestStandin_RemoveRunner(t *testing.T) {
	ctx := deadline(t, 20*time.Second)
	_, url := startStandin(t, standin.Options{})
	c := newClient(t, tgt(url, corral.ScopeRepo, "acme/app"), nil)
	b, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-x", Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	// A retry with the same name: 409, resolved.
	if b2, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-x", Labels: []string{"linux"}}); err != nil || b2.RunnerID == b.RunnerID {
		t.Fatalf("re-mint = %+v %v", b2, err)
	}
	rs, err := c.Runners(ctx)
	if err != nil || len(rs) != 1 {
		t.Fatalf("runners = %+v %v", rs, err)
	}
	if err := c.RemoveRunner(ctx, corral.Runner{Name: "corral-x"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveRunner(ctx, rs[0]); err != nil {
		t.Fatalf("removing a gone runner: %v", err)
	}
}

func TestStandin_AppTokenShared(t *testing.T) {
	ctx := deadline(t, 20*time.Second)
	s, url := startStandin(t, standin.Options{})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.AddApp(77, &key.PublicKey, "", "")
	s.Install(77, 4242, "acme")
	pemKey := corral.Secret(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	cache := github.NewCache()
	var cs []*github.Client
	for _, tg := range []corral.Target{tgt(url, corral.ScopeRepo, "acme/app"), tgt(url, corral.ScopeOrg, "acme")} {
		tg.Token = pemKey
		tg.Settings[github.SettingAppID] = "77"
		cs = append(cs, newClient(t, tg, cache))
	}
	for i := range 6 {
		if _, err := cs[i%2].MintRunner(ctx, corral.RunnerSpec{Name: "corral-app-" + string(rune('a'+i)), Labels: []string{"linux"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Stats().TokenMints[4242]; n != 1 {
		t.Fatalf("%d installation tokens for 6 mints on 2 targets, want 1", n)
	}
	if rem, _ := cs[0].Budget(); rem <= 0 {
		t.Fatalf("budget = %d", rem)
	}
}

func TestStandin_GHESWithoutJIT(t *testing.T) {
	ctx := deadline(t, 30*time.Second)
	s, url := startStandin(t, standin.Options{GHESVersion: "3.9"})
	c := newClient(t, tgt(url+"/api/v3", corral.ScopeOrg, "acme"), nil)
	res, err := c.Probe(ctx)
	if err != nil || !res.Server || res.JIT {
		t.Fatalf("probe = %+v %v", res, err)
	}
	id := s.QueueJob("acme/app", standin.JobSpec{Name: "old", Labels: []string{"self-hosted", "ghes"}, Duration: 20 * time.Millisecond})
	b, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-legacy", Labels: []string{"self-hosted", "ghes"}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Command[0] != github.FallbackScriptName {
		t.Fatalf("command = %v", b.Command)
	}
	runAndWait(t, ctx, s, b, id)
	if s.Stats().Calls["POST generate-jitconfig"] != 0 {
		t.Fatal("JIT tried on GHES 3.9")
	}
}

func TestStandin_ETagSweepsAreFree(t *testing.T) {
	ctx := deadline(t, 20*time.Second)
	s, url := startStandin(t, standin.Options{})
	s.QueueJob("acme/app", standin.JobSpec{Name: "x", Labels: []string{"linux"}, Duration: time.Minute})
	c := newClient(t, tgt(url, corral.ScopeRepo, "acme/app"), nil)
	if _, err := c.OpenJobs(ctx); err != nil {
		t.Fatal(err)
	}
	before, _ := c.Budget()
	for range 3 {
		if evs, err := c.OpenJobs(ctx); err != nil || len(evs) != 1 {
			t.Fatalf("sweep = %+v %v", evs, err)
		}
	}
	if after, _ := c.Budget(); after != before {
		t.Fatalf("unchanged sweeps cost %d calls", before-after)
	}
}

func TestStandin_RateLimits(t *testing.T) {
	t.Run("secondary burst: minting waits, never early", func(t *testing.T) {
		ctx := deadline(t, 30*time.Second)
		s, url := startStandin(t, standin.Options{})
		c := newClient(t, tgt(url, corral.ScopeRepo, "acme/app"), nil)
		if _, err := c.Probe(ctx); err != nil {
			t.Fatal(err)
		}
		s.SetFaults(standin.Faults{SecondaryBurst: 2, SecondaryRetryAfter: time.Second})
		if _, err := c.Runners(ctx); !errors.Is(err, corral.ErrRateLimited) {
			t.Fatalf("sweep in a burst: %v", err)
		}
		if _, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-b", Labels: []string{"linux"}}); err != nil {
			t.Fatalf("mint through a burst: %v", err)
		}
		if st := s.Stats(); st.RateLimitViolations != 0 {
			t.Fatalf("violations: %v", st.Violations)
		}
	})
	t.Run("primary exhausted: fail fast until the reset", func(t *testing.T) {
		ctx := deadline(t, 30*time.Second)
		s, url := startStandin(t, standin.Options{})
		c := newClient(t, tgt(url, corral.ScopeRepo, "acme/app"), nil)
		if _, err := c.Probe(ctx); err != nil {
			t.Fatal(err)
		}
		s.SetFaults(standin.Faults{PrimaryExhaust: true, PrimaryResetIn: 2 * time.Second})
		for range 3 {
			if _, err := c.OpenJobs(ctx); !errors.Is(err, corral.ErrRateLimited) {
				t.Fatalf("sweep with no budget: %v", err)
			}
		}
		if st := s.Stats(); st.RateLimitViolations != 0 {
			t.Fatalf("violations: %v", st.Violations)
		}
	})
}

func TestStandin_DeprecatedRunner(t *testing.T) {
	ctx := deadline(t, 20*time.Second)
	s, url := startStandin(t, standin.Options{MinRunnerVersion: "2.330.0"})
	c := newClient(t, tgt(url, corral.ScopeRepo, "acme/app"), nil)
	s.QueueJob("acme/app", standin.JobSpec{Name: "x", Labels: []string{"linux"}, Duration: time.Millisecond})
	b, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-old", Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == standin.EnvRunnerVersion {
			return "2.300.0"
		}
		return b.Env[k].Reveal()
	}
	var log bytes.Buffer
	rerr := standin.RunRunner(ctx, env, &log)
	if !errors.Is(rerr, standin.ErrRunnerDeprecated) {
		t.Fatalf("runner: %v", rerr)
	}
	if err := github.RunnerDeprecated(log.String() + rerr.Error()); !errors.Is(err, github.ErrRunnerDeprecated) {
		t.Fatalf("not recognised in %q", log.String())
	}
}
