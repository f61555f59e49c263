package sim

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
)

const (
	senderWorkers = 4
	// holdMax bounds how long a reordered webhook waits for a later one.
	holdMax = 500 * time.Millisecond
)

// GitHub-shaped workflow_job payload (see the fixtures in
// internal/forge/github/testdata).
type hookPayload struct {
	Action      string     `json:"action"`
	WorkflowJob jobObject  `json:"workflow_job"`
	Repository  repoObject `json:"repository"`
	Sender      userObject `json:"sender"`
}

type jobObject struct {
	ID              int64    `json:"id"`
	RunID           int64    `json:"run_id"`
	RunURL          string   `json:"run_url"`
	RunAttempt      int      `json:"run_attempt"`
	HeadBranch      string   `json:"head_branch"`
	HTMLURL         string   `json:"html_url"`
	Status          string   `json:"status"`
	Conclusion      *string  `json:"conclusion"`
	CreatedAt       string   `json:"created_at"`
	StartedAt       *string  `json:"started_at"`
	CompletedAt     *string  `json:"completed_at"`
	Name            string   `json:"name"`
	Labels          []string `json:"labels"`
	RunnerID        *int64   `json:"runner_id"`
	RunnerName      *string  `json:"runner_name"`
	RunnerGroupID   *int64   `json:"runner_group_id"`
	RunnerGroupName *string  `json:"runner_group_name"`
	WorkflowName    string   `json:"workflow_name"`
}

type repoObject struct {
	ID       int64      `json:"id"`
	Name     string     `json:"name"`
	FullName string     `json:"full_name"`
	Private  bool       `json:"private"`
	Owner    userObject `json:"owner"`
	HTMLURL  string     `json:"html_url"`
}

type userObject struct {
	Login string `json:"login"`
	ID    int64  `json:"id"`
	Type  string `json:"type"`
}

