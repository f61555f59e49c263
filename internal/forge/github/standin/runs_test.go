package standin

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func TestServer_Rerun(t *testing.T) {
	s, base := newStandin(t, Options{})
	rc := newReceiver(t)
	s.AddHook("acme/app", rc.url, testSecret)
	old := s.QueueJob("acme/app", JobSpec{Name: "build", Labels: []string{"self-hosted", "linux"}})
	runID := jobByID(s, old).RunID
	runURL := fmt.Sprintf("%s/repos/acme/app/actions/runs/%d", base, runID)
	if _, err := s.Rerun(runID, false); !errors.Is(err, ErrRunNotCompleted) {
		t.Fatalf("re-run of a queued run: %v", err)
	}
	want(t, do(t, "POST", runURL+"/rerun", token(adminPAT), nil), http.StatusForbidden)
	s.mu.Lock()
	s.completeLocked(s.jobs[old], "failure")
	s.mu.Unlock()

	want(t, do(t, "POST", runURL+"/rerun-failed-jobs", token(adminPAT), nil), http.StatusCreated)
	var newID int64
	for _, j := range s.Jobs() {
		if j.RunID == runID && j.ID != old {
			newID = j.ID
		}
	}
	if j := jobByID(s, newID); newID == 0 || j.RunAttempt != 2 || j.Status != StatusQueued || j.Name != "build" || len(j.Labels) != 2 {
		t.Fatalf("re-run job %+v", j)
	}
	if j := jobByID(s, old); j.RunAttempt != 1 || j.Status != StatusCompleted || j.Conclusion != "failure" {
		t.Fatalf("old attempt changed: %+v", j)
	}
	type jobList struct {
		Total int `json:"total_count"`
		Jobs  []struct {
			ID         int64  `json:"id"`
			RunID      int64  `json:"run_id"`
			RunAttempt int    `json:"run_attempt"`
			Status     string `json:"status"`
		} `json:"jobs"`
	}
	for _, q := range []string{"", "?filter=latest"} {
		var l jobList
		a := do(t, "GET", runURL+"/jobs"+q, token(adminPAT), nil)
		want(t, a, http.StatusOK)
		a.json(t, &l)
		if l.Total != 1 || len(l.Jobs) != 1 || l.Jobs[0].ID != newID || l.Jobs[0].RunAttempt != 2 || l.Jobs[0].Status != "queued" {
			t.Fatalf("jobs%s: %s", q, a.body)
		}
	}
	var all jobList
	a := do(t, "GET", runURL+"/jobs?filter=all", token(adminPAT), nil)
	a.json(t, &all)
	if all.Total != 2 || all.Jobs[0].ID != old || all.Jobs[0].RunAttempt != 1 || all.Jobs[1].ID != newID {
		t.Fatalf("filter=all: %s", a.body)
	}
	var rn struct {
		Status     string `json:"status"`
		RunAttempt int    `json:"run_attempt"`
		Previous   string `json:"previous_attempt_url"`
	}
	a = do(t, "GET", runURL, token(adminPAT), nil)
	a.json(t, &rn)
	if rn.Status != "queued" || rn.RunAttempt != 2 || rn.Previous != runURL+"/attempts/1" {
		t.Fatalf("run: %s", a.body)
	}
	waitFor(t, 5*time.Second, "the re-run job's queued webhook", func() bool { return len(rc.jobEvents(newID)) == 1 })
	ev := rc.jobEvents(newID)[0]
	if ev.Action != "queued" || ev.RunID != runID || ev.RunAttempt != 2 {
		t.Fatalf("webhook %+v", ev)
	}
	if evs := rc.jobEvents(old); len(evs) != 2 || evs[1].Action != "completed" || evs[1].RunAttempt != 1 {
		t.Fatalf("old job webhooks %+v", evs)
	}
	// Nothing failed any more: a re-run of failed jobs has nothing to do.
	s.mu.Lock()
	s.completeLocked(s.jobs[newID], "success")
	s.mu.Unlock()
	if _, err := s.Rerun(runID, true); err == nil {
		t.Fatal("re-run of failed jobs with none failed")
	}
	ids, err := s.Rerun(runID, false)
	if err != nil || len(ids) != 1 || jobByID(s, ids[0]).RunAttempt != 3 {
		t.Fatalf("full re-run: %v %v", ids, err)
	}
}

func TestServer_RunListCapped(t *testing.T) {
	clk := corral.NewFakeClock(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC))
	s, base := newStandin(t, Options{Now: clk.Now, RateLimit: 1 << 20})
	for range 1005 {
		s.QueueJob("acme/app", JobSpec{Name: "b", Labels: []string{"linux"}})
		clk.Advance(time.Second)
	}
	type runList struct {
		Total int `json:"total_count"`
		Runs  []struct {
			ID      int64  `json:"id"`
			Created string `json:"created_at"`
		} `json:"workflow_runs"`
	}
	list := func(q string) (runList, answer) {
		var l runList
		a := do(t, "GET", base+"/repos/acme/app/actions/runs?"+q, token(adminPAT), nil)
		want(t, a, http.StatusOK)
		a.json(t, &l)
		return l, a
	}
	l, a := list("status=queued&per_page=100&page=10")
	if l.Total != 1005 || len(l.Runs) != 100 || strings.Contains(a.header.Get("Link"), `rel="next"`) {
		t.Fatalf("page 10: total %d, %d runs, Link %s", l.Total, len(l.Runs), a.header.Get("Link"))
	}
	oldest := l.Runs[99].Created
	if l, _ = list("status=queued&per_page=100&page=11"); l.Total != 1005 || len(l.Runs) != 0 {
		t.Fatalf("page 11 past the cap: total %d, %d runs", l.Total, len(l.Runs))
	}
	// Without a capping filter every run is reachable.
	if l, _ = list("per_page=100&page=11"); len(l.Runs) != 5 {
		t.Fatalf("unfiltered page 11: %d runs", len(l.Runs))
	}
	// created narrows the search below the cap.
	if l, _ = list("status=queued&per_page=100&created=<=" + oldest); l.Total != 6 || len(l.Runs) != 6 || l.Runs[0].Created != oldest {
		t.Fatalf("created<=%s: total %d, %+v", oldest, l.Total, l.Runs)
	}
	if l, _ = list("status=queued&per_page=100&created=<" + oldest); l.Total != 5 {
		t.Fatalf("created<%s: total %d", oldest, l.Total)
	}
	if l, _ = list("created=2026-12-04..2026-12-04"); l.Total != 1005 {
		t.Fatalf("created by date range: total %d", l.Total)
	}
}
