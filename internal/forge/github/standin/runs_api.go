package standin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Where URLs inside webhook payloads point (they are not tied to a request).
const (
	hookAPIBase = "https://api.github.com"
	hookWebBase = "https://github.com"
)

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(stamp)
}

func headSHA(runID int64) string {
	sum := sha256.Sum256([]byte(strconv.FormatInt(runID, 10)))
	return hex.EncodeToString(sum[:20])
}

// jobObjectLocked renders GitHub's job object (REST and webhook alike).
func (s *Server) jobObjectLocked(j *job, api, web string) map[string]any {
	full := j.run.repo.full()
	started := j.started
	if started.IsZero() {
		started = j.created // GitHub sets started_at while queued too
	}
	var conclusion any
	if j.conclusion != "" {
		conclusion = j.conclusion
	}
	steps := []map[string]any{}
	if j.status != StatusQueued {
		st := map[string]any{"name": "Set up job", "status": j.status, "conclusion": conclusion, "number": 1,
			"started_at": ts(j.started), "completed_at": ts(j.completed)}
		steps = append(steps, st)
	}
	o := map[string]any{
		"id": j.id, "run_id": j.run.id, "workflow_name": "CI", "head_branch": "main",
		"run_url":     fmt.Sprintf("%s/repos/%s/actions/runs/%d", api, full, j.run.id),
		"run_attempt": j.attempt, "node_id": fmt.Sprintf("CR_kwDO%d", j.id), "head_sha": headSHA(j.run.id),
		"url":      fmt.Sprintf("%s/repos/%s/actions/jobs/%d", api, full, j.id),
		"html_url": fmt.Sprintf("%s/%s/actions/runs/%d/job/%d", web, full, j.run.id, j.id),
		"status":   j.status, "conclusion": conclusion,
		"created_at": ts(j.created), "started_at": ts(started), "completed_at": ts(j.completed),
		"name": j.name, "steps": steps,
		"check_run_url": fmt.Sprintf("%s/repos/%s/check-runs/%d", api, full, j.id),
		"labels":        append([]string{}, j.labels...),
		"runner_id":     nil, "runner_name": nil, "runner_group_id": nil, "runner_group_name": nil,
	}
	if j.runner != nil {
		o["runner_id"], o["runner_name"] = j.runner.id, j.runner.name
		o["runner_group_id"], o["runner_group_name"] = j.runner.groupID, "Default"
	}
	return o
}

func (s *Server) runObjectLocked(rn *run, api, web string) map[string]any {
	status, conclusion := rn.status()
	var concl any
	if conclusion != "" {
		concl = conclusion
	}
	full := rn.repo.full()
	u := fmt.Sprintf("%s/repos/%s/actions/runs/%d", api, full, rn.id)
	actor := userObject("octocat", 583231, "User", api, web)
	repoObj := s.repoObjectLocked(rn.repo, api, web)
	return map[string]any{
		"id": rn.id, "name": "CI", "node_id": fmt.Sprintf("WFR_kwLO%d", rn.id), "head_branch": "main",
		"head_sha": headSHA(rn.id), "path": ".github/workflows/ci.yml", "display_title": "CI",
		"run_number": rn.number, "run_attempt": rn.attempt, "event": "push", "status": status, "conclusion": concl,
		"workflow_id": 161335, "check_suite_id": rn.id + 1, "url": u,
		"html_url":   fmt.Sprintf("%s/%s/actions/runs/%d", web, full, rn.id),
		"created_at": ts(rn.created), "updated_at": ts(rn.updated), "run_started_at": ts(rn.created),
		"jobs_url": u + "/jobs", "logs_url": u + "/logs", "check_suite_url": fmt.Sprintf("%s/repos/%s/check-suites/%d", api, full, rn.id+1),
		"artifacts_url": u + "/artifacts", "cancel_url": u + "/cancel", "rerun_url": u + "/rerun",
		"previous_attempt_url": previousAttemptURL(rn, u), "workflow_url": fmt.Sprintf("%s/repos/%s/actions/workflows/161335", api, full),
		"pull_requests": []any{}, "actor": actor, "triggering_actor": actor,
		"head_commit": map[string]any{"id": headSHA(rn.id), "tree_id": headSHA(rn.id + 1), "message": "CI",
			"timestamp": ts(rn.created), "author": map[string]any{"name": "Octocat", "email": "octocat@github.com"},
			"committer": map[string]any{"name": "Octocat", "email": "octocat@github.com"}},
		"repository": repoObj, "head_repository": repoObj,
	}
}

var runStatuses = []string{"completed", "action_required", "cancelled", "failure", "neutral", "skipped",
	"stale", "success", "timed_out", "in_progress", "queued", "requested", "waiting", "pending"}

func (s *Server) handleListRuns(w http.ResponseWriter, r *http.Request, c *call) {
	want := r.URL.Query().Get("status")
	if want != "" && !slices.Contains(runStatuses, want) {
		s.respond(w, r, c, http.StatusUnprocessableEntity, errBody(http.StatusUnprocessableEntity,
			fmt.Sprintf("Invalid request.\n\n%q is not a member of the status enum.", want)))
		return
	}
	created, ok := createdFilter(r.URL.Query().Get("created"))
	s.mu.Lock()
	var all []*run
	for _, rn := range s.runs {
		st, concl := rn.status()
		if ok && strings.EqualFold(rn.repo.full(), c.scope.name) && (want == "" || want == st || want == concl) && created(rn.created) {
			all = append(all, rn)
		}
	}
	slices.SortFunc(all, func(a, b *run) int { return int(b.id - a.id) }) // newest first
	from, to := s.pageRuns(w, r, c, len(all))
	out := []map[string]any{}
	for _, rn := range all[from:to] {
		out = append(out, s.runObjectLocked(rn, c.base, c.web))
	}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, map[string]any{"total_count": len(all), "workflow_runs": out})
}

func (s *Server) scopeRunLocked(r *http.Request, c *call) *run {
	rn := s.runs[pathID(r, "run_id")]
	if rn == nil || !strings.EqualFold(rn.repo.full(), c.scope.name) {
		return nil
	}
	return rn
}

func (s *Server) handleGetRun(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	rn := s.scopeRunLocked(r, c)
	if rn == nil {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	body := s.runObjectLocked(rn, c.base, c.web)
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, body)
}

func (s *Server) handleRunJobs(w http.ResponseWriter, r *http.Request, c *call) {
	f := r.URL.Query().Get("filter")
	if f != "" && f != "latest" && f != "all" {
		s.respond(w, r, c, http.StatusUnprocessableEntity, errBody(http.StatusUnprocessableEntity,
			fmt.Sprintf("Invalid request.\n\n%q is not a member of the filter enum.", f)))
		return
	}
	s.mu.Lock()
	rn := s.scopeRunLocked(r, c)
	if rn == nil {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	jobs := rn.latest() // filter=latest, the default, hides earlier attempts
	if f == "all" {
		jobs = rn.jobs
	}
	from, to := page(w, r, c, len(jobs))
	out := []map[string]any{}
	for _, j := range jobs[from:to] {
		out = append(out, s.jobObjectLocked(j, c.base, c.web))
	}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, map[string]any{"total_count": len(jobs), "jobs": out})
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	j := s.jobs[pathID(r, "job_id")]
	if j == nil || !strings.EqualFold(j.run.repo.full(), c.scope.name) {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	body := s.jobObjectLocked(j, c.base, c.web)
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, body)
}
