package standin

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Runner-side protocol (what RunRunner speaks; invented, since GitHub's
// is not a public API). Served at / and under /api/v3 alike; not counted
// against rate limits, never failed by Faults.
//
//	POST /actions/runner-registration    Authorization: RemoteAuth <registration token>
//	     {url, runner_event: "register", name, labels, runner_group, ephemeral}
//	     -> 201 {encoded_jit_config}  (config.sh: the runner then goes on as a JIT runner)
//	     {url, runner_event: "remove", name} with a remove token -> 204
//	POST /_apis/runner/connect           Authorization: Bearer <credential of the JIT config>
//	     {version} -> 200 connectResponse; the credential is then used up (401)
//	POST /_apis/runner/message?wait_ms=N Authorization: Bearer <session>
//	     -> 200 {job} | 204 nothing within the long poll | 410 registration removed
//	     | 403 "Runner version vX is deprecated and cannot receive messages."
//	POST /_apis/runner/jobs/{id}/renew   -> 200 | 410 the job is no longer this runner's
//	POST /_apis/runner/jobs/{id}/complete {conclusion} -> 200 | 410
const maxPoll = 2 * time.Second

type connectResponse struct {
	RunnerID    int64    `json:"runner_id"`
	Name        string   `json:"name"`
	Labels      []string `json:"labels"`
	Session     string   `json:"session"`
	HeartbeatMS int64    `json:"heartbeat_interval_ms"`
}

type acquiredJob struct {
	ID         int64    `json:"id"`
	RunID      int64    `json:"run_id"`
	Name       string   `json:"name"`
	Repo       string   `json:"repository"`
	Labels     []string `json:"labels"`
	DurationMS int64    `json:"duration_ms"`
}

func (s *Server) runnerRoutes(mux *http.ServeMux) {
	side := func(name string, h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.calls[name]++
			s.mu.Unlock()
			h(w, r)
		})
	}
	mux.Handle("POST /actions/runner-registration", side("POST runner-registration", s.handleRunnerRegistration))
	mux.Handle("POST /_apis/runner/connect", side("POST runner connect", s.handleConnect))
	mux.Handle("POST /_apis/runner/message", side("POST runner message", s.handleMessage))
	mux.Handle("POST /_apis/runner/jobs/{id}/renew", side("POST runner renew", s.handleRenew))
	mux.Handle("POST /_apis/runner/jobs/{id}/complete", side("POST runner complete", s.handleComplete))
}

func bearer(r *http.Request, scheme string) string {
	h := r.Header.Get("Authorization")
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(h[len(scheme):])
}

// scopeOfURL maps a config.sh --url to a scope: /o/r, /o, /enterprises/e.
func scopeOfURL(raw string) (scope, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return scope{}, false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "enterprises":
		return scope{"enterprises", parts[1]}, true
	case len(parts) == 2:
		return scope{"repos", parts[0] + "/" + parts[1]}, true
	case len(parts) == 1 && parts[0] != "":
		return scope{"orgs", parts[0]}, true
	}
	return scope{}, false
}

func (s *Server) handleRunnerRegistration(w http.ResponseWriter, r *http.Request) {
	var req struct {
		URL         string   `json:"url"`
		RunnerEvent string   `json:"runner_event"`
		Name        string   `json:"name"`
		Labels      []string `json:"labels"`
		RunnerGroup string   `json:"runner_group"`
	}
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	sc, ok := scopeOfURL(req.URL)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.regTokens[bearer(r, "RemoteAuth ")]
	if t == nil || !s.now().Before(t.expires) {
		writeError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if !ok || !strings.EqualFold(sc.String(), t.scope.String()) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	switch req.RunnerEvent {
	case "register":
		if t.remove {
			writeError(w, http.StatusForbidden, "a remove token cannot register a runner")
			return
		}
		if req.Name == "" && len(req.Labels) == 0 {
			s.adminExchangeLocked(w, r, t) // the scale-set client (scaleset.go)
			return
		}
		if req.Name == "" || len(req.Labels) == 0 {
			writeError(w, http.StatusUnprocessableEntity, "name and labels are required")
			return
		}
		if req.RunnerGroup != "" && !strings.EqualFold(req.RunnerGroup, "Default") {
			writeError(w, http.StatusNotFound, fmt.Sprintf("Could not find any self-hosted runner group named %q.", req.RunnerGroup))
			return
		}
		if s.nameTakenLocked(t.scope, req.Name) {
			writeError(w, http.StatusConflict, fmt.Sprintf("A runner exists with the same name %s.", req.Name))
			return
		}
		rn := s.newRunnerLocked(t.scope, req.Name, req.Labels)
		rn.legacy = true
		base := "http://" + r.Host
		if r.TLS != nil {
			base = "https://" + r.Host
		}
		jit := encodeJIT(jitRunnerFile{AgentID: rn.id, AgentName: rn.name, PoolID: 1, ServerURL: base,
			GitHubURL: req.URL, WorkFolder: "_work", Ephemeral: true}, rn.cred)
		writeJSONRaw(w, http.StatusCreated, map[string]string{"encoded_jit_config": jit})
	case "remove":
		if !t.remove {
			writeError(w, http.StatusForbidden, "a registration token cannot remove a runner")
			return
		}
		for _, rn := range s.registeredLocked(t.scope) {
			if strings.EqualFold(rn.name, req.Name) && !rn.busy {
				s.removeLocked(rn)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusUnprocessableEntity, "runner_event must be register or remove")
	}
}

func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Version string `json:"version"`
	}
	_ = readJSON(r, &req)
	s.mu.Lock()
	defer s.mu.Unlock()
	rn := s.byCred[bearer(r, "Bearer ")]
	if rn == nil || rn.session != "" || !rn.registered {
		writeError(w, http.StatusUnauthorized, "runner credential unknown, already used or revoked")
		return
	}
	rn.session = rand.Text()
	rn.version = strings.TrimPrefix(req.Version, "v")
	s.bySession[rn.session] = rn
	rn.connected, rn.lastSeen = true, time.Now()
	s.alive++
	s.peak = max(s.peak, s.alive)
	s.startLocked()
	s.notifyLocked()
	writeJSONRaw(w, http.StatusOK, connectResponse{
		RunnerID: rn.id, Name: rn.name, Labels: rn.labels, Session: rn.session,
		HeartbeatMS: max(s.hbTime/4, time.Millisecond).Milliseconds(),
	})
}

