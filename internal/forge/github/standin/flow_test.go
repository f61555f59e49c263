package standin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func mintJIT(t *testing.T, url, auth, name string, labels ...string) (int64, string) {
	t.Helper()
	a := do(t, "POST", url+"/actions/runners/generate-jitconfig", auth, jitBody(name, labels...))
	want(t, a, http.StatusCreated)
	var out struct {
		Runner struct {
			ID int64 `json:"id"`
		} `json:"runner"`
		Config string `json:"encoded_jit_config"`
	}
	a.json(t, &out)
	return out.Runner.ID, out.Config
}

func TestRunRunner_JIT(t *testing.T) {
	ka, _ := testKeys(t)
	s, base := newStandin(t, Options{})
	s.AddRepo("acme", "lib")
	repoHook, orgHook, appHook := newReceiver(t), newReceiver(t), newReceiver(t)
	hookID := s.AddHook("acme/app", repoHook.url, testSecret)
	s.AddHook("acme", orgHook.url, testSecret)
	s.AddApp(appID, &ka.PublicKey, appHook.url, testSecret)
	s.Install(appID, instID, "acme")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type runCase struct {
		scope, repo string
		labels      []string
	}
	cases := []runCase{
		{"/repos/acme/app", "acme/app", []string{"self-hosted", "linux", "corral-1"}},
		{"/orgs/acme", "acme/lib", []string{"self-hosted", "corral-2"}},
		{"/enterprises/big", "acme/app", []string{"self-hosted", "GPU", "corral-3"}},
	}
	var jobs []int64
	var runners []<-chan error
	for i, c := range cases {
		jobs = append(jobs, s.QueueJob(c.repo, JobSpec{Name: fmt.Sprint("job", i), Labels: c.labels, Duration: 100 * time.Millisecond}))
		// The runner's labels are upper-cased: GitHub matches ignoring case.
		_, cfg := mintJIT(t, base+c.scope, token(adminPAT), fmt.Sprint("corral-r", i), strings.Split(strings.ToUpper(strings.Join(c.labels, ",")), ",")...)
		runners = append(runners, startRunner(ctx, map[string]string{EnvJITConfig: cfg}, io.Discard))
	}
	for i, ch := range runners {
		if err := <-ch; err != nil {
			t.Fatalf("runner %d: %v", i, err)
		}
	}
	for i, id := range jobs {
		j := jobByID(s, id)
		if j.Status != StatusCompleted || j.Conclusion != "success" || j.Completions != 1 || j.RunnerName != fmt.Sprint("corral-r", i) {
			t.Fatalf("job %d: %+v", i, j)
		}
	}
	st := s.Stats()
	if st.Registered != 0 || st.AliveRunners != 0 || st.PeakRunners < 1 || st.Calls["POST generate-jitconfig"] != 3 {
		t.Fatalf("stats %+v", st)
	}
	for _, ri := range s.Runners() {
		if ri.Registered || ri.Version != CurrentRunnerVersion {
			t.Fatalf("runner %+v", ri)
		}
	}
	// Every hook that covers the repo saw queued, in_progress, completed.
	waitFor(t, 5*time.Second, "webhooks", func() bool {
		return len(appHook.jobEvents(jobs[2])) == 3 && len(repoHook.jobEvents(jobs[2])) == 3 && len(orgHook.jobEvents(jobs[1])) == 3
	})
	if n := len(repoHook.jobEvents(jobs[1])); n != 0 {
		t.Fatalf("repo hook of acme/app got %d events of acme/lib", n)
	}
	evs := appHook.jobEvents(jobs[2])
	order := []corral.JobAction{corral.ActionQueued, corral.ActionInProgress, corral.ActionCompleted}
	for i, ev := range evs {
		if ev.Action != order[i] || ev.Repo != "acme/app" || len(ev.Labels) != 3 || ev.RunID == 0 {
			t.Fatalf("event %d: %+v", i, ev)
		}
		if i > 0 && (ev.RunnerName != "corral-r2" || ev.RunnerID == 0) {
			t.Fatalf("event %d lacks the runner: %+v", i, ev)
		}
	}
	if evs[2].Conclusion != "success" {
		t.Fatalf("completed: %+v", evs[2])
	}
	for _, r := range appHook.all() {
		if r.d.InstallationID != instID {
			t.Fatalf("app delivery without installation: %+v", r.d)
		}
		if r.header.Get("X-GitHub-Hook-Installation-Target-Type") != "integration" {
			t.Fatalf("headers %v", r.header)
		}
	}
	got := repoHook.all()
	var payload map[string]any
	if err := json.Unmarshal(got[0].body, &payload); err != nil {
		t.Fatal(err)
	}
	if _, ok := payload["installation"]; ok {
		t.Fatal("a repo hook delivery carries no installation")
	}
	if payload["enterprise"] == nil || payload["organization"] == nil {
		t.Fatalf("enterprise and organization expected: %v", payload)
	}
	h := got[0].header
	if h.Get("X-GitHub-Hook-ID") != fmt.Sprint(hookID) || !strings.HasPrefix(h.Get("User-Agent"), "GitHub-Hookshot/") ||
		!strings.HasPrefix(h.Get("X-Hub-Signature"), "sha1=") || h.Get("X-GitHub-Hook-Installation-Target-Type") != "repository" ||
		h.Get("X-GitHub-Hook-Installation-Target-ID") == "" {
		t.Fatalf("delivery headers %v", h)
	}
	events := map[string]int{}
	for _, r := range got {
		events[r.d.Event]++
	}
	if events["workflow_run"] < 2 || events["workflow_job"] < 6 {
		t.Fatalf("events %v", events)
	}
}

