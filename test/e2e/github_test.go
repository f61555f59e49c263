package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/provider/process"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// ghRig is corral serving two GitHub targets on the stand-in GitHub: a
// repository target with a classic token and a repository webhook, and an
// organization target through a GitHub App (its single webhook URL).
type ghRig struct {
	gh      *standin.Server
	url     string
	listen  string
	dataDir string
	cfg     string
	env     []string
	appKey  []byte // the App's private key (PEM), for the secrets search
}

const (
	ghPAT    = "ghp_e2eTokenNeverShown0123456789abcdef"
	ghAppID  = 7
	ghInstID = 4200
)

func newGHRig(t *testing.T, seed int64, poolMax int) *ghRig {
	t.Helper()
	return newGHRigWith(t, standin.Options{Seed: seed}, poolMax, "")
}

// newGHRigWith takes the stand-in's options and a prefix for the runner's
// command line (environment settings such as the runner's version).
func newGHRigWith(t testing.TB, opt standin.Options, poolMax int, runnerEnv string) *ghRig {
	t.Helper()
	gh := standin.New(opt)
	ts := httptest.NewServer(gh)
	t.Cleanup(func() { ts.Close(); gh.Close() })
	r := &ghRig{gh: gh, url: ts.URL, listen: e2etest.FreePort(t), dataDir: filepath.Join(t.TempDir(), "data")}
	t.Cleanup(func() { _ = process.RemoveLeftovers(filepath.Join(r.dataDir, "instances")) }) // instances left at stop are tmpfs mounts
	secretRepo, secretApp := corral.Secret("repo-hook-secret"), corral.Secret("app-hook-secret")
	gh.AddRepo("alpha", "app")
	gh.AddRepo("beta", "x")
	gh.AddRepo("beta", "y")
	gh.AddPAT(ghPAT, "repo")
	gh.AddHook("alpha/app", "http://"+r.listen+"/webhooks/alpha-app", secretRepo)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	gh.AddApp(ghAppID, &key.PublicKey, fmt.Sprintf("http://%s/webhooks/app/%d", r.listen, ghAppID), secretApp)
	gh.Install(ghAppID, ghInstID, "beta", "beta/x", "beta/y")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "app.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	r.appKey = pemBytes
	image := e2etest.RunnerImage(t, corralBin, runnerEnv)
	r.cfg = e2etest.WriteConfig(t, e2etest.Config{Listen: r.listen, DataDir: r.dataDir, Reconcile: "2s",
		Targets: []e2etest.Target{
			{ID: "alpha-app", Kind: "github", Scope: "repo", Path: "alpha/app", URL: ts.URL, SecretEnv: "E2E_REPO_SECRET",
				Token: "env:E2E_PAT", RunnerPrefix: "corral-alpha"},
			{ID: "beta", Kind: "github", Scope: "org", Path: "beta", URL: ts.URL, SecretEnv: "E2E_APP_SECRET",
				Token: "file:" + keyFile, RunnerPrefix: "corral-beta", AppID: ghAppID},
		},
		Pools: []e2etest.Pool{{ID: "linux", Labels: []string{"corral"}, Image: image, MaxInstances: poolMax}}})
	r.env = []string{"E2E_REPO_SECRET=" + secretRepo.Reveal(), "E2E_APP_SECRET=" + secretApp.Reveal(), "E2E_PAT=" + ghPAT}
	return r
}

func (r *ghRig) start(t testing.TB) *e2etest.Proc {
	t.Helper()
	return e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: r.cfg, Listen: r.listen, Env: r.env})
}

func (r *ghRig) queue(n int, dur func(i int) time.Duration) {
	repos := []string{"alpha/app", "beta/x", "beta/y", "alpha/app"}
	for i := 0; i < n; i++ {
		r.gh.QueueJob(repos[i%len(repos)], standin.JobSpec{Name: fmt.Sprint("job-", i),
			Labels: []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, Duration: dur(i)})
	}
}

func (r *ghRig) checkClean(t *testing.T, jobs int) {
	t.Helper()
	waitFor(t, 60*time.Second, "every registration removed and every runner process gone", func() bool {
		return r.gh.Stats().Registered == 0 && len(runnerProcesses(r.dataDir)) == 0
	})
	st := r.gh.Stats()
	for id, n := range st.Completions {
		if n != 1 {
			t.Errorf("job %d completed %d times", id, n)
		}
	}
	done := 0
	for _, j := range r.gh.Jobs() {
		if j.Status == "completed" {
			done++
		}
		if j.Conclusion != "success" {
			t.Errorf("job %d concluded %q, want success (a busy runner killed?)", j.ID, j.Conclusion)
		}
	}
	if done != jobs {
		t.Errorf("%d jobs completed, want %d", done, jobs)
	}
	if st.RateLimitViolations != 0 {
		t.Errorf("corral ignored GitHub's rate limits %d times: %v", st.RateLimitViolations, st.Violations)
	}
}

