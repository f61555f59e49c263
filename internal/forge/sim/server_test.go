package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func TestServer_flow(t *testing.T) {
	f := newFixture(t, Options{Seed: 1})
	ctx := context.Background()
	type queued struct {
		id     int64
		labels []string
	}
	var jobs []queued
	for i := range 6 {
		// A unique label binds each runner to its job (a gpu runner could
		// otherwise take a cpu job and strand a cpu runner).
		labels := []string{"self-hosted", "linux", fmt.Sprintf("run-%d", i)}
		if i%2 == 1 {
			labels = append(labels, "gpu")
		}
		spec := JobSpec{Repo: "octo/app", Name: fmt.Sprintf("job-%d", i), Labels: labels, Duration: 150 * time.Millisecond}
		jobs = append(jobs, queued{f.sim.QueueJob("t1", spec), labels})
	}
	var procs []*runnerProc
	for i, j := range jobs {
		// Runner labels in another case: matching ignores case.
		var upper []string
		for _, l := range j.labels {
			upper = append(upper, strings.ToUpper(l))
		}
		b, err := f.client.MintRunner(ctx, corral.RunnerSpec{Name: fmt.Sprintf("corral-%d", i), Labels: upper})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b.Command, []string{"sim-runner"}) || b.RunnerID == 0 {
			t.Fatalf("bootstrap = %+v", b)
		}
		if b.Env[EnvURL].Reveal() != f.http.URL || b.Env[EnvToken].Reveal() == "" {
			t.Fatalf("bootstrap env lacks URL or token")
		}
		procs = append(procs, startRunner(t, b))
	}
	for i, p := range procs {
		if err := p.wait(t, 15*time.Second); err != nil {
			t.Fatalf("runner %d: %v\n%s", i, err, p.log.String())
		}
		if !strings.Contains(p.log.String(), "done") {
			t.Errorf("runner %d log: %q", i, p.log.String())
		}
	}
	eventually(t, 5*time.Second, "webhooks sent", f.webhooksSettled)

	st := f.sim.Stats()
	if st.JobsCompleted != 6 || st.JobsQueued != 0 || st.JobsRunning != 0 {
		t.Errorf("jobs queued/running/completed = %d/%d/%d", st.JobsQueued, st.JobsRunning, st.JobsCompleted)
	}
	for _, j := range jobs {
		if st.Completions[j.id] != 1 {
			t.Errorf("job %d completed %d times", j.id, st.Completions[j.id])
		}
	}
	if st.PeakRunners < 1 || st.PeakRunners > 6 || st.AliveRunners != 0 || st.Registered != 0 {
		t.Errorf("peak/alive/registered = %d/%d/%d", st.PeakRunners, st.AliveRunners, st.Registered)
	}
	if st.Calls["POST jitconfig"] != 6 || st.Calls["POST connect"] != 6 || st.Calls["POST complete"] != 6 {
		t.Errorf("calls = %v", st.Calls)
	}
	if st.Webhooks.Sent != 18 || st.Webhooks.Failed+st.Webhooks.Dropped+st.Webhooks.Duplicated != 0 {
		t.Errorf("webhooks = %+v", st.Webhooks)
	}
	runnerOf := map[int64]string{}
	for _, ji := range f.sim.Jobs() {
		if ji.State != StateCompleted || ji.Conclusion != "success" || ji.RunnerName == "" || ji.Completions != 1 {
			t.Errorf("job = %+v", ji)
		}
		runnerOf[ji.ID] = ji.RunnerName
	}
	for _, j := range jobs {
		// Webhooks go out concurrently, like GitHub's: no order is promised,
		// so compare them sorted by action.
		evs := f.hooks.forJob(j.id)
		rank := map[corral.JobAction]int{corral.ActionQueued: 0, corral.ActionInProgress: 1, corral.ActionCompleted: 2}
		slices.SortStableFunc(evs, func(a, b corral.JobEvent) int { return rank[a.Action] - rank[b.Action] })
		var actions []corral.JobAction
		for _, e := range evs {
			actions = append(actions, e.Action)
		}
		if !slices.Equal(actions, []corral.JobAction{corral.ActionQueued, corral.ActionInProgress, corral.ActionCompleted}) {
			t.Errorf("job %d webhooks: %v", j.id, actions)
			continue
		}
		ip, done := evs[1], evs[2]
		if ip.RunnerName != runnerOf[j.id] || ip.RunnerID == 0 || done.Conclusion != "success" {
			t.Errorf("job %d: in_progress %+v completed %+v", j.id, ip, done)
		}
		if evs[0].Repo != "octo/app" || !slices.Equal(evs[0].Labels, j.labels) || evs[0].ForgeJobID <= 1<<31 {
			t.Errorf("queued event = %+v", evs[0])
		}
	}
	for _, d := range f.hooks.deliveries() {
		if d.Repo != "octo/app" || d.Event != "workflow_job" {
			t.Errorf("delivery = %+v", d)
		}
	}
}

