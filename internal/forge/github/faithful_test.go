package github_test

// corral's GitHub client against the parts of GitHub the stand-in imitates
// faithfully since issue 18 item 7: full repository objects (archived,
// disabled), X-GitHub-Api-Version, re-runs, capped run listings and
// secondary rate limits without Retry-After.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
)

var (
	faithfulKeyOnce sync.Once
	faithfulKey     *rsa.PrivateKey
)

// appKeyPEM returns an App private key and its PEM, made once.
func appKeyPEM(t *testing.T) (*rsa.PrivateKey, corral.Secret) {
	t.Helper()
	faithfulKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		faithfulKey = k
	})
	return faithfulKey, corral.Secret(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(faithfulKey)}))
}

func openIDs(evs []corral.JobEvent) []int64 {
	var ids []int64
	for _, ev := range evs {
		ids = append(ids, ev.ForgeJobID)
	}
	slices.Sort(ids)
	return ids
}

func TestStandin_OrgSweepSkipsArchivedAndDisabled(t *testing.T) {
	for _, viaApp := range []bool{false, true} { // /orgs/{org}/repos, /installation/repositories
		t.Run(map[bool]string{false: "token", true: "app"}[viaApp], func(t *testing.T) {
			ctx := deadline(t, 30*time.Second)
			s, url := startStandin(t, standin.Options{})
			s.AddRepo("acme", "old")
			s.AddRepo("acme", "locked")
			live := s.QueueJob("acme/app", standin.JobSpec{Name: "live", Labels: []string{"linux"}, Duration: time.Minute})
			s.QueueJob("acme/old", standin.JobSpec{Name: "archived", Labels: []string{"linux"}, Duration: time.Minute})
			s.QueueJob("acme/locked", standin.JobSpec{Name: "disabled", Labels: []string{"linux"}, Duration: time.Minute})
			s.SetRepoState("acme/old", true, false)
			s.SetRepoState("acme/locked", false, true)
			tg := tgt(url, corral.ScopeOrg, "acme")
			if viaApp {
				key, pemKey := appKeyPEM(t)
				s.AddApp(91, &key.PublicKey, "", "")
				s.Install(91, 9191, "acme")
				tg.Token = pemKey
				tg.Settings[github.SettingAppID] = "91"
			}
			c := newClient(t, tg, nil)
			open, err := c.OpenJobs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := openIDs(open); !slices.Equal(got, []int64{live}) {
				t.Fatalf("open jobs %v, want only %d of the live repository: %+v", got, live, open)
			}
			if n := s.Stats().Calls["GET runs"]; n != 3 {
				t.Fatalf("%d run listings, want 3 (one repository, three open statuses)", n)
			}
		})
	}
}

// Every request of the client carries a REST API version GitHub supports
// (github.com and GHES alike); the stand-in answers 400 to any other, as
// GitHub does, so a bad version fails every call below.
func TestStandin_APIVersionSent(t *testing.T) {
	for _, ghes := range []string{"", "3.17"} {
		t.Run("ghes="+ghes, func(t *testing.T) {
			ctx := deadline(t, 30*time.Second)
			s, url := startStandin(t, standin.Options{GHESVersion: ghes})
			if ghes != "" {
				url += "/api/v3"
			}
			key, pemKey := appKeyPEM(t)
			s.AddApp(88, &key.PublicKey, "", "")
			s.Install(88, 8800, "acme")
			app := tgt(url, corral.ScopeOrg, "acme")
			app.Token = pemKey
			app.Settings[github.SettingAppID] = "88"
			for _, tg := range []corral.Target{tgt(url, corral.ScopeRepo, "acme/app"), app} {
				c := newClient(t, tg, nil)
				id := s.QueueJob("acme/app", standin.JobSpec{Name: "v", Labels: []string{"linux"}, Duration: time.Minute})
				if _, err := c.Probe(ctx); err != nil {
					t.Fatal(err)
				}
				if open, err := c.OpenJobs(ctx); err != nil || len(open) == 0 {
					t.Fatalf("open jobs %+v %v", open, err)
				}
				if _, err := c.Job(ctx, id, "acme/app"); err != nil {
					t.Fatal(err)
				}
				if _, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-v-" + string(tg.Scope), Labels: []string{"linux"}}); err != nil {
					t.Fatal(err)
				}
				rs, err := c.Runners(ctx)
				if err != nil || len(rs) == 0 {
					t.Fatalf("runners %+v %v", rs, err)
				}
				if err := c.RemoveRunner(ctx, rs[0]); err != nil {
					t.Fatal(err)
				}
			}
			got := s.APIVersions()
			total := 0
			for v, n := range got {
				total += n
				if v != github.APIVersion {
					t.Errorf("%d requests with X-GitHub-Api-Version %q, want %q", n, v, github.APIVersion)
				}
			}
			if total < 10 || got[github.APIVersion] != total {
				t.Fatalf("versions sent: %v", got)
			}
		})
	}
}