// TestGitHub serves 200 jobs across a repository target and an
// organization target (GitHub App) on the stand-in GitHub: each job on its
// own runner, one forge call per job on the happy path, one installation
// token for the whole run. The stand-in enforces GitHub's secondary limit
// of 900 points per endpoint per minute: corral never meets it.
func TestGitHub(t *testing.T) {
	const jobs = 200
	r := newGHRigWith(t, standin.Options{Seed: 1, PointsPerMinute: 900}, 10, "")
	p := r.start(t)
	r.queue(jobs, func(i int) time.Duration { return time.Duration(50+i%100) * time.Millisecond })
	waitFor(t, 150*time.Second, "every job completed", func() bool {
		n := 0
		for _, j := range r.gh.Jobs() {
			if j.Status == "completed" {
				n++
			}
		}
		return n == jobs
	})
	r.checkClean(t, jobs)
	var targets struct {
		Targets []struct {
			ID        string `json:"id"`
			RateLimit *struct {
				Remaining int `json:"remaining"`
			} `json:"rate_limit"`
		} `json:"targets"`
	}
	getJSON(t, "http://"+r.listen+"/api/v1/targets", &targets)
	for _, tg := range targets.Targets {
		if tg.RateLimit == nil || tg.RateLimit.Remaining <= 0 {
			t.Errorf("target %s shows no remaining rate-limit budget: %+v", tg.ID, tg.RateLimit)
		}
	}
	p.Stop(t)
	st := r.gh.Stats()
	if n := st.Calls["POST generate-jitconfig"]; n != jobs {
		t.Errorf("generate-jitconfig calls = %d, want exactly one per job (%d)", n, jobs)
	}
	runners := map[string]bool{}
	for _, j := range r.gh.Jobs() {
		if runners[j.RunnerName] {
			t.Errorf("runner %s ran two jobs", j.RunnerName)
		}
		runners[j.RunnerName] = true
	}
	if n := st.TokenMints[ghInstID]; n != 1 {
		t.Errorf("installation tokens minted = %d, want 1 for the whole run", n)
	}
	if st.PointsRefused != 0 || st.RateLimitViolations != 0 {
		t.Errorf("secondary-limit refusals %d, Retry-After ignored %d (%v): want none", st.PointsRefused, st.RateLimitViolations, st.Violations)
	}
	perJob := 0
	for _, n := range st.Calls {
		perJob += n
	}
	t.Logf("%d jobs: %d API calls in all (%.2f per job, sweeps included): %v", jobs, perJob, float64(perJob)/jobs, st.Calls)
}

// TestGitHubFaults: 10% server errors, bursts of secondary rate limits and
// 30% dropped webhooks: every job is still served, no busy runner is
// killed, nothing is left, and corral honoured every Retry-After.
func TestGitHubFaults(t *testing.T) {
	const jobs = 60
	r := newGHRig(t, 2, 8)
	p := r.start(t)
	faults := standin.Faults{ServerErrorRate: 0.1, SecondaryBurst: 6, DropRate: 0.3, FailDeliveryRate: 0.2}
	r.gh.SetFaults(faults)
	r.queue(jobs/2, func(int) time.Duration { return 100 * time.Millisecond })
	time.Sleep(3 * time.Second)
	r.gh.SetFaults(faults)
	r.queue(jobs/2, func(int) time.Duration { return 100 * time.Millisecond })
	waitFor(t, 150*time.Second, "every job completed", func() bool {
		n := 0
		for _, j := range r.gh.Jobs() {
			if j.Status == "completed" {
				n++
			}
		}
		return n == jobs
	})
	r.checkClean(t, jobs)
	p.Stop(t)
	st := r.gh.Stats()
	if st.Webhooks.FaultFailed > 0 && st.Webhooks.Redelivered == 0 {
		t.Errorf("%d App deliveries failed and none was redelivered", st.Webhooks.FaultFailed)
	}
	t.Logf("%d jobs under faults: %d webhooks dropped, %d failed, %d redelivered; calls %v", jobs, st.Webhooks.Dropped,
		st.Webhooks.FaultFailed, st.Webhooks.Redelivered, st.Calls)
}

// TestGitHubDeprecatedRunner: GitHub refuses the runner version in the
// image. corral must say so at once (the job's reason, the pool backing
// off), not leave a pool that silently never picks up jobs.
func TestGitHubDeprecatedRunner(t *testing.T) {
	r := newGHRigWith(t, standin.Options{Seed: 3, MinRunnerVersion: "2.331.0"}, 4, "CORRAL_TEST_RUNNER_VERSION=2.300.0")
	p := r.start(t)
	r.queue(1, func(int) time.Duration { return 100 * time.Millisecond })
	api := "http://" + r.listen + "/api/v1/jobs"
	waitFor(t, 30*time.Second, "the job to say the runner version is deprecated", func() bool {
		var out struct {
			Jobs []struct {
				State  string `json:"state"`
				Reason string `json:"reason"`
			} `json:"jobs"`
		}
		getJSON(t, api, &out)
		return len(out.Jobs) == 1 && out.Jobs[0].State == "routed" && strings.Contains(out.Jobs[0].Reason, "deprecated")
	})
	p.Stop(t)
}
