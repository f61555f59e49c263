// Package sim is a SIMULATED forge: a small stand-in for GitHub that corral
// dev and the tests run in-process. It is not a real forge and talks to no
// network service but the webhook URLs it is given.
//
// It queues jobs, mints one-time runner credentials (JIT-like), matches
// connected runners to jobs by labels, and sends signed workflow_job webhooks
// shaped like GitHub's, so corral parses them with the github.Parser. Faults
// (dropped, duplicated, delayed and reordered webhooks; API 5xx) come from a
// seeded random source. Server is the forge (an http.Handler), Client is
// corral's corral.Forge for it, and RunRunner is the simulated runner.
package sim

import (
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Options configure a Server.
type Options struct {
	Seed   int64
	Faults Faults
	// HeartbeatTimeout declares a busy runner dead when it has been silent
	// this long (default 5s). Idle runners that stop polling go offline
	// after HeartbeatTimeout plus the long-poll window.
	HeartbeatTimeout time.Duration
	Logger           *slog.Logger
	// HTTPClient sends the webhooks (default: a client with GitHub's 10s
	// delivery timeout).
	HTTPClient *http.Client
}

// Faults the simulated forge injects. Rates are probabilities in [0,1].
type Faults struct {
	DropRate      float64       // webhook never sent
	DuplicateRate float64       // webhook sent twice with the same delivery id
	ReorderRate   float64       // webhook held back until after a later one
	MinDelay      time.Duration // each webhook waits uniform [MinDelay, MaxDelay]
	MaxDelay      time.Duration
	FailRate      float64 // API calls (not runner-side ones) answer 500
}

// JobSpec describes a job to queue.
type JobSpec struct {
	Repo     string // owner/name; default "sim/<target>" (or the target if it has a slash)
	Name     string
	Labels   []string
	Duration time.Duration
}

// Job states, GitHub's words.
const (
	StateQueued     = "queued"
	StateInProgress = "in_progress"
	StateCompleted  = "completed"
)

// JobInfo is the server's view of one job.
type JobInfo struct {
	ID          int64
	RunID       int64
	Target      string
	Repo        string
	Name        string
	Labels      []string
	State       string
	Conclusion  string
	RunnerName  string
	Completions int
	// QueuedAt, StartedAt and CompletedAt are the forge's own times
	// (zero until they happen).
	QueuedAt, StartedAt, CompletedAt time.Time
}

// WebhookStats counts webhook deliveries. Sent and Failed count HTTP
// attempts (a duplicate is two attempts); Dropped, Duplicated and Reordered
// count fault decisions; Pending is what the sender still holds.
type WebhookStats struct {
	Sent, Dropped, Duplicated, Reordered, Failed, Pending int
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	Calls         map[string]int // per endpoint, e.g. "POST jitconfig"
	PeakRunners   int            // max runners alive at once (connected, not finished)
	AliveRunners  int
	Registered    int // current registrations over all targets
	JobsQueued    int
	JobsRunning   int
	JobsCompleted int
	Completions   map[int64]int // job id -> times completed (must be 1)
	Webhooks      WebhookStats
}

// Server is the simulated forge. Create it with NewServer; stop it with
// Close.
type Server struct {
	log     *slog.Logger
	hbTime  time.Duration
	handler http.Handler
	out     *sender

	mu        sync.Mutex
	rng       *rand.Rand
	faults    Faults
	targets   map[string]*target
	jobs      map[int64]*job
	runners   map[int64]*runner // every runner ever minted, removed ones too
	byJIT     map[string]*runner
	bySession map[string]*runner
	repoIDs   map[string]int64
	calls     map[string]int
	nextJob   int64
	nextRun   int64
	nextRnr   int64
	nextReq   int64
	alive     int
	peak      int
	changed   chan struct{} // closed and replaced on every change (long-poll wake-up)
	dropped   int
	dupes     int
	reordered int

	startOnce sync.Once
	closeOnce sync.Once
	closed    bool
	done      chan struct{}
	wg        sync.WaitGroup
}

type target struct {
	id      string
	hookURL string
	secret  corral.Secret
	byName  map[string]*runner // current registrations
}

type job struct {
	id, runID   int64
	target      string
	repo, name  string
	labels      []string
	duration    time.Duration
	state       string
	conclusion  string
	runner      *runner
	created     time.Time
	started     time.Time
	completed   time.Time
	completions int
}

type runner struct {
	id         int64
	name       string
	target     string
	labels     []string
	jit        string // one-time credential, consumed by connect
	session    string
	registered bool
	connected  bool
	finished   bool // exited, died or went offline; never alive again
	busy       bool
	job        *job
	lastSeen   time.Time
}

func (r *runner) alive() bool { return r.connected && !r.finished }

// NewServer assembles a simulated forge. It does no I/O and starts nothing:
// background goroutines start with the first webhook or runner.
func NewServer(opt Options) *Server {
	s := &Server{
		log:       opt.Logger,
		hbTime:    opt.HeartbeatTimeout,
		rng:       rand.New(rand.NewPCG(uint64(opt.Seed), 0x636f7272616c)),
		faults:    opt.Faults,
		targets:   map[string]*target{},
		jobs:      map[int64]*job{},
		runners:   map[int64]*runner{},
		byJIT:     map[string]*runner{},
		bySession: map[string]*runner{},
		repoIDs:   map[string]int64{},
		calls:     map[string]int{},
		nextJob:   5_000_000_000, // above 2^31, like GitHub's
		nextRun:   3_000_000_000,
		changed:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "forge-sim")
	if s.hbTime <= 0 {
		s.hbTime = 5 * time.Second
	}
	hc := opt.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	s.out = newSender(hc, s.log, s.done)
	s.handler = s.routes()
	return s
}

// ServeHTTP serves the forge's API and runner endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// AddTarget declares a target (a repo or org) with the URL its workflow_job
// webhooks go to (empty: no webhooks) and their secret. Calling it again
// updates the URL and secret.
func (s *Server) AddTarget(id, webhookURL string, secret corral.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targetLocked(id)
	t.hookURL, t.secret = webhookURL, secret
}

func (s *Server) targetLocked(id string) *target {
	t := s.targets[id]
	if t == nil {
		t = &target{id: id, byName: map[string]*runner{}}
		s.targets[id] = t
	}
	return t
}

// SetFaults replaces the fault rates.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// QueueJob queues a job on target and sends its queued webhook. An unknown
// target is created without a webhook URL.
func (s *Server) QueueJob(targetID string, spec JobSpec) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.targets[targetID]; !ok {
		s.log.Warn("job queued on an unknown target; it gets no webhooks", "target", targetID)
	}
	s.targetLocked(targetID)
	repo := spec.Repo
	if repo == "" {
		repo = "sim/" + targetID
		if strings.Contains(targetID, "/") {
			repo = targetID
		}
	}
	s.nextJob++
	s.nextRun++
	j := &job{
		id: s.nextJob, runID: s.nextRun, target: targetID, repo: repo, name: spec.Name,
		labels: append([]string(nil), spec.Labels...), duration: spec.Duration,
		state: StateQueued, created: time.Now().UTC(),
	}
	if j.name == "" {
		j.name = "build"
	}
	s.jobs[j.id] = j
	s.emitLocked(corral.ActionQueued, j)
	s.notifyLocked()
	return j.id
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Calls:        make(map[string]int, len(s.calls)),
		PeakRunners:  s.peak,
		AliveRunners: s.alive,
		Completions:  map[int64]int{},
	}
	for k, v := range s.calls {
		st.Calls[k] = v
	}
	for _, t := range s.targets {
		st.Registered += len(t.byName)
	}
	for id, j := range s.jobs {
		switch j.state {
		case StateQueued:
			st.JobsQueued++
		case StateInProgress:
			st.JobsRunning++
		case StateCompleted:
			st.JobsCompleted++
		}
		if j.completions > 0 {
			st.Completions[id] = j.completions
		}
	}
	st.Webhooks = s.out.stats()
	st.Webhooks.Dropped, st.Webhooks.Duplicated, st.Webhooks.Reordered = s.dropped, s.dupes, s.reordered
	return st
}