// GitHub may refuse with a secondary rate limit and no Retry-After; its
// documented fallback is to wait at least a minute, and exponentially
// longer while the refusals go on. The stand-in and the client share a
// fake clock, so the waits are exact and the test takes no time.
func TestStandin_SecondaryLimitWithoutRetryAfter(t *testing.T) {
	ctx := deadline(t, 30*time.Second)
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	clk := corral.NewFakeClock(t0)
	s, url := startStandin(t, standin.Options{Now: clk.Now})
	c, err := github.NewClient(tgt(url, corral.ScopeRepo, "acme/app"), github.Options{Clock: clk, MaxWait: 10 * time.Minute,
		Sleep: func(ctx context.Context, d time.Duration) error { clk.Advance(d); return ctx.Err() }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	s.SetFaults(standin.Faults{SecondaryBurst: 3, SecondaryNoRetryAfter: true})
	before := s.Stats().Calls["GET runners"]
	if _, err := c.Runners(ctx); !errors.Is(err, corral.ErrRateLimited) {
		t.Fatalf("sweep refused without Retry-After: %v", err)
	}
	// A sweep right after fails fast without calling GitHub, and says until when.
	clk.Advance(30 * time.Second)
	_, err = c.Runners(ctx)
	var rl *github.RateLimitError
	if !errors.As(err, &rl) || rl.Until.Before(t0.Add(time.Minute)) {
		t.Fatalf("sweep within the minute: %v", err)
	}
	if n := s.Stats().Calls["GET runners"] - before; n != 1 {
		t.Fatalf("%d runner listings sent, want 1", n)
	}
	// The mint waits the minute out, meets two more refusals and waits
	// 2 then 4 minutes (exponential backoff) before it goes through.
	if _, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-s", Labels: []string{"linux"}}); err != nil {
		t.Fatalf("mint through the refusals: %v", err)
	}
	if waited := clk.Now().Sub(t0); waited < 7*time.Minute {
		t.Fatalf("waited %v in all, want at least 1+2+4 minutes", waited)
	}
	st := s.Stats()
	if st.RateLimitViolations != 0 {
		t.Fatalf("violations: %v", st.Violations)
	}
	// Once an answer passes, the next refusal waits one minute again.
	s.SetFaults(standin.Faults{SecondaryBurst: 1, SecondaryNoRetryAfter: true})
	at := clk.Now()
	if _, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-t", Labels: []string{"linux"}}); err != nil {
		t.Fatal(err)
	}
	if waited := clk.Now().Sub(at); waited < time.Minute || waited >= 2*time.Minute {
		t.Fatalf("after a success the wait is %v, want one minute", waited)
	}
	if st := s.Stats(); st.RateLimitViolations != 0 {
		t.Fatalf("violations: %v", st.Violations)
	}
}

// A re-run gives the run new job ids with run_attempt 2; the sweep lists
// the new attempt's job only (filter=latest) and the old job stays
// completed, so each attempt is its own job to corral.
func TestStandin_RerunSweep(t *testing.T) {
	ctx := deadline(t, 30*time.Second)
	s, url := startStandin(t, standin.Options{})
	c := newClient(t, tgt(url, corral.ScopeRepo, "acme/app"), nil)
	old := s.QueueJob("acme/app", standin.JobSpec{Name: "build", Labels: []string{"self-hosted", "linux"}, Duration: 20 * time.Millisecond})
	b, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-a1", Labels: []string{"self-hosted", "linux"}})
	if err != nil {
		t.Fatal(err)
	}
	runAndWait(t, ctx, s, b, old)
	var runID int64
	for _, j := range s.Jobs() {
		if j.ID == old {
			runID = j.RunID
		}
	}
	ids, err := s.Rerun(runID, false)
	if err != nil || len(ids) != 1 || ids[0] == old {
		t.Fatalf("re-run: %v %v", ids, err)
	}
	open, err := c.OpenJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0].ForgeJobID != ids[0] || open[0].RunID != runID || open[0].RunAttempt != 2 || open[0].Action != corral.ActionQueued {
		t.Fatalf("open jobs after a re-run: %+v", open)
	}
	ev, err := c.Job(ctx, old, "acme/app")
	if err != nil || ev.Action != corral.ActionCompleted || ev.RunAttempt != 1 || ev.RunnerName != "corral-a1" {
		t.Fatalf("old attempt: %+v %v", ev, err)
	}
	b, err = c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-a2", Labels: []string{"self-hosted", "linux"}})
	if err != nil {
		t.Fatal(err)
	}
	runAndWait(t, ctx, s, b, ids[0])
	if ev, err := c.Job(ctx, ids[0], "acme/app"); err != nil || ev.RunnerName != "corral-a2" || ev.RunAttempt != 2 {
		t.Fatalf("new attempt: %+v %v", ev, err)
	}
}

