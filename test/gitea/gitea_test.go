package gitea

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	giteaforge "github.com/corral-ci/corral/internal/forge/gitea"
)

// TestGitea_TenJobsTwoPools: ten jobs over two pools all succeed at Gitea,
// each on its own runner; afterwards Gitea lists no runner of corral's and
// no runner process is left.
func TestGitea_TenJobsTwoPools(t *testing.T) {
	r := newRig(t)
	p := r.start(t)
	var jobs [][]string
	for i := 0; i < 10; i++ {
		if i%2 == 0 {
			jobs = append(jobs, []string{"self-hosted", "corral-a"})
		} else {
			jobs = append(jobs, []string{"self-hosted", "corral-b", "2cpu4gb"})
		}
	}
	r.push(t, "ten", jobs)
	var js []job
	waitFor(t, 4*time.Minute, "10 jobs completed at Gitea", func() bool {
		js = r.giteaJobs(t)
		done := 0
		for _, j := range js {
			if j.Status == "completed" {
				done++
			}
		}
		return len(js) == 10 && done == 10
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
	pools := map[string]int{}
	waitFor(t, 30*time.Second, "corral to record every job completed", func() bool {
		done := 0
		pools = map[string]int{}
		for _, j := range r.corralJobs(t) {
			if j.State == string(corral.JobCompleted) {
				done++
			}
			var one corralJob
			r.api(t, fmt.Sprint("/jobs/", j.ID), &one)
			for _, e := range one.Timeline {
				if e.Kind == string(corral.EvRouted) {
					pools[e.Detail]++
				}
			}
		}
		return done == 10
	})
	t.Logf("routed: %v; runners: %d distinct", pools, len(runners))
	p.Stop(t)
	// One registration token for the whole run, and no secret in the log.
	var reg struct {
		Token string `json:"token"`
	}
	if err := r.g.call(http.MethodPost, "/repos/"+r.repo+"/actions/runners/registration-token", nil, &reg); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(log, []byte(`msg="registration token fetched"`)); n != 1 {
		t.Errorf("registration token fetched %d times for 10 jobs, want 1", n)
	}
	for name, sec := range map[string]string{"token": r.g.token, "registration token": reg.Token, "webhook secret": r.secret} {
		if sec == "" || bytes.Contains(log, []byte(sec)) {
			t.Errorf("corral's log shows the %s (or it is empty)", name)
		}
	}
}

// TestGitea_Sweep: a job queued while corral is down (its webhook fails)
// is found by the forge sweep once corral starts, and served.
func TestGitea_Sweep(t *testing.T) {
	r := newRig(t)
	// Until corral starts, its address refuses deliveries: a listener
	// that closes every connection at once. Gitea sends its webhooks
	// from a queue, sometimes seconds later; corral starts only once the
	// job's queued webhook has been tried and failed, so that the job can
	// come from the sweep alone.
	down, err := net.Listen("tcp", r.listen)
	if err != nil {
		t.Fatal(err)
	}
	tried := make(chan struct{}, 64)
	go func() {
		for {
			c, err := down.Accept()
			if err != nil {
				return
			}
			c.Close()
			tried <- struct{}{}
		}
	}()
	r.push(t, "missed", [][]string{{"self-hosted", "corral-a"}})
	waitFor(t, 30*time.Second, "the job queued at Gitea", func() bool {
		js := r.giteaJobs(t)
		return len(js) == 1 && js[0].Status == "queued"
	})
	// Gitea sends workflow_run and workflow_job deliveries: wait for the
	// first, then a moment for the rest of the queue.
	select {
	case <-tried:
	case <-time.After(60 * time.Second):
		t.Fatal("Gitea never tried to deliver a webhook")
	}
	time.Sleep(2 * time.Second)
	down.Close()
	p := r.start(t)
	waitFor(t, 2*time.Minute, "the missed job completed", func() bool {
		js := r.giteaJobs(t)
		return len(js) == 1 && js[0].Status == "completed"
	})
	if js := r.giteaJobs(t); js[0].Conclusion != "success" {
		t.Errorf("conclusion %q", js[0].Conclusion)
	}
	cj := r.corralJobs(t)
	if len(cj) != 1 {
		t.Fatalf("corral knows %d jobs, want 1", len(cj))
	}
	var one corralJob
	r.api(t, fmt.Sprint("/jobs/", cj[0].ID), &one)
	if len(one.Timeline) == 0 || one.Timeline[0].Kind != string(corral.EvQueued) || !strings.Contains(one.Timeline[0].Detail, "sweep") {
		t.Errorf("first stamp %+v, want queued via the sweep", one.Timeline)
	}
	r.checkClean(t)
	p.Stop(t)
}

// TestGitea_Refusals: a webhook with a wrong signature is refused with 401
// and records nothing; a job that no pool accepts is reported unroutable
// with its reason.
func TestGitea_Refusals(t *testing.T) {
	r := newRig(t)
	p := r.start(t)
	t.Run("wrong signature", func(t *testing.T) {
		body, err := os.ReadFile("../../internal/forge/gitea/testdata/gitea-1.27.3-webhooks.jsonl")
		if err != nil {
			t.Fatal(err)
		}
		var payload []byte
		for _, line := range bytes.Split(body, []byte("\n")) {
			if i := bytes.Index(line, []byte(`"payload": `)); i >= 0 && bytes.Contains(line, []byte(`"event": "workflow_job"`)) {
				payload = bytes.TrimSuffix(line[i+len(`"payload": `):], []byte("}"))
				break
			}
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+r.listen+"/webhooks/"+r.id, bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Gitea-Delivery", "bad-signature-1")
		req.Header.Set("X-Gitea-Event", "workflow_job")
		req.Header.Set("X-Gitea-Signature", giteaforge.Sign("not-the-secret", payload))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
		if js := r.corralJobs(t); len(js) != 0 {
			t.Fatalf("corral recorded %d jobs from a refused webhook", len(js))
		}
	})
	t.Run("unroutable", func(t *testing.T) {
		r.push(t, "nowhere", [][]string{{"self-hosted", "gpu-h100"}})
		var got corralJob
		waitFor(t, 30*time.Second, "the job reported unroutable", func() bool {
			for _, j := range r.corralJobs(t) {
				if j.State == string(corral.JobUnroutable) {
					got = j
					return true
				}
			}
			return false
		})
		if got.Reason == "" {
			t.Fatalf("unroutable job without a reason: %+v", got)
		}
		t.Logf("reason: %s", got.Reason)
		if rs, err := r.g.runners(r.repo); err != nil || len(rs) != 0 {
			t.Errorf("runners %v (%v) for an unroutable job", rs, err)
		}
	})
	p.Stop(t)
}
