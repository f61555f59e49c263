package sim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// API paths. The forge API lives under /api/v3/targets/{target}/actions,
// the runner-side protocol under /api/v3/runner.
const (
	apiPrefix    = "/api/v3/targets/"
	runnerPrefix = "/api/v3/runner/"
	maxPoll      = 2 * time.Second
	maxBody      = 1 << 20
)

// routes maps the HTTP API. Forge API (counted, subject to FailRate; names
// in Stats.Calls in quotes):
//
//	POST   /api/v3/targets/{target}/actions/runners/generate-jitconfig  "POST jitconfig"
//	       {name, labels, runner_group_id} -> 201 {runner, encoded_jit_config}; 409 name taken
//	GET    /api/v3/targets/{target}/actions/runners[?name=&per_page=&page=]  "GET runners"
//	GET    /api/v3/targets/{target}/actions/runners/{id}                 "GET runner"
//	DELETE /api/v3/targets/{target}/actions/runners/{id}                 "DELETE runner" (204; 422 busy)
//	GET    /api/v3/targets/{target}/actions/jobs[?status=queued|in_progress|completed&per_page=&page=]  "GET jobs"
//	GET    /api/v3/targets/{target}/actions/jobs/{id}                                              "GET job"
//
// Lists answer {total_count, runners|jobs} with a GitHub-style Link header.
// The runner-side protocol is described in runnerapi.go.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	t := apiPrefix + "{target}/actions"
	mux.Handle("POST "+t+"/runners/generate-jitconfig", s.api("POST jitconfig", s.handleJITConfig))
	mux.Handle("GET "+t+"/runners", s.api("GET runners", s.handleListRunners))
	mux.Handle("GET "+t+"/runners/{id}", s.api("GET runner", s.handleGetRunner))
	mux.Handle("DELETE "+t+"/runners/{id}", s.api("DELETE runner", s.handleDeleteRunner))
	mux.Handle("GET "+t+"/jobs", s.api("GET jobs", s.handleListJobs))
	mux.Handle("GET "+t+"/jobs/{id}", s.api("GET job", s.handleGetJob))
	mux.Handle("POST "+runnerPrefix+"connect", s.runnerSide("POST connect", s.handleConnect))
	mux.Handle("POST "+runnerPrefix+"acquire", s.runnerSide("POST acquire", s.handleAcquire))
	mux.Handle("POST "+runnerPrefix+"jobs/{id}/heartbeat", s.runnerSide("POST heartbeat", s.handleHeartbeat))
	mux.Handle("POST "+runnerPrefix+"jobs/{id}/complete", s.runnerSide("POST complete", s.handleComplete))
	return mux
}

// api counts a forge API call and applies Faults.FailRate.
func (s *Server) api(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[name]++
		s.nextReq++
		fail := s.rng.Float64() < s.faults.FailRate
		w.Header().Set("X-GitHub-Request-Id", fmt.Sprintf("SIM:%d", s.nextReq))
		s.mu.Unlock()
		if fail {
			writeError(w, http.StatusInternalServerError, "simulated server error")
			return
		}
		h(w, r)
	})
}

// runnerSide counts a runner-side call; these never fail at random.
func (s *Server) runnerSide(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[name]++
		s.mu.Unlock()
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg, "documentation_url": "https://sim.invalid/docs"})
}

func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

// runnerJSON is GitHub's REST runner object.
type runnerJSON struct {
	ID            int64       `json:"id"`
	Name          string      `json:"name"`
	OS            string      `json:"os"`
	Status        string      `json:"status"`
	Busy          bool        `json:"busy"`
	Ephemeral     bool        `json:"ephemeral"`
	RunnerGroupID int64       `json:"runner_group_id"`
	Labels        []labelJSON `json:"labels"`
}

type labelJSON struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

func runnerObject(r *runner) runnerJSON {
	o := runnerJSON{ID: r.id, Name: r.name, OS: "linux", Status: "offline", Busy: r.busy, Ephemeral: true, RunnerGroupID: 1}
	if r.alive() {
		o.Status = "online"
	}
	o.Labels = make([]labelJSON, 0, len(r.labels))
	for i, l := range r.labels {
		o.Labels = append(o.Labels, labelJSON{ID: int64(i + 1), Name: l, Type: "custom"})
	}
	return o
}

