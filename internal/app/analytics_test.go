package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// analyticsJob is one job sent as GitHub sends it: queued, then completed
// with the workflow's name, the forge's times and its steps.
type analyticsJob struct {
	target     string
	sec        corral.Secret
	id         int64
	repo       string
	workflow   string
	name       string
	conclusion string
	created    string // RFC 3339
	queue      time.Duration
	run        time.Duration
	steps      [][3]any // name, conclusion, duration
}

func (j analyticsJob) payload(action string) []byte {
	created, _ := time.Parse(time.RFC3339, j.created)
	started, completed := created.Add(j.queue), created.Add(j.queue+j.run)
	wj := map[string]any{"id": j.id, "run_id": j.id * 10, "run_attempt": 1, "name": j.name, "labels": []string{"self-hosted", "corral"},
		"status": action, "created_at": j.created, "workflow_name": j.workflow}
	if action == "completed" {
		wj["conclusion"] = j.conclusion
		wj["started_at"] = started.Format(time.RFC3339)
		wj["completed_at"] = completed.Format(time.RFC3339)
		at := started
		var steps []map[string]any
		for i, s := range j.steps {
			d := s[2].(time.Duration)
			steps = append(steps, map[string]any{"number": i + 1, "name": s[0], "status": "completed", "conclusion": s[1],
				"started_at": at.Format("2006-01-02T15:04:05.000Z"), "completed_at": at.Add(d).Format("2006-01-02T15:04:05.000Z")})
			at = at.Add(d)
		}
		wj["steps"] = steps
	}
	b, _ := json.Marshal(map[string]any{"action": action, "workflow_job": wj, "repository": map[string]any{"full_name": j.repo}})
	return b
}