func TestRunRunner_Legacy(t *testing.T) {
	s, base := newStandin(t, Options{})
	a := do(t, "POST", base+"/orgs/acme/actions/runners/registration-token", token(adminPAT), nil)
	want(t, a, http.StatusCreated)
	var tok struct{ Token string }
	a.json(t, &tok)
	id := s.QueueJob("acme/app", JobSpec{Labels: []string{"self-hosted", "legacy"}, Duration: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := RunRunner(ctx, envOf(map[string]string{
		EnvMode: "config", EnvURL: base + "/acme", EnvToken: tok.Token, EnvName: "old-1", EnvLabels: "self-hosted,legacy",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if j := jobByID(s, id); j.Status != StatusCompleted || j.RunnerName != "old-1" {
		t.Fatalf("job %+v", j)
	}
	rs := s.Runners()
	if len(rs) != 1 || !rs[0].Legacy || rs[0].Registered || rs[0].Scope != "orgs/acme" {
		t.Fatalf("runners %+v", rs)
	}
	err = RunRunnerArgs(ctx, []string{"--url", base + "/acme", "--token", "WRONG", "--name", "x", "--labels", "a"}, envOf(nil), io.Discard)
	if err == nil {
		t.Fatal("a wrong registration token must be refused")
	}
}

func TestRunRunner_Deprecated(t *testing.T) {
	s, base := newStandin(t, Options{MinRunnerVersion: "2.329.0"})
	id := s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}})
	_, cfg := mintJIT(t, base+"/repos/acme/app", token(adminPAT), "old", "x")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var log strings.Builder
	err := RunRunnerArgs(ctx, []string{"--jitconfig", cfg}, envOf(map[string]string{EnvRunnerVersion: "2.300.0"}), &log)
	if !errors.Is(err, ErrRunnerDeprecated) {
		t.Fatalf("err %v", err)
	}
	mustContain(t, err.Error(), "Runner version v2.300.0 is deprecated and cannot receive messages.")
	if j := jobByID(s, id); j.Status != StatusQueued {
		t.Fatalf("job %+v", j)
	}
	if s.Stats().Registered != 1 {
		t.Fatal("the refused runner stays registered until removed")
	}
}

func TestRunRunner_HeartbeatTimeout(t *testing.T) {
	s, base := newStandin(t, Options{HeartbeatTimeout: 300 * time.Millisecond})
	id := s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}, Duration: time.Minute})
	rid, cfg := mintJIT(t, base+"/repos/acme/app", token(adminPAT), "dies", "x")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runCtx, kill := context.WithCancel(ctx)
	done := startRunner(runCtx, map[string]string{EnvJITConfig: cfg}, io.Discard)
	waitFor(t, 5*time.Second, "job running", func() bool { return jobByID(s, id).Status == StatusInProgress })
	u := fmt.Sprintf("%s/repos/acme/app/actions/runners/%d", base, rid)
	want(t, do(t, "DELETE", u, token(adminPAT), nil), http.StatusUnprocessableEntity)
	kill()
	<-done
	waitFor(t, 5*time.Second, "job failed", func() bool { return jobByID(s, id).Status == StatusCompleted })
	if j := jobByID(s, id); j.Conclusion != "failure" || j.Completions != 1 {
		t.Fatalf("job %+v", j)
	}
	a := do(t, "GET", u, token(adminPAT), nil)
	want(t, a, http.StatusOK)
	mustContain(t, string(a.body), `"status":"offline"`)
	want(t, do(t, "DELETE", u, token(adminPAT), nil), http.StatusNoContent)
	if s.Stats().Registered != 0 {
		t.Fatal("registration left")
	}
}

