package e2e

import (
	"testing"

	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// getJSON: e2etest.GetJSON.
func getJSON(t *testing.T, url string, v any) { t.Helper(); e2etest.GetJSON(t, url, v) }

type apiJob struct {
	ID    int64  `json:"id"`
	State string `json:"state"`
}

func listJobs(t *testing.T, api string) []apiJob {
	var out struct {
		Jobs []apiJob `json:"jobs"`
	}
	getJSON(t, api, &out)
	return out.Jobs
}

func countJobs(t *testing.T, api, state string) int {
	n := 0
	for _, j := range listJobs(t, api) {
		if j.State == state {
			n++
		}
	}
	return n
}

func jobIDs(t *testing.T, api string) []int64 {
	var ids []int64
	for _, j := range listJobs(t, api) {
		ids = append(ids, j.ID)
	}
	return ids
}

func timeline(t *testing.T, url string) []string {
	var out struct {
		Timeline []struct {
			Kind string `json:"kind"`
		} `json:"timeline"`
	}
	getJSON(t, url, &out)
	var ks []string
	for _, e := range out.Timeline {
		ks = append(ks, e.Kind)
	}
	return ks
}
