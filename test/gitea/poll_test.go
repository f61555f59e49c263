package gitea

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// apiCounter is a reverse proxy in front of Gitea, on 127.0.0.1, that
// counts the REST calls (/api/v1/…) corral sends, by method and path.
type apiCounter struct {
	URL   string
	n     atomic.Int64
	mu    sync.Mutex
	paths map[string]int
}

func newAPICounter(t testing.TB, to string) *apiCounter {
	t.Helper()
	u, err := url.Parse(to)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &apiCounter{URL: "http://" + ln.Addr().String(), paths: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/v1/") {
			c.n.Add(1)
			c.mu.Lock()
			c.paths[r.Method+" "+r.URL.Path]++
			c.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return c
}

func (c *apiCounter) calls() int64 { return c.n.Load() }

func (c *apiCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, v := range c.paths {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// TestGitea_PollMode: Gitea has no webhook for the repository at all and
// the target is in mode poll; the reconciler's sweep runs once a minute
// only, so the jobs are found by the poller. Six jobs over two pools all
// succeed, each on its own runner of corral's, each recorded "via poll";
// nothing is left behind.
func TestGitea_PollMode(t *testing.T) {
	needGitea(t)
	api := newAPICounter(t, shared.URL)
	r := newRigWith(t, rigOptions{Poll: true, PollInterval: "1s", Reconcile: "60s", APIVia: api.URL})
	if hooks, err := r.g.hooks(r.repo); err != nil || len(hooks) != 0 {
		t.Fatalf("the repository has webhooks %v (err %v); want none", hooks, err)
	}
	p := r.start(t)
	var jobs [][]string
	for i := 0; i < 6; i++ {
		if i%2 == 0 {
			jobs = append(jobs, []string{"self-hosted", "corral-a"})
		} else {
			jobs = append(jobs, []string{"self-hosted", "corral-b", "2cpu4gb"})
		}
	}
	before := api.calls()
	r.push(t, "poll", jobs)
	var js []job
	waitFor(t, 3*time.Minute, "6 jobs completed at Gitea", func() bool {
		js = r.giteaJobs(t)
		done := 0
		for _, j := range js {
			if j.Status == "completed" {
				done++
			}
		}
		return len(js) == 6 && done == 6
	})
	runners := map[string]bool{}
	for _, j := range js {
		if j.Conclusion != "success" {
			t.Errorf("job %d (%s) concluded %q, want success", j.ID, j.Name, j.Conclusion)
		}
		if !strings.HasPrefix(j.RunnerName, "corral-"+r.id) {
			t.Errorf("job %d ran on %q, not a runner of corral's", j.ID, j.RunnerName)
		}
		if runners[j.RunnerName] {
			t.Errorf("runner %s ran two jobs", j.RunnerName)
		}
		runners[j.RunnerName] = true
	}
	r.checkClean(t)
	waitFor(t, 30*time.Second, "corral to record every job completed, each found by the poller", func() bool {
		done, viaPoll := 0, 0
		for _, j := range r.corralJobs(t) {
			if j.State == string(corral.JobCompleted) {
				done++
			}
			var one corralJob
			r.api(t, fmt.Sprint("/jobs/", j.ID), &one)
			for _, e := range one.Timeline {
				if e.Kind == string(corral.EvQueued) && e.Detail == "via poll" {
					viaPoll++
				}
			}
		}
		return done == 6 && viaPoll == 6
	})
	type targetView struct {
		ID   string `json:"id"`
		Mode string `json:"mode"`
		Poll *struct {
			Polls, Handed, Finished int64
			Failures                int
		} `json:"poll"`
	}
	var tv struct {
		Targets []targetView `json:"targets"`
	}
	waitFor(t, 10*time.Second, "GET /api/v1/targets: mode poll, 6 jobs handed and finished, no failures", func() bool {
		r.api(t, "/targets", &tv)
		if len(tv.Targets) != 1 || tv.Targets[0].Mode != "poll" || tv.Targets[0].Poll == nil {
			return false
		}
		pv := tv.Targets[0].Poll
		return pv.Handed == 6 && pv.Finished == 6 && pv.Polls >= 6 && pv.Failures == 0
	})
	t.Logf("target: %+v", *tv.Targets[0].Poll)
	during := api.calls() - before
	t.Logf("Gitea REST calls by corral while the 6 jobs ran: %d (%.1f per job); all calls: %s", during, float64(during)/6, api)
	p.Stop(t)
}

// TestGitea_WebhookPlusPollBackstop: mode webhook+poll, and Gitea's
// webhook posts to an address where nothing listens, so every delivery is
// lost; the sweep runs once a minute only. The poller serves the jobs:
// three jobs succeed, each on its own runner, each recorded "via poll".
func TestGitea_WebhookPlusPollBackstop(t *testing.T) {
	dead, err := freePort() // closed again at once: deliveries are refused
	if err != nil {
		t.Fatal(err)
	}
	r := newRigWith(t, rigOptions{Both: true, PollInterval: "1s", Reconcile: "60s", HookTo: "http://" + dead})
	if hooks, err := r.g.hooks(r.repo); err != nil || len(hooks) != 1 || !strings.Contains(hooks[0], dead) {
		t.Fatalf("webhooks %v (err %v); want one to the dead address %s", hooks, err, dead)
	}
	p := r.start(t)
	r.push(t, "both", [][]string{{"self-hosted", "corral-a"}, {"self-hosted", "corral-a"}, {"self-hosted", "corral-b"}})
	var js []job
	waitFor(t, 3*time.Minute, "3 jobs completed at Gitea", func() bool {
		js = r.giteaJobs(t)
		done := 0
		for _, j := range js {
			if j.Status == "completed" {
				done++
			}
		}
		return len(js) == 3 && done == 3
	})
	runners := map[string]bool{}
	for _, j := range js {
		if j.Conclusion != "success" || !strings.HasPrefix(j.RunnerName, "corral-"+r.id) || runners[j.RunnerName] {
			t.Errorf("job %d: conclusion %q on runner %q (each job wants its own runner of corral's)", j.ID, j.Conclusion, j.RunnerName)
		}
		runners[j.RunnerName] = true
	}
	waitFor(t, 30*time.Second, "corral to record the 3 jobs, found by the poller", func() bool {
		viaPoll := 0
		for _, j := range r.corralJobs(t) {
			var one corralJob
			r.api(t, fmt.Sprint("/jobs/", j.ID), &one)
			for _, e := range one.Timeline {
				if e.Kind == string(corral.EvQueued) && e.Detail == "via poll" {
					viaPoll++
				}
			}
		}
		return viaPoll == 3
	})
	r.checkClean(t)
	p.Stop(t)
}

// TestGitea_PollModeSeesRunning: in mode poll (no webhook, sweep once a
// minute) corral learns that a job started from the poll alone, while the
// job still runs: its job shows running and its instance busy.
func TestGitea_PollModeSeesRunning(t *testing.T) {
	r := newRigWith(t, rigOptions{Poll: true, PollInterval: "1s", Reconcile: "60s"})
	p := r.start(t)
	wf := "name: slow\non:\n  push:\n    paths: ['.gitea/workflows/slow.yml']\njobs:\n" +
		"  slow:\n    runs-on: [self-hosted, corral-a]\n    steps:\n      - run: sleep 12\n"
	if err := r.g.pushWorkflow(r.repo, "slow.yml", wf); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "the job running at Gitea", func() bool {
		js := r.giteaJobs(t)
		return len(js) == 1 && js[0].Status == "in_progress"
	})
	waitFor(t, 8*time.Second, "corral to show the job running, learnt by the poller", func() bool {
		js := r.corralJobs(t)
		return len(js) == 1 && js[0].State == string(corral.JobRunning)
	})
	if js := r.giteaJobs(t); js[0].Status != "in_progress" {
		t.Fatalf("Gitea's job is %s: corral learnt too late to show it learnt while running", js[0].Status)
	}
	var ins struct {
		Instances []struct {
			State string `json:"state"`
		} `json:"instances"`
	}
	r.api(t, "/instances", &ins)
	if len(ins.Instances) != 1 || ins.Instances[0].State != string(corral.InstBusy) {
		t.Errorf("instances %+v while the job runs; want one busy", ins.Instances)
	}
	waitFor(t, 60*time.Second, "the job completed at Gitea and in corral", func() bool {
		js := r.corralJobs(t)
		return len(js) == 1 && js[0].State == string(corral.JobCompleted)
	})
	r.checkClean(t)
	p.Stop(t)
}
