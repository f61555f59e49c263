package e2e

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// TestUsageMatchesWorkload runs a real workload (corral serve, the
// stand-in GitHub, real runner processes), then sums each job's runner
// time from its own timeline (GET /api/v1/jobs/{id}: first job_started
// to first job_completed stamp) and checks that the usage report, as JSON
// and as CSV, gives exactly those totals and job counts.
func TestUsageMatchesWorkload(t *testing.T) {
	r := newRig(t, standin.Options{Seed: 31}, setup{PoolMax: 2})
	r.start(t)
	const jobs = 4
	for i := 0; i < jobs; i++ {
		r.queue(i, simJob(i), time.Duration(100+150*i)*time.Millisecond)
	}
	waitFor(t, 90*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	api := "http://" + r.listen + "/api/v1"
	waitFor(t, 30*time.Second, "corral recorded every completion", func() bool { return countJobs(t, api+"/jobs", "completed") == jobs })

	var total time.Duration
	for _, id := range jobIDs(t, api+"/jobs") {
		var j struct {
			Pool     string `json:"pool"`
			Timeline []struct {
				At   time.Time `json:"at"`
				Kind string    `json:"kind"`
			} `json:"timeline"`
		}
		getJSON(t, fmt.Sprint(api, "/jobs/", id), &j)
		var started, completed time.Time
		for _, e := range j.Timeline {
			if e.Kind == "job_started" && started.IsZero() {
				started = e.At
			}
			if e.Kind == "job_completed" && completed.IsZero() {
				completed = e.At
			}
		}
		if j.Pool != "linux" || started.IsZero() || !completed.After(started) {
			t.Fatalf("job %d: pool %q, started %v, completed %v", id, j.Pool, started, completed)
		}
		total += completed.Sub(started)
	}
	if total < 100*time.Millisecond*jobs {
		t.Fatalf("summed runner time %v is below the jobs' own run times", total)
	}

	var rep struct {
		Rows []struct {
			Key           string  `json:"key"`
			CPU           int     `json:"cpu"`
			MemoryMB      int     `json:"memory_mb"`
			Jobs          int     `json:"jobs"`
			RunnerSeconds float64 `json:"runner_seconds"`
		} `json:"rows"`
	}
	getJSON(t, api+"/usage?group_by=pool", &rep)
	if len(rep.Rows) != 1 {
		t.Fatalf("usage rows %+v, want one for pool linux", rep.Rows)
	}
	row := rep.Rows[0]
	if row.Key != "linux" || row.Jobs != jobs || row.RunnerSeconds != total.Seconds() || row.CPU != 2 || row.MemoryMB != 4096 {
		t.Fatalf("usage %+v, want pool linux (2 cpu, 4096 MiB), %d jobs, %v s", row, jobs, total.Seconds())
	}

	resp, err := e2etest.APIGet(api + "/usage?group_by=day&format=csv")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || resp.StatusCode != 200 || len(recs) < 3 {
		t.Fatalf("usage csv: %s %v\n%s", resp.Status, err, body)
	}
	last := recs[len(recs)-1]
	secs, _ := strconv.ParseFloat(last[4], 64)
	if last[0] != "total" || last[3] != strconv.Itoa(jobs) || secs != total.Seconds() {
		t.Fatalf("csv total %v, want %d jobs, %v s", last, jobs, total.Seconds())
	}
	t.Logf("%d jobs, %v of runner time from the timelines = usage JSON and CSV", jobs, total)
	r.checkClean(t, jobs)
}
