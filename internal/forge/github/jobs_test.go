package github

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

func jobJSON(id, run int64, status string) map[string]any {
	j := map[string]any{"id": id, "run_id": run, "run_attempt": 1, "name": fmt.Sprint("job", id), "status": status,
		"labels": []string{"self-hosted", "linux"}, "created_at": "2026-11-25T09:00:00Z", "conclusion": nil,
		"runner_id": nil, "runner_name": nil}
	if status == "in_progress" {
		j["started_at"] = "2026-11-25T09:01:00Z"
		j["runner_id"], j["runner_name"] = 5, "corral-5"
	}
	if status == "completed" {
		j["conclusion"] = "success"
	}
	return j
}

// conditional serves body with an ETag and answers 304 when it matches.
func conditional(etag string, body func(r *http.Request) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == etag {
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		writeJSON(w, 200, body(r))
	}
}

// repoRuns serves runs (queued: 1, 2 on two pages; in_progress: 3) and
// their jobs for repo path p.
func repoRuns(e *testEnv, p string) {
	e.f.on("GET "+p+"/actions/runs", conditional(`"runs"`, func(r *http.Request) any {
		var runs []any
		switch r.URL.Query().Get("status") + "/" + r.URL.Query().Get("page") {
		case "queued/":
			runs = []any{map[string]any{"id": 1, "status": "queued"}}
		case "queued/2":
			runs = []any{map[string]any{"id": 2, "status": "queued"}}
		case "in_progress/":
			runs = []any{map[string]any{"id": 3, "status": "in_progress"}, map[string]any{"id": 1, "status": "queued"}}
		}
		return map[string]any{"total_count": len(runs), "workflow_runs": runs}
	}))
	// Page 2 of queued runs, linked from page 1 (only when no page param).
	inner := e.f.h["GET "+p+"/actions/runs"]
	e.f.on("GET "+p+"/actions/runs", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("status") == "queued" && r.URL.Query().Get("page") == "" {
			w.Header().Set("Link", "<"+e.f.srv.URL+p+`/actions/runs?status=queued&per_page=100&page=2>; rel="next"`)
		}
		inner(w, r)
	})
	jobs := map[int64][]any{
		1: {jobJSON(11, 1, "queued")},
		2: {jobJSON(21, 2, "waiting")},
		3: {jobJSON(31, 3, "in_progress"), jobJSON(32, 3, "completed"), jobJSON(33, 3, "queued")},
	}
	for run, js := range jobs {
		e.f.on(fmt.Sprintf("GET %s/actions/runs/%d/jobs", p, run), conditional(fmt.Sprintf(`"jobs%d"`, run), func(*http.Request) any {
			return map[string]any{"total_count": len(js), "jobs": js}
		}))
	}
}

func ids(evs []corral.JobEvent) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, ev.ForgeJobID)
	}
	slices.Sort(out)
	return out
}

func TestClient_OpenJobs(t *testing.T) {
	t.Run("repo: open jobs of open runs, pages, ETags", func(t *testing.T) {
		e := newEnv(t)
		repoRuns(e, "/repos/o/r")
		c := e.client(t, e.target(corral.ScopeRepo, "o/r"))
		evs, err := c.OpenJobs(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(evs); !slices.Equal(got, []int64{11, 21, 31, 33}) {
			t.Fatalf("jobs = %v", got)
		}
		for _, ev := range evs {
			if ev.Repo != "o/r" {
				t.Fatalf("repo = %q", ev.Repo)
			}
			switch ev.ForgeJobID {
			case 11:
				if ev.Action != corral.ActionQueued || ev.RunID != 1 || !slices.Equal(ev.Labels, []string{"self-hosted", "linux"}) || ev.At.IsZero() {
					t.Fatalf("job 11 = %+v", ev)
				}
			case 21:
				if ev.Action != corral.ActionWaiting {
					t.Fatalf("job 21 = %+v", ev)
				}
			case 31:
				if ev.Action != corral.ActionInProgress || ev.RunnerName != "corral-5" || ev.RunnerID != 5 || ev.At.Minute() != 1 {
					t.Fatalf("job 31 = %+v", ev)
				}
			}
		}
		calls := e.f.total()
		// Again: every GET is conditional and answered 304 from the cache.
		evs2, err := c.OpenJobs(ctxT(t))
		if err != nil || !slices.Equal(ids(evs2), ids(evs)) {
			t.Fatalf("second sweep = %v, %v", ids(evs2), err)
		}
		e.f.mu.Lock()
		for _, h := range e.f.hits[calls:] {
			if h.IfNoneMatch == "" {
				t.Errorf("unconditional GET %s?%s", h.Path, h.Query)
			}
		}
		e.f.mu.Unlock()
		if c.etags.len() == 0 {
			t.Fatal("nothing cached")
		}
	})

	t.Run("org: listed and observed repositories", func(t *testing.T) {
		e := newEnv(t)
		e.f.on("GET /orgs/o/repos", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, []any{
				map[string]any{"full_name": "o/a", "owner": map[string]any{"login": "o"}},
				map[string]any{"full_name": "o/old", "archived": true, "owner": map[string]any{"login": "o"}},
			})
		})
		repoRuns(e, "/repos/o/a")
		e.f.on("GET /repos/o/b/actions/runs", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"total_count": 0, "workflow_runs": []any{}})
		})
		c := e.client(t, e.target(corral.ScopeOrg, "o"))
		c.ObserveRepo("o/b")
		c.ObserveRepo("o/gone")
		c.ObserveRepo("elsewhere/x") // not this org's: ignored
		evs, err := c.OpenJobs(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(evs); !slices.Equal(got, []int64{11, 21, 31, 33}) {
			t.Fatalf("jobs = %v", got)
		}
		if e.f.count("GET /repos/o/old/actions/runs") != 0 || e.f.count("GET /repos/elsewhere/x/actions/runs") != 0 {
			t.Fatal("swept an archived or foreign repository")
		}
		if e.f.count("GET /repos/o/b/actions/runs") != 3 {
			t.Fatal("observed repository not swept")
		}
		// The repo list is reused within its TTL; o/gone (404) is dropped.
		if _, err := c.OpenJobs(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if n := e.f.count("GET /orgs/o/repos"); n != 1 {
			t.Fatalf("repo list fetched %d times", n)
		}
		if n := e.f.count("GET /repos/o/gone/actions/runs"); n != 1 {
			t.Fatalf("a missing repository was asked %d times", n)
		}
	})
}

func TestClient_Job(t *testing.T) {
	e := newEnv(t)
	e.f.on("GET /repos/o/r/actions/jobs/32", func(w http.ResponseWriter, r *http.Request) {
		j := jobJSON(32, 3, "completed")
		j["completed_at"] = "2026-11-25T09:05:00Z"
		writeJSON(w, 200, j)
	})
	c := e.client(t, e.target(corral.ScopeOrg, "o"))
	ev, err := c.Job(ctxT(t), 32, "o/r")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Action != corral.ActionCompleted || ev.Conclusion != "success" || ev.Repo != "o/r" || ev.At.Minute() != 5 {
		t.Fatalf("job = %+v", ev)
	}
	_, err = c.Job(ctxT(t), 99, "o/r")
	var ce *corral.CallError
	if !errors.Is(err, corral.ErrNotFound) || !errors.As(err, &ce) || ce.Status != 404 || ce.Op != "get-job" {
		t.Fatalf("missing job: %v", err)
	}
	if _, err := c.Job(ctxT(t), 1, ""); !errors.Is(err, corral.ErrBadInput) {
		t.Fatalf("org job without repo: %v", err)
	}
}
