package sim

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

const hookSecret = corral.Secret("sim-test-secret")

// receiver is corral's webhook endpoint as the tests see it: it verifies
// every delivery with the github.Parser and records it in arrival order.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	status int // answer; 0 = 202
	got    []corral.Delivery
	bad    []error
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d, err := Parser().ParseWebhook(r.Header, body, hookSecret)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if err != nil {
			rc.bad = append(rc.bad, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.got = append(rc.got, d)
		if rc.status != 0 {
			w.WriteHeader(rc.status)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) deliveries() []corral.Delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		rc.t.Errorf("receiver refused deliveries: %v", rc.bad)
	}
	return append([]corral.Delivery(nil), rc.got...)
}

// forJob returns the actions received for a job, in arrival order.
func (rc *receiver) forJob(id int64) []corral.JobEvent {
	var out []corral.JobEvent
	for _, d := range rc.deliveries() {
		if d.Job != nil && d.Job.ForgeJobID == id {
			out = append(out, *d.Job)
		}
	}
	return out
}

type fixture struct {
	sim    *Server
	http   *httptest.Server
	hooks  *receiver
	client *Client
}

// newFixture starts a simulated forge on 127.0.0.1 with target "t1" whose
// webhooks go to a verifying receiver, and a Client for it.
func newFixture(t *testing.T, opt Options) *fixture {
	t.Helper()
	f := &fixture{hooks: newReceiver(t)}
	f.sim = NewServer(opt)
	f.http = httptest.NewServer(f.sim)
	t.Cleanup(f.http.Close)
	t.Cleanup(f.sim.Close) // runs first: wakes long polls before the HTTP server waits
	f.sim.AddTarget("t1", f.hooks.srv.URL, hookSecret)
	f.client = f.newClient(t, corral.Target{ID: "t1", Kind: corral.KindSim, URL: f.http.URL, RunnerPrefix: "corral-"})
	return f
}

func (f *fixture) newClient(t *testing.T, tg corral.Target) *Client {
	t.Helper()
	c, err := NewClient(tg, f.http.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runnerProc is one RunRunner started in a goroutine.
type runnerProc struct {
	cancel context.CancelFunc
	done   chan error
	log    bytes.Buffer
}

// startRunner runs the bootstrap like a provider would: the command's
// environment is all it gets. The runner is stopped at the end of the test.
func startRunner(t *testing.T, b corral.Bootstrap) *runnerProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	p := &runnerProc{cancel: cancel, done: make(chan error, 1)}
	getenv := func(k string) string { return b.Env[k].Reveal() }
	go func() { p.done <- RunRunner(ctx, getenv, &p.log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Error("runner did not stop")
		}
	})
	return p
}

// wait returns the runner's result within d.
func (p *runnerProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // keep it for the cleanup
		return err
	case <-time.After(d):
		t.Fatalf("runner still running after %s", d)
		return nil
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) job(t *testing.T, id int64) JobInfo {
	t.Helper()
	for _, j := range f.sim.Jobs() {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("no job %d", id)
	return JobInfo{}
}

func (f *fixture) webhooksSettled() bool { return f.sim.Stats().Webhooks.Pending == 0 }
