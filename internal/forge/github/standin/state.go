package standin

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Job and run statuses, GitHub's words.
const (
	StatusQueued     = "queued"
	StatusInProgress = "in_progress"
	StatusCompleted  = "completed"
)

// scope is where runners are registered: kind is "repos", "orgs" or
// "enterprises"; name is "o/r", "o" or "e".
type scope struct {
	kind, name string
}

func (sc scope) String() string { return sc.kind + "/" + sc.name }

// covers reports whether runners of sc may take jobs of repository rp.
func (s *Server) coversLocked(sc scope, rp *repo) bool {
	switch sc.kind {
	case "repos":
		return strings.EqualFold(sc.name, rp.full())
	case "orgs":
		return strings.EqualFold(sc.name, rp.owner)
	case "enterprises":
		o := s.orgs[strings.ToLower(rp.owner)]
		return o != nil && strings.EqualFold(o.enterprise, sc.name)
	}
	return false
}

// scopeExistsLocked reports whether the repo, org or enterprise exists.
func (s *Server) scopeExistsLocked(sc scope) bool {
	switch sc.kind {
	case "repos":
		return s.repos[strings.ToLower(sc.name)] != nil
	case "orgs":
		return s.orgs[strings.ToLower(sc.name)] != nil
	case "enterprises":
		return s.ents[strings.ToLower(sc.name)] != nil
	}
	return false
}

// QueueJob creates a workflow run with one queued job in repo ("o/r") and
// sends workflow_run requested and workflow_job queued to every matching
// hook and app. It returns the job id. An unknown repo is created.
func (s *Server) QueueJob(repoName string, j JobSpec) int64 {
	return s.QueueRun(repoName, j)[0]
}

// QueueRun creates one workflow run whose jobs (a matrix: at least one)
// are all queued at once, as QueueJob does for one. It returns the job ids.
func (s *Server) QueueRun(repoName string, specs ...JobSpec) []int64 {
	if len(specs) == 0 {
		specs = []JobSpec{{}}
	}
	owner, name, _ := strings.Cut(repoName, "/")
	s.AddRepo(owner, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repos[strings.ToLower(repoName)]
	now := s.now().UTC().Truncate(time.Second)
	s.nextRun++
	rn := &run{id: s.nextRun, number: s.nextRun % 10000, attempt: 1, repo: rp, created: now, updated: now}
	s.runs[rn.id] = rn
	var ids []int64
	for _, j := range specs {
		s.nextJob++
		jb := &job{
			id: s.nextJob, run: rn, attempt: 1, name: j.Name, labels: append([]string(nil), j.Labels...),
			duration: j.Duration, status: StatusQueued, created: now,
		}
		if jb.name == "" {
			jb.name = "build"
		}
		rn.jobs = append(rn.jobs, jb)
		s.jobs[jb.id] = jb
		ids = append(ids, jb.id)
	}
	s.emitRunLocked("requested", rn)
	for _, jb := range rn.jobs {
		s.emitJobLocked("queued", jb)
		s.offerLocked(jb)
	}
	s.notifyLocked()
	return ids
}

// CompleteJob ends a queued job that no runner holds with conclusion (it
// was cancelled, or ran on a runner outside the stand-in), sending its
// webhooks. It reports false for an unknown, held or completed job.
func (s *Server) CompleteJob(id int64, conclusion string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil || j.status != StatusQueued || j.runner != nil {
		return false
	}
	s.completeLocked(j, conclusion)
	s.notifyLocked()
	return true
}

func (r *run) status() (status, conclusion string) {
	status = StatusCompleted
	conclusion = "success"
	for _, j := range r.latest() {
		switch {
		case j.status == StatusInProgress:
			status = StatusInProgress
		case j.status == StatusQueued && status != StatusInProgress:
			status = StatusQueued
		}
		if j.conclusion != "" && j.conclusion != "success" {
			conclusion = j.conclusion
		}
	}
	if status != StatusCompleted {
		conclusion = ""
	}
	return status, conclusion
}

// completeLocked finishes a running job and sends its webhooks.
func (s *Server) completeLocked(j *job, conclusion string) {
	j.status, j.conclusion = StatusCompleted, conclusion
	j.completed = s.now().UTC().Truncate(time.Second)
	j.completions++
	j.run.updated = j.completed
	s.emitJobLocked("completed", j)
	s.scaleSetEventLocked("JobCompleted", j)
	if st, _ := j.run.status(); st == StatusCompleted {
		s.emitRunLocked("completed", j.run)
	}
}

// finishLocked marks a runner as gone for good (exited, died or offline).
func (s *Server) finishLocked(rn *runner) {
	if rn.alive() {
		s.alive--
	}
	rn.finished, rn.busy = true, false
}

// removeLocked drops a runner's registration.
func (s *Server) removeLocked(rn *runner) {
	if !rn.registered {
		return
	}
	rn.registered = false
	delete(s.byCred, rn.cred)
	if !rn.busy {
		// An idle runner without a registration takes no job any more
		// (its next poll gets 410), so it no longer counts as online;
		// a busy one finishes its job first, as on GitHub.
		s.finishLocked(rn)
	}
	s.notifyLocked()
}

// registeredLocked lists the current registrations of a scope by id.
func (s *Server) registeredLocked(sc scope) []*runner {
	var out []*runner
	for _, r := range s.runners {
		if r.registered && strings.EqualFold(r.scope.String(), sc.String()) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].id < out[b].id })
	return out
}