// Jobs lists every job, oldest first.
func (s *Server) Jobs() []JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JobInfo, 0, len(s.jobs))
	for _, j := range s.sortedJobsLocked() {
		ji := JobInfo{
			ID: j.id, RunID: j.runID, Target: j.target, Repo: j.repo, Name: j.name,
			Labels: append([]string(nil), j.labels...), State: j.state, Conclusion: j.conclusion,
			Completions: j.completions,
			QueuedAt:    j.created, StartedAt: j.started, CompletedAt: j.completed,
		}
		if j.runner != nil {
			ji.RunnerName = j.runner.name
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

// Runners lists the current registrations of a target, by id.
func (s *Server) Runners(targetID string) []corral.Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []corral.Runner
	for _, r := range s.registeredLocked(targetID) {
		out = append(out, corral.Runner{
			ID: r.id, Name: r.name, Online: r.alive(), Busy: r.busy,
			Labels: append([]string(nil), r.labels...),
		})
	}
	return out
}

func (s *Server) registeredLocked(targetID string) []*runner {
	t := s.targets[targetID]
	if t == nil {
		return nil
	}
	rs := make([]*runner, 0, len(t.byName))
	for _, r := range t.byName {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(a, b int) bool { return rs[a].id < rs[b].id })
	return rs
}

// Close stops the webhook senders and the heartbeat checker, wakes pending
// long polls and waits for the goroutines. Webhooks not yet sent are
// discarded.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done)
		s.notifyLocked()
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// start launches the background goroutines once; call with s.mu held.
func (s *Server) startLocked() {
	if s.closed {
		return
	}
	s.startOnce.Do(func() {
		s.out.start(&s.wg)
		s.wg.Add(1)
		go s.checkHeartbeats()
	})
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// checkHeartbeats declares silent runners dead (busy) or offline (idle).
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
				s.log.Info("busy runner silent; declared dead", "runner", r.name, "job", r.job.id)
				s.completeLocked(r.job, "failure")
				// Like GitHub, the lost runner's registration stays
				// (offline); corral's runner sweep must remove it.
				s.finishLocked(r)
				changed = true
			case !r.busy && silent > s.hbTime+maxPoll:
				s.log.Info("idle runner stopped polling; offline", "runner", r.name)
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

// completeLocked finishes a running job and sends its completed webhook.
func (s *Server) completeLocked(j *job, conclusion string) {
	j.state, j.conclusion = StateCompleted, conclusion
	j.completed = time.Now().UTC()
	j.completions++
	s.emitLocked(corral.ActionCompleted, j)
}

// removeLocked drops a registration.
func (s *Server) removeLocked(r *runner) {
	if !r.registered {
		return
	}
	r.registered = false
	if t := s.targets[r.target]; t != nil && t.byName[r.name] == r {
		delete(t.byName, r.name)
	}
	delete(s.byJIT, r.jit)
	s.notifyLocked()
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
