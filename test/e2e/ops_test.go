package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// post sends POST url with the admin token and wants 200.
func post(t *testing.T, url string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, nil)
	resp, err := http.DefaultClient.Do(e2etest.Authorize(req))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}

type apiPool struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Instances int    `json:"live"`
}

func pools(t *testing.T, api string) map[string]apiPool {
	var out struct {
		Pools []apiPool `json:"pools"`
	}
	getJSON(t, api+"/pools", &out)
	m := map[string]apiPool{}
	for _, p := range out.Pools {
		m[p.ID] = p
	}
	return m
}

// TestDrainPool: a drained pool loses its idle warm runner and gets no new
// instance for its jobs, while another pool goes on serving its own; once
// resumed, the waiting jobs run; a runner stopped through the API is
// deleted.
func TestDrainPool(t *testing.T) {
	r := newRig(t, standin.Options{Seed: 37}, setup{PoolMax: 2, MinIdle: 1})
	spare := r.cfg.Pools[0]
	spare.ID, spare.Labels, spare.MinIdle = "spare", []string{"spare"}, 0
	r.cfg.Pools = append(r.cfg.Pools, spare)
	r.start(t)
	api := "http://" + r.listen + "/api/v1"
	waitFor(t, 60*time.Second, "pool linux keeps its warm runner", func() bool { return pools(t, api)["linux"].Instances == 1 })

	post(t, api+"/pools/linux/drain")
	waitFor(t, 60*time.Second, "the drained pool's idle runner is removed", func() bool { return pools(t, api)["linux"].Instances == 0 })
	for i := 0; i < 2; i++ {
		r.queue(i, simJob(i), 100*time.Millisecond)
		r.queue(10+i, []string{"spare", fmt.Sprint("run-", 10+i)}, 100*time.Millisecond)
	}
	waitFor(t, 90*time.Second, "the other pool ran its jobs", func() bool { return r.Count(standin.StatusCompleted) == 2 })
	// Give the drained pool several passes to get it wrong.
	time.Sleep(3 * time.Second)
	if p := pools(t, api)["linux"]; p.State != "draining" || p.Instances != 0 {
		t.Fatalf("drained pool: %+v", p)
	}
	var list struct {
		Jobs []struct {
			ID     int64  `json:"id"`
			State  string `json:"state"`
			Pool   string `json:"pool"`
			Reason string `json:"reason"`
			Labels []string
		} `json:"jobs"`
	}
	getJSON(t, api+"/jobs", &list)
	if len(list.Jobs) != 4 {
		t.Fatalf("corral holds %d jobs, want 4", len(list.Jobs))
	}
	for _, j := range list.Jobs {
		isSpare := strings.Contains(fmt.Sprint(j.Labels), "spare")
		switch {
		case isSpare && (j.State != "completed" || j.Pool != "spare"):
			t.Errorf("job %d of pool spare: %s in %q", j.ID, j.State, j.Pool)
		case !isSpare && (j.State != "routed" || !strings.Contains(j.Reason, "pool linux is draining")):
			t.Errorf("job %d of the drained pool: %s, reason %q", j.ID, j.State, j.Reason)
		case !isSpare:
			for _, k := range timeline(t, fmt.Sprint(api, "/jobs/", j.ID)) {
				if k == "instance_requested" {
					t.Errorf("job %d of the drained pool got an instance", j.ID)
				}
			}
		}
	}

	post(t, api+"/pools/linux/resume")
	waitFor(t, 90*time.Second, "the resumed pool ran its jobs", func() bool { return r.Count(standin.StatusCompleted) == 4 })
	// Stop the resumed pool's warm runner through the API: the leader
	// deletes it (registration and process), and min idle brings another.
	var ins struct {
		Instances []struct {
			ID    string `json:"id"`
			Pool  string `json:"pool"`
			State string `json:"state"`
		} `json:"instances"`
	}
	waitFor(t, 60*time.Second, "pool linux has an idle warm runner again", func() bool {
		getJSON(t, api+"/instances?state=idle", &ins)
		return len(ins.Instances) == 1 && ins.Instances[0].Pool == "linux"
	})
	stopped := ins.Instances[0].ID
	post(t, api+"/instances/"+stopped+"/stop")
	waitFor(t, 60*time.Second, "the stopped instance is deleted and replaced", func() bool {
		getJSON(t, api+"/instances", &ins)
		for _, in := range ins.Instances {
			if in.ID == stopped {
				return false
			}
		}
		return len(ins.Instances) == 1
	})
	post(t, api+"/pools/linux/drain") // its warm runner goes, for the clean end
	r.checkClean(t, 4)
}

// patchPool sends PATCH url with body as the admin and wants 200.
func patchPool(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest("PATCH", url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(e2etest.Authorize(req))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PATCH %s %s: %s", url, body, resp.Status)
	}
}

// TestPatchPool: a pool changed through the API serves the next job with
// the new settings, while corral runs. At max_instances 1 a second job
// waits behind a long one; raised to 2, it runs beside it. With a label
// added, a job that carries it is served by the pool.
func TestPatchPool(t *testing.T) {
	r := newRig(t, standin.Options{Seed: 41}, setup{PoolMax: 1})
	r.start(t)
	api := "http://" + r.listen + "/api/v1"
	r.queue(0, simJob(0), 25*time.Second)
	waitFor(t, 60*time.Second, "the long job runs", func() bool { return r.Count(standin.StatusInProgress) == 1 })
	r.queue(1, simJob(1), 100*time.Millisecond)
	time.Sleep(3 * time.Second) // several passes: the pool is full
	if n := r.Count(standin.StatusQueued); n != 1 || pools(t, api)["linux"].Instances != 1 {
		t.Fatalf("at max_instances 1: %d jobs queued, pool %+v", n, pools(t, api)["linux"])
	}
	patchPool(t, api+"/pools/linux", `{"max_instances": 2}`)
	waitFor(t, 20*time.Second, "the second job ran beside the long one", func() bool {
		return r.Count(standin.StatusCompleted) == 1 && r.Count(standin.StatusInProgress) == 1
	})
	patchPool(t, api+"/pools/linux", `{"labels": ["corral", "patched"]}`)
	r.queue(2, []string{"corral", "patched", "run-2"}, 100*time.Millisecond)
	waitFor(t, 60*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == 3 })
	var list struct {
		Jobs []struct {
			State string `json:"state"`
			Pool  string `json:"pool"`
		} `json:"jobs"`
	}
	// The stand-in completes a job before corral has ingested its
	// completed webhook: wait for the ledger too.
	waitFor(t, 30*time.Second, "every ledger job completed", func() bool {
		getJSON(t, api+"/jobs", &list)
		done := 0
		for _, j := range list.Jobs {
			if j.State == "completed" {
				done++
			}
		}
		return len(list.Jobs) == 3 && done == 3
	})
	for _, j := range list.Jobs {
		if j.State != "completed" || j.Pool != "linux" {
			t.Errorf("job %+v", j)
		}
	}
	r.checkClean(t, 3)
}