func (s *Server) nameTakenLocked(sc scope, name string) bool {
	for _, r := range s.registeredLocked(sc) {
		if strings.EqualFold(r.name, name) {
			return true
		}
	}
	return false
}

// checkHeartbeats fails the job of a busy runner that went silent and
// takes idle runners that stopped polling offline.
func (s *Server) checkHeartbeats() {
	defer s.wg.Done()
	tick := time.NewTicker(max(s.hbTime/5, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		now, changed := time.Now(), false
		for _, r := range s.runners {
			if !r.alive() {
				continue
			}
			silent := now.Sub(r.lastSeen)
			switch {
			case r.busy && silent > s.hbTime:
				s.log.Info("busy runner silent past the heartbeat timeout; its job fails", "runner", r.name, "job", r.job.id)
				s.completeLocked(r.job, "failure")
				// The lost runner's registration stays (offline), as on
				// GitHub; corral's runner sweep must remove it.
				s.finishLocked(r)
				changed = true
			case !r.busy && silent > s.hbTime+maxPoll:
				s.finishLocked(r)
				changed = true
			}
		}
		if changed {
			s.notifyLocked()
		}
		s.mu.Unlock()
	}
}

// matches reports whether runner labels include every job label, ignoring
// case, as GitHub matches runs-on.
func matches(runnerLabels, jobLabels []string) bool {
	for _, jl := range jobLabels {
		found := false
		for _, rl := range runnerLabels {
			if strings.EqualFold(jl, rl) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Calls:               copyMap(s.calls),
		PointsRefused:       s.pointsRefused,
		NotModified:         copyMap(s.notModified),
		CallsByCredential:   copyMap(s.callsByCred),
		TokenMints:          copyMap(s.mints),
		PeakRunners:         s.peak,
		AliveRunners:        s.alive,
		Completions:         map[int64]int{},
		RateLimitViolations: len(s.violations),
		Violations:          append([]string(nil), s.violations...),
	}
	for _, r := range s.runners {
		if r.registered {
			st.Registered++
		}
	}
	for id, j := range s.jobs {
		if j.completions > 0 {
			st.Completions[id] = j.completions
		}
	}
	st.Webhooks = s.out.stats()
	return st
}

func copyMap[K comparable](m map[K]int) map[K]int {
	out := make(map[K]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Jobs lists every job, oldest first.
func (s *Server) Jobs() []JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []JobInfo
	for _, j := range s.sortedJobsLocked() {
		ji := JobInfo{
			ID: j.id, RunID: j.run.id, RunAttempt: j.attempt, Repo: j.run.repo.full(), Name: j.name,
			Labels: append([]string(nil), j.labels...), Status: j.status, Conclusion: j.conclusion,
			Completions: j.completions, QueuedAt: j.created, StartedAt: j.started, CompletedAt: j.completed,
		}
		if j.runner != nil {
			ji.RunnerID, ji.RunnerName = j.runner.id, j.runner.name
		}
		out = append(out, ji)
	}
	return out
}

func (s *Server) sortedJobsLocked() []*job {
	js := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		js = append(js, j)
	}
	sort.Slice(js, func(a, b int) bool { return js[a].id < js[b].id })
	return js
}

// Runners lists every runner ever created, registered or not, by id.
func (s *Server) Runners() []RunnerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []RunnerInfo
	for _, r := range s.runners {
		ri := RunnerInfo{
			ID: r.id, Name: r.name, Scope: r.scope.String(), Labels: append([]string(nil), r.labels...),
			Version: r.version, Registered: r.registered, Online: r.alive(), Busy: r.busy, Legacy: r.legacy,
		}
		if r.job != nil {
			ri.JobID = r.job.id
		}
		out = append(out, ri)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

func (s *Server) violationLocked(cred, endpoint, why string) {
	s.violations = append(s.violations, fmt.Sprintf("%s %s %s: %s", s.now().UTC().Format(time.RFC3339Nano), cred, endpoint, why))
	s.log.Warn("rate-limit violation", "credential", cred, "endpoint", endpoint, "why", why)
}

// IssuedSecrets lists every credential the stand-in has handed out: App
// installation tokens, registration tokens and each runner's one-time
// credential (the secret inside its JIT config). Tests search corral's
// logs, answers and files for them.
func (s *Server) IssuedSecrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for t := range s.instTokens {
		out = append(out, t)
	}
	for t := range s.regTokens {
		out = append(out, t)
	}
	for _, r := range s.runners {
		if r.cred != "" {
			out = append(out, r.cred)
		}
	}
	sort.Strings(out)
	return out
}
