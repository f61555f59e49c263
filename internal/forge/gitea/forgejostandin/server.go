// Package forgejostandin is a local stand-in of Forgejo (≥ 15) for corral's
// one-job mode, faithful to what Forgejo documents of it (docs/forgejo.md
// lists each fact and its source), because neither Forgejo nor
// forgejo-runner can be built here:
//
//   - GET /api/v1/{scope}/actions/runners/jobs: a bare JSON array of the
//     waiting and running jobs, each {id, attempt, handle, repo_id,
//     owner_id, name, needs, runs_on, task_id, status}; the handle is
//     unique to one attempt of one job.
//   - POST /api/v1/{scope}/actions/runners {name, description, ephemeral}:
//     201 {id, uuid, token}.
//   - GET /api/v1/{scope}/actions/runners (bare array, X-Total-Count),
//     GET and DELETE …/runners/{id} (204).
//   - An ephemeral runner's registration is removed after its one job.
//
// The runner side is the stand-in's own small protocol (Forgejo's runner
// protocol is not documented for third parties): RunOneJob, the simulated
// `forgejo-runner one-job`, presents its uuid, token, labels and the
// handle it was started with, and gets exactly the job of that handle. The
// stand-in records a Violation whenever a runner asks for a job it was not
// made for: no handle, an unknown or stale handle, a job another runner
// holds, a second job, labels that do not cover the job's runs_on, or
// unknown credentials. Tests assert that there are none.
package forgejostandin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Server.
type Options struct {
	// Scope is the API prefix the targets use, e.g. "/repos/o/r" (default),
	// "/orgs/o", "/user" or "/admin".
	Scope string
	// Token is the API token the stand-in accepts ("Authorization: token
	// X"); default "forgejo-standin-token".
	Token string
}

// Job is one job as the stand-in holds it.
type Job struct {
	ID       int64         `json:"id"`
	Attempt  int           `json:"attempt"`
	Handle   string        `json:"handle"`
	Name     string        `json:"name"`
	RunsOn   []string      `json:"runs_on"`
	Status   string        `json:"status"` // waiting, running, success
	Duration time.Duration `json:"-"`
	// RanBy is the name of the runner that ran it, and RunnerHandle the
	// handle that runner presented.
	RanBy        string `json:"-"`
	RunnerHandle string `json:"-"`
}

// Runner is one runner registration.
type Runner struct {
	ID        int64
	UUID      string
	Name      string
	Ephemeral bool
	Labels    []string
	token     string
	Handle    string // the handle it presented, once it asked for its job
	JobID     int64  // the job it got
	Done      bool
}

// Server is the stand-in. It listens on 127.0.0.1 only.
type Server struct {
	URL   string
	opt   Options
	ln    net.Listener
	srv   *http.Server
	start time.Time

	mu         sync.Mutex
	nextJob    int64
	nextRunner int64
	jobs       map[int64]*Job
	runners    map[int64]*Runner
	removed    []Runner // registrations removed (by Forgejo or by DELETE)
	violations []string
	failing    bool
	calls      map[string]int // API calls by "METHOD path-class"
}

// Start starts a stand-in on 127.0.0.1 (a free port).
func Start(opt Options) (*Server, error) {
	if opt.Scope == "" {
		opt.Scope = "/repos/o/r"
	}
	if opt.Token == "" {
		opt.Token = "forgejo-standin-token"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + ln.Addr().String(), opt: opt, ln: ln, start: time.Now(),
		jobs: map[int64]*Job{}, runners: map[int64]*Runner{}, calls: map[string]int{}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// Token is the API token the stand-in accepts.
func (s *Server) Token() string { return s.opt.Token }

// Queue adds a waiting job that runs for d once a runner has it, and
// returns its id.
func (s *Server) Queue(name string, runsOn []string, d time.Duration) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextJob++
	id := 100 + s.nextJob
	s.jobs[id] = &Job{ID: id, Attempt: 1, Handle: newHandle(), Name: name, RunsOn: slices.Clone(runsOn),
		Status: "waiting", Duration: d}
	return id
}

// Jobs returns a copy of every job, by id.
func (s *Server) Jobs() []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, *j)
	}
	slices.SortFunc(out, func(a, b Job) int { return int(a.ID - b.ID) })
	return out
}