func TestRunRunner_ScopeAndLabels(t *testing.T) {
	s, base := newStandin(t, Options{})
	s.AddRepo("acme", "lib")
	s.AddRepo("other", "x") // not in the enterprise
	libJob := s.QueueJob("acme/lib", JobSpec{Labels: []string{"a"}})
	otherJob := s.QueueJob("other/x", JobSpec{Labels: []string{"a"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, cfg := mintJIT(t, base+"/repos/acme/app", token(adminPAT), "repo-runner", "a")
	repoRunner := startRunner(ctx, map[string]string{EnvJITConfig: cfg}, io.Discard)
	_, cfg = mintJIT(t, base+"/enterprises/big", token(adminPAT), "ent-runner", "a", "b")
	entRunner := startRunner(ctx, map[string]string{EnvJITConfig: cfg}, io.Discard)
	if err := <-entRunner; err != nil {
		t.Fatal(err)
	}
	if j := jobByID(s, libJob); j.RunnerName != "ent-runner" {
		t.Fatalf("acme/lib job %+v", j)
	}
	if j := jobByID(s, otherJob); j.Status != StatusQueued {
		t.Fatalf("other/x is outside the enterprise and the repo runner's repo: %+v", j)
	}
	select {
	case err := <-repoRunner:
		t.Fatalf("the acme/app runner took a job elsewhere: %v", err)
	default:
	}
	// A job of acme/app without label b: the idle repo runner takes it.
	s.QueueJob("acme/app", JobSpec{Labels: []string{"A"}})
	if err := <-repoRunner; err != nil {
		t.Fatal(err)
	}
}

// A runner that died idle (killed: it never says goodbye) counts as
// online until the heartbeat timeout, as on GitHub; once its registration
// is removed it no longer does (no job can go to it), so the peak of
// runners at once counts only runners that could take a job.
func TestRunRunner_RemovedDeadRunnerNotOnline(t *testing.T) {
	s, base := newStandin(t, Options{})
	s.AddRepo("acme", "app")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, cfg := mintJIT(t, base+"/repos/acme/app", token(adminPAT), "corral-idle", "self-hosted", "corral-x")
	rctx, kill := context.WithCancel(ctx)
	done := startRunner(rctx, map[string]string{EnvJITConfig: cfg}, io.Discard)
	for s.Stats().AliveRunners != 1 {
		if ctx.Err() != nil {
			t.Fatal("the runner never came online")
		}
		time.Sleep(10 * time.Millisecond)
	}
	kill()
	<-done
	if st := s.Stats(); st.AliveRunners != 1 {
		t.Fatalf("a runner killed a moment ago: %d online, want 1 (until its heartbeat times out)", st.AliveRunners)
	}
	want(t, do(t, "DELETE", fmt.Sprintf("%s/repos/acme/app/actions/runners/%d", base, id), token(adminPAT), nil), http.StatusNoContent)
	if st := s.Stats(); st.AliveRunners != 0 || st.Registered != 0 {
		t.Fatalf("after the dead runner's registration was removed: %d online, %d registered, want 0 and 0", st.AliveRunners, st.Registered)
	}
}
