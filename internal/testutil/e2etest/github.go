package e2etest

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/standin"
)

// Environment variables of the stand-in's secrets in corral's config.
const (
	EnvWebhookSecret = "E2E_WEBHOOK_SECRET"
	EnvGitHubToken   = "E2E_GITHUB_TOKEN"
)

// GitHub is the stand-in GitHub served on 127.0.0.1 by the test process, so
// that it outlives every corral process a test kills. It has one
// organization (Org) with one repository (Repo), a classic PAT allowed to
// manage the organization's runners, and the organization webhooks added
// by Hook.
type GitHub struct {
	*standin.Server
	URL    string
	Org    string
	Repo   string // "org/name", where QueueJob queues
	Secret corral.Secret
	Token  string
}

// NewGitHub starts a stand-in GitHub with opt; Close runs at the end of
// the test.
func NewGitHub(t testing.TB, opt standin.Options) *GitHub {
	t.Helper()
	s := standin.New(opt)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	g := &GitHub{Server: s, URL: ts.URL, Org: "e2e", Repo: "e2e/app",
		Secret: corral.Secret("e2e-hook-secret"), Token: "ghp_e2eHarnessToken0123456789abcdefABCD"}
	s.AddRepo("e2e", "app")
	s.AddPAT(g.Token, "repo", "admin:org")
	return g
}

// Hook adds an organization webhook that posts to corral at listen for
// target id.
func (g *GitHub) Hook(listen, id string) {
	g.AddHook(g.Org, "http://"+listen+"/webhooks/"+id, g.Secret)
}

// Target is the organization target corral serves, with the PAT.
func (g *GitHub) Target(id, runnerPrefix string) Target {
	return Target{ID: id, Kind: "github", Scope: "org", Path: g.Org, URL: g.URL,
		SecretEnv: EnvWebhookSecret, Token: "env:" + EnvGitHubToken, RunnerPrefix: runnerPrefix}
}

// Env is the environment corral needs for Target's secrets.
func (g *GitHub) Env() []string {
	return []string{EnvWebhookSecret + "=" + g.Secret.Reveal(), EnvGitHubToken + "=" + g.Token}
}

// Queue queues a job in Repo and returns its id.
func (g *GitHub) Queue(name string, labels []string, d time.Duration) int64 {
	return g.QueueJob(g.Repo, standin.JobSpec{Name: name, Labels: labels, Duration: d})
}

// Count returns how many jobs have the status ("queued", "in_progress",
// "completed").
func (g *GitHub) Count(status string) int {
	n := 0
	for _, j := range g.Jobs() {
		if j.Status == status {
			n++
		}
	}
	return n
}

// CheckJobs asserts that jobs jobs exist, each completed exactly once, with
// success unless mayFail (may be nil) allows its failure.
func (g *GitHub) CheckJobs(t testing.TB, jobs int, mayFail func(standin.JobInfo) bool) {
	t.Helper()
	js := g.Jobs()
	if len(js) != jobs {
		t.Errorf("stand-in holds %d jobs, want %d", len(js), jobs)
	}
	for _, j := range js {
		if j.Status != standin.StatusCompleted || j.Completions != 1 {
			t.Errorf("job %d (%s): status %s, completed %d times; want completed exactly once", j.ID, j.Name, j.Status, j.Completions)
		}
		if j.Conclusion != "success" && (mayFail == nil || !mayFail(j)) {
			t.Errorf("job %d concluded %q on runner %q, want success (a runner killed while busy?)", j.ID, j.Conclusion, j.RunnerName)
		}
	}
}

// RunnerScript is the run.sh of a runner image: it execs corral's
// simulated actions runner of the stand-in (`corral github-sim-runner`),
// as actions/runner's run.sh runs the runner. env is a prefix of
// VAR=value settings (may be empty).
func RunnerScript(corralBin, env string) string {
	return "#!/bin/sh\n" + env + " exec " + corralBin + " github-sim-runner \"$@\"\n"
}

// RunnerImage makes a process-provider image: a directory holding run.sh.
func RunnerImage(t testing.TB, corralBin, env string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "actions-runner")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte(RunnerScript(corralBin, env)), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