func TestServer_labelsMustAllMatch(t *testing.T) {
	f := newFixture(t, Options{})
	id := f.sim.QueueJob("t1", JobSpec{Labels: []string{"self-hosted", "gpu"}})
	b, err := f.client.MintRunner(context.Background(), corral.RunnerSpec{Name: "corral-cpu", Labels: []string{"self-hosted"}})
	if err != nil {
		t.Fatal(err)
	}
	p := startRunner(t, b)
	// The runner polls (long polls end after at most 2s) but never gets the job.
	eventually(t, 5*time.Second, "a poll", func() bool { return f.sim.Stats().Calls["POST acquire"] >= 1 })
	if j := f.job(t, id); j.State != StateQueued {
		t.Fatalf("job = %+v, want queued", j)
	}
	p.cancel()
	if err := p.wait(t, 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("runner err = %v", err)
	}
}

func TestServer_deadBusyRunner(t *testing.T) {
	f := newFixture(t, Options{HeartbeatTimeout: 200 * time.Millisecond})
	id := f.sim.QueueJob("t1", JobSpec{Labels: []string{"x"}, Duration: time.Minute})
	b, err := f.client.MintRunner(context.Background(), corral.RunnerSpec{Name: "corral-dead", Labels: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	p := startRunner(t, b)
	eventually(t, 5*time.Second, "job in progress", func() bool { return f.job(t, id).State == StateInProgress })
	p.cancel() // the runner is killed: it goes silent mid-job
	if err := p.wait(t, 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("runner err = %v", err)
	}
	eventually(t, 5*time.Second, "job failed", func() bool { return f.job(t, id).State == StateCompleted })
	eventually(t, 5*time.Second, "webhooks sent", f.webhooksSettled)
	if j := f.job(t, id); j.Conclusion != "failure" || j.Completions != 1 {
		t.Errorf("job = %+v", j)
	}
	evs := f.hooks.forJob(id)
	if len(evs) != 3 || evs[2].Action != corral.ActionCompleted || evs[2].Conclusion != "failure" || evs[2].RunnerName != "corral-dead" {
		t.Errorf("webhooks = %+v", evs)
	}
	st := f.sim.Stats()
	if st.AliveRunners != 0 || st.PeakRunners != 1 {
		t.Errorf("alive/peak = %d/%d", st.AliveRunners, st.PeakRunners)
	}
	// Like GitHub, the lost runner stays registered, offline and idle, until
	// someone removes it.
	rs := f.sim.Runners("t1")
	if len(rs) != 1 || rs[0].Online || rs[0].Busy {
		t.Fatalf("runners = %+v", rs)
	}
	if err := f.client.RemoveRunner(context.Background(), rs[0]); err != nil {
		t.Fatal(err)
	}
	if rs := f.sim.Runners("t1"); len(rs) != 0 {
		t.Errorf("runners after removal = %+v", rs)
	}
}

func TestServer_jitConfigIsSingleUse(t *testing.T) {
	f := newFixture(t, Options{})
	b, err := f.client.MintRunner(context.Background(), corral.RunnerSpec{Name: "corral-1", Labels: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	connect := func() int {
		req, _ := http.NewRequest(http.MethodPost, f.http.URL+"/api/v3/runner/connect", nil)
		req.Header.Set("Authorization", "Bearer "+b.Env[EnvToken].Reveal())
		resp, err := f.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := connect(); got != http.StatusOK {
		t.Fatalf("first connect: %d", got)
	}
	if got := connect(); got != http.StatusUnauthorized {
		t.Fatalf("second connect: %d, want 401", got)
	}
}

func TestServer_ServeHTTP_listJobs(t *testing.T) {
	f := newFixture(t, Options{})
	var ids []int64
	for i := range 7 {
		ids = append(ids, f.sim.QueueJob("t1", JobSpec{Name: fmt.Sprint(i), Labels: []string{"x"}, Duration: time.Minute}))
	}
	b, err := f.client.MintRunner(context.Background(), corral.RunnerSpec{Name: "corral-1", Labels: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	startRunner(t, b)
	eventually(t, 5*time.Second, "first job running", func() bool { return f.job(t, ids[0]).State == StateInProgress })

	type page struct {
		Total int         `json:"total_count"`
		Jobs  []jobObject `json:"jobs"`
	}
	get := func(url string) (page, http.Header, int) {
		resp, err := f.http.Client().Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p page
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
		}
		return p, resp.Header, resp.StatusCode
	}
	base := f.http.URL + "/api/v3/targets/t1/actions/jobs"

	t.Run("queued, paged", func(t *testing.T) {
		var seen []int64
		next, pages := base+"?status=queued&per_page=4", 0
		for next != "" {
			p, h, code := get(next)
			if code != http.StatusOK || p.Total != 6 {
				t.Fatalf("code %d total %d", code, p.Total)
			}
			for _, j := range p.Jobs {
				if j.Status != StateQueued {
					t.Errorf("job %d status %s", j.ID, j.Status)
				}
				seen = append(seen, j.ID)
			}
			if pages == 0 && !strings.Contains(h.Get("Link"), `rel="last"`) {
				t.Errorf("Link = %q", h.Get("Link"))
			}
			next, pages = nextLink(h.Get("Link")), pages+1
		}
		if pages != 2 || !slices.Equal(seen, ids[1:]) {
			t.Errorf("pages %d, ids %v, want %v", pages, seen, ids[1:])
		}
	})
	t.Run("in_progress", func(t *testing.T) {
		p, _, _ := get(base + "?status=in_progress")
		if p.Total != 1 || p.Jobs[0].ID != ids[0] || p.Jobs[0].RunnerName == nil || *p.Jobs[0].RunnerName != "corral-1" {
			t.Errorf("page = %+v", p)
		}
	})
	t.Run("bad status", func(t *testing.T) {
		if _, _, code := get(base + "?status=sleeping"); code != http.StatusUnprocessableEntity {
			t.Errorf("code = %d", code)
		}
	})
	t.Run("unknown target", func(t *testing.T) {
		if _, _, code := get(f.http.URL + "/api/v3/targets/nope/actions/jobs"); code != http.StatusNotFound {
			t.Errorf("code = %d", code)
		}
	})
	t.Run("client OpenJobs", func(t *testing.T) {
		evs, err := f.client.OpenJobs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 7 {
			t.Fatalf("%d events", len(evs))
		}
		running := evs[len(evs)-1]
		if running.Action != corral.ActionInProgress || running.ForgeJobID != ids[0] || running.RunnerName != "corral-1" ||
			running.Repo != "sim/t1" || running.At.IsZero() {
			t.Errorf("running = %+v", running)
		}
		if evs[0].Action != corral.ActionQueued || !slices.Equal(evs[0].Labels, []string{"x"}) {
			t.Errorf("queued = %+v", evs[0])
		}
	})
}
