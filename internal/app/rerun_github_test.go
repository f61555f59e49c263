package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// TestApp_GitHubRerun: a re-run of a finished workflow run (new job id,
// same run, run_attempt 2, sent by the stand-in GitHub as GitHub sends
// it) is served as a new job with its own runner, and a late second copy
// of the old attempt's "completed" (as a second hook delivers it) changes
// nothing of the new one.
func TestApp_GitHubRerun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	gh := standin.New(standin.Options{Seed: 18})
	ghSrv := httptest.NewServer(gh)
	defer ghSrv.Close()
	defer gh.Close()
	gh.AddRepo("acme", "app")
	gh.AddPAT("ghp_rerun", "repo")
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	// The provider starts the simulated runner of each instance, but only
	// once the test releases it.
	prov := fake.NewProvider()
	var wg sync.WaitGroup
	defer wg.Wait()
	release := make(chan corral.InstanceSpec, 4)
	prov.OnCreate = func(s corral.InstanceSpec) { release <- s }
	run := func(s corral.InstanceSpec) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := func(k string) string { return s.Bootstrap.Env[k].Reveal() }
			if err := standin.RunRunner(ctx, env, io.Discard); err != nil && ctx.Err() == nil {
				t.Errorf("runner %s: %v", s.Name, err)
			}
		}()
	}
	tg := corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, Scope: corral.ScopeRepo, Path: "acme/app",
		URL: ghSrv.URL, Token: "ghp_rerun", WebhookSecret: secret, RunnerPrefix: "corral"}
	a, err := app.New(app.Options{Store: st, Forges: forge.NewRegistry(http.DefaultClient, nil),
		Providers: map[string]corral.Provider{"noop": prov}, Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{tg},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
			Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}, MaxLifetime: time.Hour}},
		ControllerID: "rerun", NoLeader: true, SchedulerInterval: 100 * time.Millisecond, ReconcileInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	corralSrv := httptest.NewServer(a.Handler())
	defer corralSrv.Close()
	hookID := gh.AddHook("acme/app", corralSrv.URL+"/webhooks/acme", secret)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(runCtx) }()
	defer func() { stop(); <-done }()

	jobOf := func(forgeID int64) (corral.Job, bool) {
		var j corral.Job
		err := st.View(ctx, func(tx corral.ReadTx) error {
			var err error
			j, err = tx.JobByForgeID(ctx, tg.ID, forgeID)
			return err
		})
		return j, err == nil
	}
	instanceOf := func(name string) corral.Instance {
		var out corral.Instance
		_ = st.View(ctx, func(tx corral.ReadTx) error {
			ins, err := tx.Instances(ctx, corral.InstanceFilter{})
			for _, in := range ins {
				if in.Name == name {
					out = in
				}
			}
			return err
		})
		return out
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	nextSpec := func() corral.InstanceSpec {
		t.Helper()
		select {
		case s := <-release:
			return s
		case <-ctx.Done():
			t.Fatal("corral never created an instance")
		}
		return corral.InstanceSpec{}
	}

	// Attempt 1 runs to its end; then the whole run is re-run.
	old := gh.QueueJob("acme/app", standin.JobSpec{Name: "build", Labels: []string{"self-hosted", "corral"}, Duration: 20 * time.Millisecond})
	first := nextSpec()
	run(first)
	waitFor("attempt 1 done at corral", func() bool { j, ok := jobOf(old); return ok && j.State == corral.JobCompleted })
	var runID int64
	for _, j := range gh.Jobs() {
		if j.ID == old {
			runID = j.RunID
		}
	}
	ids, err := gh.Rerun(runID, false)
	if err != nil || len(ids) != 1 {
		t.Fatalf("re-run: %v %v", ids, err)
	}
	rerun := ids[0]
	second := nextSpec()
	if second.Name == first.Name {
		t.Fatalf("the re-run job got the old instance's name %s", first.Name)
	}
	j2, ok := jobOf(rerun)
	if !ok || j2.RunID != runID || j2.RunAttempt != 2 || j2.State == corral.JobCompleted {
		t.Fatalf("re-run job at corral: %+v (found %v)", j2, ok)
	}

	// A second copy of the old attempt's completed, with its own delivery
	// id, arrives while the re-run job waits for its runner.
	payload := oldCompleted(t, ghSrv.URL, hookID, old)
	req, _ := http.NewRequestWithContext(ctx, "POST", corralSrv.URL+"/webhooks/acme", strings.NewReader(string(payload)))
	req.Header = fake.Header("workflow_job", "late-copy-of-attempt-1", github.Sign(secret, payload))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("late completed: %d", resp.StatusCode)
	}
	time.Sleep(300 * time.Millisecond) // a scheduler tick or three
	if j, _ := jobOf(rerun); j.State == corral.JobCompleted || j.RunAttempt != 2 {
		t.Fatalf("the old attempt's completed touched the re-run job: %+v", j)
	}
	if in := instanceOf(second.Name); !in.State.Live() {
		t.Fatalf("the re-run job's instance was deleted by the old attempt's completed: %+v", in)
	}
	if j, _ := jobOf(old); j.RunAttempt != 1 || j.State != corral.JobCompleted {
		t.Fatalf("old attempt at corral: %+v", j)
	}

	run(second)
	waitFor("attempt 2 done at corral", func() bool { j, ok := jobOf(rerun); return ok && j.State == corral.JobCompleted })
	for _, j := range gh.Jobs() {
		if j.ID == rerun && (j.RunnerName != second.Name || j.Completions != 1 || j.RunAttempt != 2) {
			t.Fatalf("re-run job at GitHub: %+v", j)
		}
	}
	waitFor("both instances deleted", func() bool {
		return !instanceOf(first.Name).State.Live() && !instanceOf(second.Name).State.Live()
	})
	if n := prov.Count("create"); n != 2 {
		t.Fatalf("%d instances created for two attempts, want 2", n)
	}
}

// oldCompleted fetches, through GitHub's deliveries API, the payload of
// the completed webhook the stand-in sent for job id.
func oldCompleted(t *testing.T, base string, hookID, id int64) []byte {
	t.Helper()
	get := func(path string, v any) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "token ghp_rerun")
		req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
	}
	var list []struct {
		ID     int64  `json:"id"`
		Event  string `json:"event"`
		Action string `json:"action"`
	}
	get(fmt.Sprintf("/repos/acme/app/hooks/%d/deliveries?per_page=100", hookID), &list)
	for _, d := range list {
		if d.Event != "workflow_job" || d.Action != "completed" {
			continue
		}
		var full struct {
			Request struct {
				Payload json.RawMessage `json:"payload"`
			} `json:"request"`
		}
		get(fmt.Sprintf("/repos/acme/app/hooks/%d/deliveries/%d", hookID, d.ID), &full)
		var p struct {
			WorkflowJob struct {
				ID int64 `json:"id"`
			} `json:"workflow_job"`
		}
		if json.Unmarshal(full.Request.Payload, &p) == nil && p.WorkflowJob.ID == id {
			return full.Request.Payload
		}
	}
	t.Fatalf("no completed delivery for job %d in %+v", id, list)
	return nil
}
