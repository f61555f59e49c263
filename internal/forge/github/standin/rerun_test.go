package standin

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
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