// GitHub lists at most 1,000 runs for a status filter (total_count says
// more). With more queued runs than that, the sweep must still find every
// queued job, not stop at the cap and take the list for complete. The
// stand-in's cap is lowered to 100 so the test stays cheap (the cap of
// 1,000 itself is tested in package standin).
func TestStandin_CappedRunList(t *testing.T) {
	ctx := deadline(t, 60*time.Second)
	clk := corral.NewFakeClock(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC))
	s, url := startStandin(t, standin.Options{Now: clk.Now, RateLimit: 1 << 20, RunListCap: 100})
	const n = 150
	want := make([]int64, 0, n)
	for i := range n {
		want = append(want, s.QueueJob("acme/app", standin.JobSpec{Name: "b", Labels: []string{"linux"}}))
		if i%3 == 0 { // several runs share a second, as on GitHub
			clk.Advance(time.Second)
		}
	}
	c := newClient(t, tgt(url, corral.ScopeRepo, "acme/app"), nil)
	open, err := c.OpenJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := openIDs(open); !slices.Equal(got, want) {
		t.Fatalf("sweep found %d of %d queued jobs", len(got), n)
	}
}

// More runs in one second than the cap cannot be reached by any search: the
// sweep ends (no loop), returns what GitHub shows and no error.
func TestStandin_CappedRunListSameSecond(t *testing.T) {
	ctx := deadline(t, 60*time.Second)
	clk := corral.NewFakeClock(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC))
	s, url := startStandin(t, standin.Options{Now: clk.Now, RateLimit: 1 << 20, RunListCap: 100})
	for range 110 {
		s.QueueJob("acme/app", standin.JobSpec{Name: "b", Labels: []string{"linux"}})
	}
	c := newClient(t, tgt(url, corral.ScopeRepo, "acme/app"), nil)
	open, err := c.OpenJobs(ctx)
	if err != nil || len(open) != 100 {
		t.Fatalf("sweep: %d jobs, %v", len(open), err)
	}
	if n := s.Stats().Calls["GET runs"]; n > 10 {
		t.Fatalf("%d run listings", n)
	}
}

// GitHub's secondary limit of 900 points per endpoint per minute (a POST
// costs 5) allows 180 JIT configs a minute per credential. The stand-in
// enforces it here; minting 400 runners at once keeps to it by the
// client's budget, waiting its turn (no refusal, no Retry-After
// ignored), where the same burst without the budget meets refusals.
// Stand-in and client share a fake clock: the minutes take no time.
func TestStandin_PointsBudget(t *testing.T) {
	const mints = 400
	for _, c := range []struct {
		name, setting string
		wantRefused   bool
	}{{"budget", "", false}, {"no budget", "0", true}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := deadline(t, time.Minute)
			t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
			clk := corral.NewFakeClock(t0)
			s, url := startStandin(t, standin.Options{Now: clk.Now, RateLimit: 1 << 20, PointsPerMinute: 900})
			tg := tgt(url, corral.ScopeRepo, "acme/app")
			if c.setting != "" {
				tg.Settings[github.SettingPointsPerMinute] = c.setting
			}
			var mu sync.Mutex // the sleepers move the clock one at a time
			cl, err := github.NewClient(tg, github.Options{Clock: clk, MaxWait: 10 * time.Minute,
				Sleep: func(ctx context.Context, d time.Duration) error {
					mu.Lock()
					defer mu.Unlock()
					clk.Advance(d)
					return ctx.Err()
				}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Probe(ctx); err != nil { // learns that GitHub sends rate limits
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, mints)
			for w := range 8 { // a pool's default concurrency
				wg.Go(func() {
					for i := w; i < mints; i += 8 {
						if _, err := cl.MintRunner(ctx, corral.RunnerSpec{Name: fmt.Sprintf("corral-p%d", i), Labels: []string{"linux"}}); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("mint: %v", err)
			}
			st := s.Stats()
			if n := st.Calls["POST generate-jitconfig"]; n < mints {
				t.Errorf("%d mints sent, want at least %d", n, mints)
			}
			if st.RateLimitViolations != 0 {
				t.Errorf("violations: %v", st.Violations)
			}
			if refused := st.PointsRefused > 0; refused != c.wantRefused {
				t.Errorf("stand-in refused %d calls for points; want refusals: %v", st.PointsRefused, c.wantRefused)
			}
			// 400 mints at 180 a minute span more than two minutes.
			if took := clk.Now().Sub(t0); took < 2*time.Minute {
				t.Errorf("%d mints in %v of GitHub's time, want at least 2 minutes at 180 a minute", mints, took)
			}
			t.Logf("%d mints: %v of GitHub's time, %d refused by the stand-in", mints, clk.Now().Sub(t0), st.PointsRefused)
		})
	}
}
