package standin

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrRunNotCompleted: GitHub re-runs only a completed workflow run.
var ErrRunNotCompleted = errors.New("standin: the workflow run is not completed")

// latest is what filter=latest shows: per job name, the job of the most
// recent attempt that ran it (a re-run of failed jobs keeps the jobs that
// passed).
func (r *run) latest() []*job {
	idx := map[string]int{}
	var out []*job
	for _, j := range r.jobs {
		if i, ok := idx[j.name]; ok {
			if j.attempt >= out[i].attempt {
				out[i] = j
			}
			continue
		}
		idx[j.name] = len(out)
		out = append(out, j)
	}
	return out
}

func previousAttemptURL(rn *run, runURL string) any {
	if rn.attempt <= 1 {
		return nil
	}
	return fmt.Sprintf("%s/attempts/%d", runURL, rn.attempt-1)
}

// Rerun re-runs a completed workflow run as GitHub does: run_attempt goes
// up by one and every job of the latest attempt (failedOnly: only those
// that did not succeed) gets a NEW job id in the same run, queued; the
// old jobs stay as they were, listed only with filter=all. It sends
// workflow_run requested and workflow_job queued for each new job and
// returns the new job ids.
func (s *Server) Rerun(runID int64, failedOnly bool) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rerunLocked(runID, failedOnly)
}

func (s *Server) rerunLocked(runID int64, failedOnly bool) ([]int64, error) {
	rn := s.runs[runID]
	if rn == nil {
		return nil, fmt.Errorf("standin: run %d: not found", runID)
	}
	if st, _ := rn.status(); st != StatusCompleted {
		return nil, fmt.Errorf("run %d: %w", runID, ErrRunNotCompleted)
	}
	var again []*job
	for _, j := range rn.latest() {
		if !failedOnly || (j.conclusion != "success" && j.conclusion != "skipped") {
			again = append(again, j)
		}
	}
	if len(again) == 0 {
		return nil, fmt.Errorf("standin: run %d has no failed job to re-run", runID)
	}
	now := s.now().UTC().Truncate(time.Second)
	rn.attempt++
	rn.updated = now
	var ids []int64
	var fresh []*job
	for _, old := range again {
		s.nextJob++
		j := &job{id: s.nextJob, run: rn, attempt: rn.attempt, name: old.name, labels: append([]string(nil), old.labels...),
			duration: old.duration, status: StatusQueued, created: now}
		rn.jobs = append(rn.jobs, j)
		s.jobs[j.id] = j
		ids = append(ids, j.id)
		fresh = append(fresh, j)
	}
	s.emitRunLocked("requested", rn)
	for _, j := range fresh {
		s.emitJobLocked("queued", j)
	}
	s.notifyLocked()
	return ids, nil
}

// POST /repos/{o}/{r}/actions/runs/{run_id}/rerun and .../rerun-failed-jobs:
// 201 with an empty object; 403 for a run not completed.
func (s *Server) handleRerun(failedOnly bool) func(w http.ResponseWriter, r *http.Request, c *call) {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		s.mu.Lock()
		rn := s.scopeRunLocked(r, c)
		if rn == nil {
			s.mu.Unlock()
			s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
			return
		}
		_, err := s.rerunLocked(rn.id, failedOnly)
		s.mu.Unlock()
		switch {
		case errors.Is(err, ErrRunNotCompleted):
			s.respond(w, r, c, http.StatusForbidden, errBody(http.StatusForbidden, "This workflow run is not completed"))
		case err != nil:
			s.respond(w, r, c, http.StatusForbidden, errBody(http.StatusForbidden, "This workflow run cannot be rerun"))
		default:
			s.respond(w, r, c, http.StatusCreated, map[string]any{})
		}
	}
}