// Runners returns the registrations that exist.
func (s *Server) Runners() []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Runner, 0, len(s.runners))
	for _, r := range s.runners {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Runner) int { return int(a.ID - b.ID) })
	return out
}

// Removed returns the registrations removed so far.
func (s *Server) Removed() []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.removed)
}

// Violations returns every request of a runner for a job it was not made
// for.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

// SetFailing makes every API call (not the runners' side) answer 500
// while on.
func (s *Server) SetFailing(on bool) {
	s.mu.Lock()
	s.failing = on
	s.mu.Unlock()
}

// Calls returns the API calls answered, by "METHOD class" (class: jobs,
// runners, runner).
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

func newHandle() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *Server) violate(format string, args ...any) {
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

// ServeHTTP routes the API and the runners' side.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, "/standin/runner/"); ok {
		s.runnerSide(w, r, rest)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1"+s.opt.Scope+"/actions/runners")
	if !ok {
		fail(w, http.StatusNotFound, "not found")
		return
	}
	if r.Header.Get("Authorization") != "token "+s.opt.Token {
		fail(w, http.StatusUnauthorized, "token is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	class := "runners"
	if rest == "/jobs" {
		class = "jobs"
	} else if rest != "" {
		class = "runner"
	}
	s.calls[r.Method+" "+class]++
	if s.failing {
		fail(w, http.StatusInternalServerError, "stand-in: injected failure")
		return
	}
	switch {
	case rest == "/jobs" && r.Method == http.MethodGet:
		out := []*Job{}
		for _, j := range s.jobs {
			if j.Status == "waiting" || j.Status == "running" {
				out = append(out, j)
			}
		}
		slices.SortFunc(out, func(a, b *Job) int { return int(a.ID - b.ID) })
		type listed struct {
			*Job
			RepoID  int64    `json:"repo_id"`
			OwnerID int64    `json:"owner_id"`
			Needs   []string `json:"needs"`
			TaskID  int64    `json:"task_id"`
		}
		items := make([]listed, 0, len(out))
		for _, j := range out {
			var task int64
			if j.Status == "running" {
				task = j.ID * 10
			}
			items = append(items, listed{Job: j, RepoID: 1, OwnerID: 1, TaskID: task})
		}
		writeJSON(w, http.StatusOK, items)
	case rest == "" && r.Method == http.MethodPost:
		var in struct {
			Name        string `json:"name"`
			Description string `json:"description"`
			Ephemeral   bool   `json:"ephemeral"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Name == "" {
			fail(w, http.StatusUnprocessableEntity, "name is required")
			return
		}
		s.nextRunner++
		rn := &Runner{ID: s.nextRunner, UUID: newHandle(), Name: in.Name, Ephemeral: in.Ephemeral, token: newHandle()}
		s.runners[rn.ID] = rn
		writeJSON(w, http.StatusCreated, map[string]any{"id": rn.ID, "uuid": rn.UUID, "token": rn.token})
	case rest == "" && r.Method == http.MethodGet:
		out := []map[string]any{}
		for _, rn := range s.runners {
			out = append(out, s.runnerJSON(rn))
		}
		w.Header().Set("X-Total-Count", strconv.Itoa(len(out)))
		writeJSON(w, http.StatusOK, out)
	default:
		id, err := strconv.ParseInt(strings.TrimPrefix(rest, "/"), 10, 64)
		rn := s.runners[id]
		switch {
		case err != nil:
			fail(w, http.StatusNotFound, "not found")
		case rn == nil:
			fail(w, http.StatusNotFound, "runner not found")
		case r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, s.runnerJSON(rn))
		case r.Method == http.MethodDelete:
			s.remove(rn)
			w.WriteHeader(http.StatusNoContent)
		default:
			fail(w, http.StatusMethodNotAllowed, "method not allowed")
		}
	}
}

// runnerJSON is a runner as Forgejo lists it; status "active" while it
// runs a job, "idle" once it asked, "offline" before.
func (s *Server) runnerJSON(rn *Runner) map[string]any {
	status := "offline"
	switch {
	case rn.JobID != 0 && !rn.Done:
		status = "active"
	case rn.Handle != "":
		status = "idle"
	}
	return map[string]any{"id": rn.ID, "uuid": rn.UUID, "name": rn.Name, "version": "standin",
		"owner_id": 0, "repo_id": 1, "description": "", "labels": rn.Labels, "status": status, "ephemeral": rn.Ephemeral}
}

func (s *Server) remove(rn *Runner) {
	delete(s.runners, rn.ID)
	s.removed = append(s.removed, *rn)
}

// runnerReq is what the simulated runner sends.
type runnerReq struct {
	UUID   string   `json:"uuid"`
	Token  string   `json:"token"`
	Handle string   `json:"handle"`
	Labels []string `json:"labels"`
	Result string   `json:"result"`
}

// runnerJob is the stand-in's answer to a fetch.
type runnerJob struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	DurationMS int64  `json:"duration_ms"`
}

// runnerSide serves the simulated runner: fetch (the job of a handle) and
// done (its end).
func (s *Server) runnerSide(w http.ResponseWriter, r *http.Request, what string) {
	var in runnerReq
	if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&in) != nil {
		fail(w, http.StatusBadRequest, "want POST with a JSON body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var rn *Runner
	for _, x := range s.runners {
		if x.UUID == in.UUID && x.token == in.Token {
			rn = x
		}
	}
	if rn == nil {
		fail(w, http.StatusUnauthorized, "runner registration not found or token refused")
		return
	}
	switch what {
	case "fetch":
		s.fetch(w, rn, in)
	case "done":
		j := s.jobs[rn.JobID]
		if j == nil || j.Handle != in.Handle || j.Status != "running" {
			s.violate("runner %s reported the end of a job it does not run (handle %q)", rn.Name, in.Handle)
			fail(w, http.StatusConflict, "no such running job for this runner")
			return
		}
		j.Status = "success"
		if in.Result == "failure" {
			j.Status = "failure"
		}
		rn.Done = true
		if rn.Ephemeral {
			s.remove(rn) // Forgejo removes an ephemeral runner after its job
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(w, http.StatusNotFound, "not found")
	}
}

func (s *Server) fetch(w http.ResponseWriter, rn *Runner, in runnerReq) {
	if rn.JobID != 0 {
		if j := s.jobs[rn.JobID]; j != nil && in.Handle == rn.Handle && j.Status == "running" {
			writeJSON(w, http.StatusOK, runnerJob{j.ID, j.Name, j.Duration.Milliseconds()}) // a retried fetch
			return
		}
		s.violate("runner %s asked for a second job (handle %q) after job %d", rn.Name, in.Handle, rn.JobID)
		fail(w, http.StatusConflict, "this runner has had its one job")
		return
	}
	if in.Handle == "" {
		s.violate("runner %s asked for any job, without a handle", rn.Name)
		fail(w, http.StatusConflict, "a handle is required")
		return
	}
	var j *Job
	for _, x := range s.jobs {
		if x.Handle == in.Handle {
			j = x
		}
	}
	switch {
	case j == nil:
		s.violate("runner %s presented handle %q, which is no job's", rn.Name, in.Handle)
		fail(w, http.StatusNotFound, "no job has this handle")
		return
	case j.Status != "waiting":
		s.violate("runner %s asked for job %d (handle %q), which is %s (run by %s)", rn.Name, j.ID, in.Handle, j.Status, j.RanBy)
		fail(w, http.StatusConflict, "the job is not waiting")
		return
	}
	for _, l := range j.RunsOn {
		if !slices.Contains(in.Labels, l) {
			s.violate("runner %s asked for job %d, whose runs-on %v its labels %v do not cover", rn.Name, j.ID, j.RunsOn, in.Labels)
			fail(w, http.StatusConflict, "the runner's labels do not match the job")
			return
		}
	}
	rn.Handle, rn.JobID, rn.Labels = in.Handle, j.ID, slices.Clone(in.Labels)
	j.Status, j.RanBy, j.RunnerHandle = "running", rn.Name, in.Handle
	writeJSON(w, http.StatusOK, runnerJob{j.ID, j.Name, j.Duration.Milliseconds()})
}