// sessionLocked finds the runner of the request's session; a removed or
// finished runner gets 410.
func (s *Server) sessionLocked(w http.ResponseWriter, r *http.Request) *runner {
	rn := s.bySession[bearer(r, "Bearer ")]
	switch {
	case rn == nil:
		writeError(w, http.StatusUnauthorized, "unknown runner session")
		return nil
	case !rn.registered && !rn.busy:
		s.finishLocked(rn)
		writeError(w, http.StatusGone, "runner removed: its registration no longer exists")
		return nil
	case rn.finished:
		writeError(w, http.StatusGone, "runner declared offline or dead")
		return nil
	}
	rn.lastSeen = time.Now()
	return rn
}

func (s *Server) handleMessage(w http.ResponseWriter, r *http.Request) {
	wait := maxPoll
	if n, err := strconv.Atoi(r.URL.Query().Get("wait_ms")); err == nil && n >= 0 {
		wait = min(time.Duration(n)*time.Millisecond, maxPoll)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		rn := s.sessionLocked(w, r)
		if rn == nil {
			s.mu.Unlock()
			return
		}
		if least := s.opt.MinRunnerVersion; least != "" && versionLess(rn.version, least) {
			s.finishLocked(rn) // it never gets a job; its registration stays
			s.mu.Unlock()
			writeError(w, http.StatusForbidden, fmt.Sprintf("Runner version v%s is deprecated and cannot receive messages.", rn.version))
			return
		}
		if rn.job != nil { // a retried poll of a busy runner gets its job again
			running, resp := rn.job.status == StatusInProgress, acquired(rn.job)
			s.mu.Unlock()
			if running {
				writeJSONRaw(w, http.StatusOK, resp)
			} else {
				writeError(w, http.StatusGone, "runner already ran its job")
			}
			return
		}
		if j := s.acquireLocked(rn); j != nil {
			resp := acquired(j)
			s.mu.Unlock()
			writeJSONRaw(w, http.StatusOK, resp)
			return
		}
		changed, closed := s.changed, s.closed
		s.mu.Unlock()
		if closed {
			writeError(w, http.StatusServiceUnavailable, "server closing")
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			s.mu.Lock()
			if rn := s.bySession[bearer(r, "Bearer ")]; rn != nil && rn.alive() {
				rn.lastSeen = time.Now()
			}
			s.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func acquired(j *job) acquiredJob {
	return acquiredJob{
		ID: j.id, RunID: j.run.id, Name: j.name, Repo: j.run.repo.full(),
		Labels: append([]string(nil), j.labels...), DurationMS: j.duration.Milliseconds(),
	}
}

// acquireLocked gives the oldest queued job that the runner's scope covers
// and whose labels it has to the runner, exactly once.
func (s *Server) acquireLocked(rn *runner) *job {
	for _, j := range s.sortedJobsLocked() {
		if j.status != StatusQueued || !s.coversLocked(rn.scope, j.run.repo) || !matches(rn.labels, j.labels) {
			continue
		}
		// A scale set's runner takes only jobs assigned to its scale set;
		// those go to no other runner.
		if rn.set != nil || j.set != nil {
			if rn.set == nil || j.set != rn.set || !j.acquired {
				continue
			}
		}
		j.status, j.runner, j.started = StatusInProgress, rn, s.now().UTC().Truncate(time.Second)
		j.run.updated = j.started
		rn.busy, rn.job = true, j
		s.emitJobLocked("in_progress", j)
		s.scaleSetEventLocked("JobStarted", j)
		s.notifyLocked()
		return j
	}
	return nil
}

func (s *Server) ownJobLocked(w http.ResponseWriter, r *http.Request) (*runner, *job) {
	rn := s.sessionLocked(w, r)
	if rn == nil {
		return nil, nil
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if rn.job == nil || rn.job.id != id || rn.job.status != StatusInProgress || rn.job.runner != rn {
		writeError(w, http.StatusGone, "job is no longer assigned to this runner")
		return nil, nil
	}
	return rn, rn.job
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rn, _ := s.ownJobLocked(w, r); rn != nil {
		writeJSONRaw(w, http.StatusOK, map[string]string{})
	}
}

func (s *Server) handleComplete(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Conclusion string `json:"conclusion"`
	}
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	if req.Conclusion == "" {
		req.Conclusion = "success"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, j := s.ownJobLocked(w, r)
	if rn == nil {
		return
	}
	s.completeLocked(j, req.Conclusion)
	s.finishLocked(rn)
	s.removeLocked(rn) // ephemeral: the registration goes with its job
	writeJSONRaw(w, http.StatusOK, map[string]string{})
}