func stamp(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

// jobObjectLocked renders a job the way GitHub's payloads and REST answers
// show it.
func (s *Server) jobObjectLocked(j *job) jobObject {
	o := jobObject{
		ID: j.id, RunID: j.runID, RunAttempt: 1, HeadBranch: "main",
		RunURL:       fmt.Sprintf("https://sim.invalid/api/v3/repos/%s/actions/runs/%d", j.repo, j.runID),
		HTMLURL:      fmt.Sprintf("https://sim.invalid/%s/actions/runs/%d/job/%d", j.repo, j.runID, j.id),
		Status:       j.state,
		CreatedAt:    *stamp(j.created),
		StartedAt:    stamp(j.started),
		CompletedAt:  stamp(j.completed),
		Name:         j.name,
		Labels:       append([]string{}, j.labels...),
		WorkflowName: "sim",
	}
	if o.StartedAt == nil {
		o.StartedAt = stamp(j.created) // GitHub sets started_at = created_at while queued
	}
	if j.conclusion != "" {
		c := j.conclusion
		o.Conclusion = &c
	}
	if j.runner != nil {
		id, name, gid, gname := j.runner.id, j.runner.name, int64(1), "Default"
		o.RunnerID, o.RunnerName, o.RunnerGroupID, o.RunnerGroupName = &id, &name, &gid, &gname
	}
	return o
}

func (s *Server) repoObjectLocked(full string) repoObject {
	id, ok := s.repoIDs[full]
	if !ok {
		id = int64(len(s.repoIDs) + 1000)
		s.repoIDs[full] = id
	}
	owner, name, found := strings.Cut(full, "/")
	if !found {
		owner, name = "sim", full
	}
	return repoObject{
		ID: id, Name: name, FullName: full,
		Owner:   userObject{Login: owner, ID: 1, Type: "Organization"},
		HTMLURL: "https://sim.invalid/" + full,
	}
}

// emitLocked builds the workflow_job webhook for j and hands it to the
// sender, applying the drop, duplicate, delay and reorder faults.
func (s *Server) emitLocked(action corral.JobAction, j *job) {
	t := s.targets[j.target]
	if t == nil || t.hookURL == "" || s.closed {
		return
	}
	body, err := json.Marshal(hookPayload{
		Action:      string(action),
		WorkflowJob: s.jobObjectLocked(j),
		Repository:  s.repoObjectLocked(j.repo),
		Sender:      userObject{Login: "sim-user", ID: 2, Type: "User"},
	})
	if err != nil {
		s.log.Error("marshal webhook", "err", err)
		return
	}
	s.startLocked()
	f := s.faults
	if s.rng.Float64() < f.DropRate {
		s.dropped++
		s.log.Debug("webhook dropped (fault)", "action", action, "job", j.id)
		return
	}
	d := &delivery{
		url: t.hookURL, secret: t.secret, event: "workflow_job", body: body,
		id: s.guidLocked(), action: string(action), job: j.id,
	}
	now := time.Now()
	d.due = now.Add(s.delayLocked())
	hold := s.rng.Float64() < f.ReorderRate
	copies := []*delivery{d}
	if s.rng.Float64() < f.DuplicateRate {
		s.dupes++
		dup := *d
		dup.due = now.Add(s.delayLocked())
		copies = append(copies, &dup)
	}
	if s.out.push(copies, hold) {
		s.reordered++
	}
}

func (s *Server) delayLocked() time.Duration {
	f := s.faults
	if f.MaxDelay <= f.MinDelay {
		return max(f.MinDelay, 0)
	}
	return f.MinDelay + time.Duration(s.rng.Int64N(int64(f.MaxDelay-f.MinDelay)+1))
}

// guidLocked returns a GUID-shaped delivery id from the seeded source.
func (s *Server) guidLocked() string {
	a, b := s.rng.Uint64(), s.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

// delivery is one HTTP attempt to send.
type delivery struct {
	url    string
	secret corral.Secret
	event  string
	id     string
	action string
	job    int64
	body   []byte
	due    time.Time
	seq    int64
	index  int
	sent   chan struct{} // closed once this attempt is over
	after  *delivery     // a reordered delivery waits for this one
}

// sender sends deliveries when they are due, with a bounded worker pool.
type sender struct {
	hc   *http.Client
	log  *slog.Logger
	done <-chan struct{}
	work chan *delivery
	wake chan struct{}

	mu      sync.Mutex
	q       deliveryHeap
	held    *delivery
	seq     int64
	pending int
	sent    int
	failed  int
}

func newSender(hc *http.Client, log *slog.Logger, done <-chan struct{}) *sender {
	return &sender{hc: hc, log: log, done: done, work: make(chan *delivery), wake: make(chan struct{}, 1)}
}

func (q *sender) start(wg *sync.WaitGroup) {
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(2 + senderWorkers)
	go func() {
		defer wg.Done()
		<-q.done
		cancel() // aborts deliveries in flight
	}()
	go func() { defer wg.Done(); q.dispatch() }()
	for range senderWorkers {
		go func() { defer wg.Done(); q.worker(ctx) }()
	}
}

// push queues ds (one delivery and maybe its duplicate). With hold, and
// when nothing is held yet, the first is held back: it is sent only after
// the next pushed delivery has been sent (or after holdMax without one). It
// reports whether it held one back.
func (q *sender) push(ds []*delivery, hold bool) (held bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, d := range ds {
		q.seq++
		d.seq = q.seq
		d.sent = make(chan struct{})
		q.pending++
		if i == 0 {
			if hold && q.held == nil {
				d.due = d.due.Add(holdMax)
				q.held, held = d, true
			} else {
				q.releaseHeldLocked(d)
			}
		}
		heap.Push(&q.q, d)
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return held
}

// releaseHeldLocked schedules the held delivery to go right after d, and
// makes it wait until d's attempt is over.
func (q *sender) releaseHeldLocked(d *delivery) {
	h := q.held
	if h == nil {
		return
	}
	q.held = nil
	h.after = d
	h.seq = d.seq + 1
	h.due = d.due
	heap.Fix(&q.q, h.index)
}

func (q *sender) stats() WebhookStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return WebhookStats{Sent: q.sent, Failed: q.failed, Pending: q.pending}
}

func (q *sender) dispatch() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		var next *delivery
		wait := time.Hour
		if len(q.q) > 0 {
			if d := time.Until(q.q[0].due); d <= 0 {
				next = heap.Pop(&q.q).(*delivery)
				if next == q.held {
					q.held = nil
				}
			} else {
				wait = d
			}
		}
		q.mu.Unlock()
		if next != nil {
			select {
			case q.work <- next:
			case <-q.done:
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-q.wake:
		case <-timer.C:
		case <-q.done:
			return
		}
	}
}

func (q *sender) worker(ctx context.Context) {
	for {
		select {
		case d := <-q.work:
			if d.after != nil {
				select {
				case <-d.after.sent:
				case <-q.done:
					return
				}
			}
			err := q.send(ctx, d)
			close(d.sent)
			q.mu.Lock()
			q.pending--
			if err != nil {
				q.failed++
			} else {
				q.sent++
			}
			q.mu.Unlock()
			if err != nil {
				// GitHub does not redeliver on its own.
				q.log.Info("webhook delivery failed; not retried", "delivery", d.id, "action", d.action, "job", d.job, "err", err)
			}
		case <-q.done:
			return
		}
	}
}

func (q *sender) send(ctx context.Context, d *delivery) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/corral-sim")
	req.Header.Set(github.HeaderEvent, d.event)
	req.Header.Set(github.HeaderDelivery, d.id)
	req.Header.Set("X-GitHub-Hook-ID", "1")
	req.Header.Set(github.HeaderSignature, github.Sign(d.secret, d.body))
	resp, err := q.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// deliveryHeap orders deliveries by due time, then sequence.
type deliveryHeap []*delivery

func (h deliveryHeap) Len() int { return len(h) }
func (h deliveryHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h deliveryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *deliveryHeap) Push(x any) {
	d := x.(*delivery)
	d.index = len(*h)
	*h = append(*h, d)
}
func (h *deliveryHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	d.index = -1
	return d
}