// jitConfig is what encoded_jit_config holds (base64 JSON, like GitHub's).
type jitConfig struct {
	RunnerID int64  `json:"runner_id"`
	Name     string `json:"name"`
	Target   string `json:"target"`
	Token    string `json:"token"`
}

func (s *Server) handleJITConfig(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name          string   `json:"name"`
		Labels        []string `json:"labels"`
		RunnerGroupID int64    `json:"runner_group_id"`
		WorkFolder    string   `json:"work_folder"`
	}
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	if req.Name == "" || len(req.Labels) == 0 || len(req.Labels) > 100 {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed: name and 1 to 100 labels are required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[r.PathValue("target")]
	if t == nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if _, taken := t.byName[req.Name]; taken {
		writeError(w, http.StatusConflict, fmt.Sprintf("Already exists - A runner with the name %s already exists.", req.Name))
		return
	}
	s.nextRnr++
	rn := &runner{id: s.nextRnr, name: req.Name, target: t.id, labels: append([]string(nil), req.Labels...), registered: true}
	cfg, _ := json.Marshal(jitConfig{RunnerID: rn.id, Name: rn.name, Target: t.id, Token: rand.Text()})
	rn.jit = base64.StdEncoding.EncodeToString(cfg)
	s.runners[rn.id] = rn
	s.byJIT[rn.jit] = rn
	t.byName[rn.name] = rn
	writeJSON(w, http.StatusCreated, map[string]any{"runner": runnerObject(rn), "encoded_jit_config": rn.jit})
}

func (s *Server) handleListRunners(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tid := r.PathValue("target")
	if s.targets[tid] == nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	name := r.URL.Query().Get("name")
	var all []runnerJSON
	for _, rn := range s.registeredLocked(tid) {
		if name == "" || rn.name == name {
			all = append(all, runnerObject(rn))
		}
	}
	from, to, ok := paginate(w, r, len(all))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "runners": nonNil(all[from:to])})
}

func (s *Server) lookupRunnerLocked(w http.ResponseWriter, r *http.Request) *runner {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	rn := s.runners[id]
	if err != nil || rn == nil || !rn.registered || rn.target != r.PathValue("target") {
		writeError(w, http.StatusNotFound, "Not Found")
		return nil
	}
	return rn
}

func (s *Server) handleGetRunner(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rn := s.lookupRunnerLocked(w, r); rn != nil {
		writeJSON(w, http.StatusOK, runnerObject(rn))
	}
}

func (s *Server) handleDeleteRunner(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn := s.lookupRunnerLocked(w, r)
	if rn == nil {
		return
	}
	if rn.busy {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("Bad request - Runner %q is still running a job", rn.name))
		return
	}
	s.removeLocked(rn)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleListJobs(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	switch status {
	case "", StateQueued, StateInProgress, StateCompleted:
	default:
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed: status must be queued, in_progress or completed")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tid := r.PathValue("target")
	if s.targets[tid] == nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	var all []jobObject
	for _, j := range s.sortedJobsLocked() {
		if j.target == tid && (status == "" || j.state == status) {
			all = append(all, s.jobObjectLocked(j))
		}
	}
	from, to, ok := paginate(w, r, len(all))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "jobs": nonNil(all[from:to])})
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil || j.target != r.PathValue("target") {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, s.jobObjectLocked(j))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// paginate reads per_page (default 30, max 100) and page (from 1), sets a
// GitHub-style Link header and returns the slice bounds.
func paginate(w http.ResponseWriter, r *http.Request, total int) (from, to int, ok bool) {
	q := r.URL.Query()
	perPage, page := 30, 1
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusUnprocessableEntity, "Validation Failed: per_page")
			return 0, 0, false
		}
		perPage = min(n, 100)
	}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusUnprocessableEntity, "Validation Failed: page")
			return 0, 0, false
		}
		page = n
	}
	last := max((total+perPage-1)/perPage, 1)
	link := func(p int, rel string) string {
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
		if r.TLS != nil {
			u.Scheme = "https"
		}
		v := r.URL.Query()
		v.Set("per_page", strconv.Itoa(perPage))
		v.Set("page", strconv.Itoa(p))
		u.RawQuery = v.Encode()
		return fmt.Sprintf("<%s>; rel=%q", u.String(), rel)
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(min(page-1, last), "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	from = min((page-1)*perPage, total)
	to = min(from+perPage, total)
	return from, to, true
}