// TestApp_Analytics feeds known completed jobs (success and failure,
// known queue times, durations and steps, two tenants) through the webhook
// endpoint and checks every figure of GET /api/v1/analytics, its tenant
// scoping, its filters and its errors. Percentiles are nearest-rank.
func TestApp_Analytics(t *testing.T) {
	f := newFixture(t)
	jobs := []analyticsJob{
		{"acme", secret, 501, "acme/app", "CI", "build", "success", "2026-11-01T10:00:00Z", 30 * time.Second, 300 * time.Second,
			[][3]any{{"checkout", "success", 10 * time.Second}, {"test", "success", 290 * time.Second}}},
		{"acme", secret, 502, "acme/app", "CI", "build", "failure", "2026-11-01T12:00:00Z", 60 * time.Second, 600 * time.Second,
			[][3]any{{"checkout", "success", 5 * time.Second}, {"test", "failure", 595 * time.Second}}},
		{"acme", secret, 503, "acme/app", "CI", "build", "success", "2026-11-03T09:00:00Z", 10 * time.Second, 200 * time.Second, nil},
		{"acme", secret, 504, "acme/app", "CI", "lint", "failure", "2026-11-03T08:00:00Z", 5 * time.Second, 60 * time.Second, nil},
		{"beta", otherSecret, 505, "beta/x", "Nightly", "build", "success", "2026-11-02T00:00:00Z", 20 * time.Second, 600 * time.Second, nil},
	}
	for _, j := range jobs {
		for _, action := range []string{"queued", "completed"} {
			body := j.payload(action)
			req := httptest.NewRequest("POST", "/webhooks/"+j.target, bytes.NewReader(body))
			req.Header = fake.Header("workflow_job", fmt.Sprint(action, "-", j.id), github.Sign(j.sec, body))
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if rec.Code != 202 {
				t.Fatalf("job %d %s: %d %s", j.id, action, rec.Code, rec.Body)
			}
		}
	}
	report := func(token, query string) app.AnalyticsReport {
		t.Helper()
		code, body := getAs(t, f.h, "/api/v1/analytics?from=2026-11-01&to=2026-11-04"+query, f.tok[token])
		if code != 200 {
			t.Fatalf("analytics%s as %s: %d %s", query, token, code, body)
		}
		var rep app.AnalyticsReport
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	s := func(p *float64) float64 {
		if p == nil {
			return -1
		}
		return *p
	}
	type fig struct {
		count, success, failure  int
		rate, d50, d95, q50, q95 float64
	}
	rep := report("admin", "")
	if rep.Runs != 5 || len(rep.Jobs) != 3 || len(rep.Days) != 3 || rep.Truncated {
		t.Fatalf("admin report: %d runs, %d groups, %d days: %+v", rep.Runs, len(rep.Jobs), len(rep.Days), rep)
	}
	build, lint, nightly := rep.Jobs[0], rep.Jobs[1], rep.Jobs[2]
	for _, c := range []struct {
		name                   string
		repo, wf, job          string
		gotRepo, gotWf, gotJob string
		got, want              fig
	}{
		// durations 300 600 200 -> 200 300 600; queues 30 60 10 -> 10 30 60.
		{"acme/app CI build", "acme/app", "CI", "build", build.Repository, build.Workflow, build.Job,
			fig{build.Count, build.Success, build.Failure, build.SuccessRate, s(build.DurationP50), s(build.DurationP95), s(build.QueueP50), s(build.QueueP95)},
			fig{3, 2, 1, 2.0 / 3, 300, 600, 30, 60}},
		{"acme/app CI lint", "acme/app", "CI", "lint", lint.Repository, lint.Workflow, lint.Job,
			fig{lint.Count, lint.Success, lint.Failure, lint.SuccessRate, s(lint.DurationP50), s(lint.DurationP95), s(lint.QueueP50), s(lint.QueueP95)},
			fig{1, 0, 1, 0, 60, 60, 5, 5}},
		{"beta/x Nightly build", "beta/x", "Nightly", "build", nightly.Repository, nightly.Workflow, nightly.Job,
			fig{nightly.Count, nightly.Success, nightly.Failure, nightly.SuccessRate, s(nightly.DurationP50), s(nightly.DurationP95), s(nightly.QueueP50), s(nightly.QueueP95)},
			fig{1, 1, 0, 1, 600, 600, 20, 20}},
	} {
		if c.gotRepo != c.repo || c.gotWf != c.wf || c.gotJob != c.job {
			t.Errorf("%s: group is %s %s %s", c.name, c.gotRepo, c.gotWf, c.gotJob)
		}
		if c.got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, c.got, c.want)
		}
	}
	// Days: 11-01 jobs 501 502; 11-02 job 505; 11-03 jobs 503 504.
	for i, want := range []fig{{2, 1, 1, 0.5, 300, 600, 30, 60}, {1, 1, 0, 1, 600, 600, 20, 20}, {2, 1, 1, 0.5, 60, 200, 5, 10}} {
		d := rep.Days[i]
		if got := (fig{d.Count, d.Success, d.Failure, d.SuccessRate, s(d.DurationP50), s(d.DurationP95), s(d.QueueP50), s(d.QueueP95)}); got != want {
			t.Errorf("day %s:\n got %+v\nwant %+v", d.Date, got, want)
		}
		if wantDate := fmt.Sprintf("2026-11-0%d", i+1); d.Date != wantDate {
			t.Errorf("day %d is %s, want %s", i, d.Date, wantDate)
		}
	}
	// Steps of acme/app CI build: checkout 10 s and 5 s; test 290 s and 595 s (one failed).
	if len(build.Steps) != 2 {
		t.Fatalf("steps: %+v", build.Steps)
	}
	co, te := build.Steps[0], build.Steps[1]
	if co.Name != "checkout" || co.Count != 2 || co.Failure != 0 || s(co.DurationP50) != 5 || s(co.DurationP95) != 10 {
		t.Errorf("checkout: %+v p50 %v p95 %v", co, s(co.DurationP50), s(co.DurationP95))
	}
	if te.Name != "test" || te.Count != 2 || te.Failure != 1 || s(te.DurationP50) != 290 || s(te.DurationP95) != 595 {
		t.Errorf("test: %+v p50 %v p95 %v", te, s(te.DurationP50), s(te.DurationP95))
	}
	if build.LastConclusion != "success" || build.LastAt.Format(time.RFC3339) != "2026-11-03T09:03:30Z" {
		t.Errorf("last run of build: %s at %v", build.LastConclusion, build.LastAt)
	}
	// Slowest: both builds have p95 600 s (the tie keeps repository order), lint 60 s.
	if len(rep.Slowest) != 3 || rep.Slowest[0].Repository != "acme/app" || rep.Slowest[0].Job != "build" ||
		rep.Slowest[1].Repository != "beta/x" || rep.Slowest[2].Job != "lint" {
		t.Errorf("slowest: %+v", rep.Slowest)
	}
	// Most failing: one failure each; lint never succeeded, so it leads.
	if len(rep.MostFailing) != 2 || rep.MostFailing[0].Job != "lint" || rep.MostFailing[1].Job != "build" {
		t.Errorf("most failing: %+v", rep.MostFailing)
	}

	// A tenant's token sees its own tenant's jobs only.
	own := report("tenant-read", "")
	if own.Runs != 4 || len(own.Jobs) != 2 {
		t.Errorf("tenant default sees %d runs in %d groups, want 4 in 2", own.Runs, len(own.Jobs))
	}
	for _, g := range own.Jobs {
		if g.Repository != "acme/app" {
			t.Errorf("tenant default sees %s", g.Repository)
		}
	}
	// Filters and the list length.
	if r := report("admin", "&workflow=Nightly"); r.Runs != 1 || len(r.Jobs) != 1 || r.Jobs[0].Repository != "beta/x" {
		t.Errorf("workflow=Nightly: %+v", r.Jobs)
	}
	if r := report("admin", "&repository=acme/app&job=build"); len(r.Jobs) != 1 || r.Jobs[0].Count != 3 {
		t.Errorf("repository=acme/app&job=build: %+v", r.Jobs)
	}
	if r := report("admin", "&top=1"); len(r.Slowest) != 1 || len(r.MostFailing) != 1 {
		t.Errorf("top=1: %d slowest, %d most failing", len(r.Slowest), len(r.MostFailing))
	}
	// A window without those days is empty, with a zero series.
	if code, body := getAs(t, f.h, "/api/v1/analytics?from=2026-10-01&to=2026-10-03", f.tok["admin"]); code != 200 ||
		!strings.Contains(body, `"runs":0`) || strings.Count(body, `"date"`) != 2 {
		t.Errorf("empty window: %d %s", code, body)
	}
	// Bad parameters are refused with what and where.
	for q, want := range map[string]string{
		"?from=yesterday":                "from=",
		"?from=2026-11-04&to=2026-11-01": "is not before",
		"?top=0":                         "top=",
		"?from=2020-01-01&to=2026-01-01": "400 days",
	} {
		code, body := getAs(t, f.h, "/api/v1/analytics"+q, f.tok["admin"])
		if code != 400 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %s, want 400 naming %q", q, code, body, want)
		}
	}
}
