package sim

import (
	"crypto/rand"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Runner-side protocol (what RunRunner speaks):
//
//	POST /api/v3/runner/connect            Authorization: Bearer <encoded_jit_config>
//	     -> 200 connectResponse; the JIT config is used up (401 the second time)
//	POST /api/v3/runner/acquire?wait_ms=N  Authorization: Bearer <session>
//	     -> 200 {job} | 204 nothing within the long poll | 410 registration removed
//	POST /api/v3/runner/jobs/{id}/heartbeat -> 200 | 410 job no longer this runner's
//	POST /api/v3/runner/jobs/{id}/complete  {conclusion} -> 200 | 410

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

func bearer(r *http.Request) string {
	v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(v)
}

func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := bearer(r)
	rn := s.byJIT[tok]
	if tok == "" || rn == nil || rn.session != "" || !rn.registered {
		writeError(w, http.StatusUnauthorized, "runner credential unknown, already used or revoked")
		return
	}
	rn.session = rand.Text()
	s.bySession[rn.session] = rn
	rn.connected, rn.lastSeen = true, time.Now()
	s.alive++
	s.peak = max(s.peak, s.alive)
	s.startLocked()
	s.notifyLocked()
	s.log.Debug("runner connected", "runner", rn.name, "target", rn.target)
	writeJSON(w, http.StatusOK, connectResponse{
		RunnerID: rn.id, Name: rn.name, Labels: rn.labels, Session: rn.session,
		HeartbeatMS: max(s.hbTime/4, time.Millisecond).Milliseconds(),
	})
}

// sessionLocked finds the runner of the request's session. A runner that
// is removed or finished gets 410 and is no longer alive.
func (s *Server) sessionLocked(w http.ResponseWriter, r *http.Request) *runner {
	rn := s.bySession[bearer(r)]
	if rn == nil {
		writeError(w, http.StatusUnauthorized, "unknown runner session")
		return nil
	}
	if !rn.registered && !rn.busy {
		s.finishLocked(rn)
		writeError(w, http.StatusGone, "runner removed: its registration no longer exists")
		return nil
	}
	if rn.finished {
		writeError(w, http.StatusGone, "runner declared offline or dead")
		return nil
	}
	rn.lastSeen = time.Now()
	return rn
}

func (s *Server) finishLocked(rn *runner) {
	if rn.alive() {
		s.alive--
	}
	rn.finished, rn.busy = true, false
}

func (s *Server) handleAcquire(w http.ResponseWriter, r *http.Request) {
	wait := maxPoll
	if v := r.URL.Query().Get("wait_ms"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			wait = min(time.Duration(n)*time.Millisecond, maxPoll)
		}
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
		if rn.job != nil {
			// Ephemeral: one job only. A repeated poll while busy gets the
			// same job back (a retried request).
			running, resp := rn.job.state == StateInProgress, acquired(rn.job)
			s.mu.Unlock()
			if running {
				writeJSON(w, http.StatusOK, resp)
			} else {
				writeError(w, http.StatusGone, "runner already ran its job")
			}
			return
		}
		if j := s.acquireLocked(rn); j != nil {
			resp := acquired(j)
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, resp)
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
			if rn := s.bySession[bearer(r)]; rn != nil && rn.alive() {
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
		ID: j.id, RunID: j.runID, Name: j.name, Repo: j.repo,
		Labels: append([]string(nil), j.labels...), DurationMS: j.duration.Milliseconds(),
	}
}

// acquireLocked gives the oldest matching queued job of the runner's target
// to the runner, exactly once.
func (s *Server) acquireLocked(rn *runner) *job {
	for _, j := range s.sortedJobsLocked() {
		if j.target != rn.target || j.state != StateQueued || !matches(rn.labels, j.labels) {
			continue
		}
		j.state, j.runner, j.started = StateInProgress, rn, time.Now().UTC()
		rn.busy, rn.job = true, j
		s.emitLocked(corral.ActionInProgress, j)
		s.notifyLocked()
		s.log.Debug("job acquired", "job", j.id, "runner", rn.name)
		return j
	}
	return nil
}

// ownJobLocked checks that the path's job is the runner's running job.
func (s *Server) ownJobLocked(w http.ResponseWriter, r *http.Request) (*runner, *job) {
	rn := s.sessionLocked(w, r)
	if rn == nil {
		return nil, nil
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if rn.job == nil || rn.job.id != id || rn.job.state != StateInProgress || rn.job.runner != rn {
		writeError(w, http.StatusGone, "job is no longer assigned to this runner")
		return nil, nil
	}
	return rn, rn.job
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rn, _ := s.ownJobLocked(w, r); rn != nil {
		writeJSON(w, http.StatusOK, map[string]string{})
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
	s.log.Debug("job completed", "job", j.id, "runner", rn.name, "conclusion", req.Conclusion)
	writeJSON(w, http.StatusOK, map[string]string{})
}
