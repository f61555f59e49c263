package gitea

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

const pat = "gitea-pat-never-shown-0123456789abcdef"

// fakeGitea answers the REST calls the Client makes, as Gitea 1.27 does,
// at one scope prefix.
type fakeGitea struct {
	t     *testing.T
	scope string // e.g. /api/v1/repos/o/r
	mu    sync.Mutex
	calls map[string]int // "METHOD op"
	token string
	jobs  []map[string]any
	runs  []map[string]any
	fail  int // status to answer everything with, 0: none
	msg   string
	// etag: the jobs listing carries an ETag and honours If-None-Match
	// (Gitea 1.27.3 does not; a caching proxy in front of it may).
	etag bool
}

func newFake(t *testing.T, scope string) (*fakeGitea, *httptest.Server) {
	f := &fakeGitea{t: t, scope: "/api/v1" + scope, calls: map[string]int{}, token: "reg-token-0123456789abcdefghijklmnopqrstuv"}
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	return f, ts
}

func (f *fakeGitea) count(k string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[k]
}

func (f *fakeGitea) addJob(id int64, status string, labels ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, map[string]any{
		"id": id, "run_id": id, "name": fmt.Sprint("job-", id), "labels": labels, "status": status, "run_attempt": 1,
		"url":        fmt.Sprintf("http://x/api/v1/repos/o/r/actions/jobs/%d", id),
		"run_url":    fmt.Sprintf("http://x/api/v1/repos/o/r/actions/runs/%d", id),
		"created_at": "2026-11-22T14:15:56Z", "started_at": "1970-01-01T00:00:00Z", "completed_at": "1970-01-01T00:00:00Z",
		"steps": []any{},
	})
}

func (f *fakeGitea) addRunner(id int64, name string, busy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs = append(f.runs, map[string]any{"id": id, "name": name, "status": "online", "busy": busy, "disabled": false,
		"ephemeral": true, "labels": []map[string]any{{"id": 0, "name": "corral", "type": "custom"}}})
}

func (f *fakeGitea) runnerNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.runs {
		out = append(out, r["name"].(string))
	}
	return out
}

func (f *fakeGitea) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.Header.Get("Authorization") != "token "+pat {
		reply(http.StatusUnauthorized, map[string]string{"message": "token is required"})
		return
	}
	if f.fail != 0 {
		reply(f.fail, map[string]string{"message": f.msg})
		return
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if page < 1 {
		page = 1
	}
	if limit < 1 || limit > 50 {
		limit = 30
	}
	window := func(n int) (int, int) {
		lo, hi := (page-1)*limit, page*limit
		lo, hi = min(lo, n), min(hi, n)
		return lo, hi
	}
	path := r.URL.Path
	switch {
	case r.Method == http.MethodPost && path == f.scope+"/actions/runners/registration-token":
		f.calls["POST registration-token"]++
		reply(http.StatusOK, map[string]string{"token": f.token})
	case r.Method == http.MethodGet && path == f.scope+"/actions/jobs":
		f.calls["GET jobs"]++
		want := map[string]bool{}
		for _, s := range r.URL.Query()["status"] {
			want[s] = true
		}
		var sel []map[string]any
		for _, j := range f.jobs {
			if want[j["status"].(string)] {
				sel = append(sel, j)
			}
		}
		lo, hi := window(len(sel))
		body := map[string]any{"jobs": sel[lo:hi], "total_count": len(sel)}
		if f.etag {
			b, _ := json.Marshal(body)
			tag := fmt.Sprintf(`"%x"`, sha256.Sum256(b))
			w.Header().Set("ETag", tag)
			if r.Header.Get("If-None-Match") == tag {
				f.calls["GET jobs 304"]++
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		reply(http.StatusOK, body)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/api/v1/repos/o/r/actions/jobs/"):
		f.calls["GET job"]++
		id, _ := strconv.ParseInt(strings.TrimPrefix(path, "/api/v1/repos/o/r/actions/jobs/"), 10, 64)
		for _, j := range f.jobs {
			if j["id"].(int64) == id {
				reply(http.StatusOK, j)
				return
			}
		}
		reply(http.StatusNotFound, map[string]string{"message": "job not found"})
	case r.Method == http.MethodGet && path == f.scope+"/actions/runners":
		f.calls["GET runners"]++
		lo, hi := window(len(f.runs))
		reply(http.StatusOK, map[string]any{"runners": f.runs[lo:hi], "total_count": len(f.runs)})
	case strings.HasPrefix(path, f.scope+"/actions/runners/"):
		id, _ := strconv.ParseInt(strings.TrimPrefix(path, f.scope+"/actions/runners/"), 10, 64)
		f.calls[r.Method+" runner"]++
		for i, rn := range f.runs {
			if rn["id"].(int64) != id {
				continue
			}
			if r.Method == http.MethodDelete {
				f.runs = append(f.runs[:i], f.runs[i+1:]...)
				w.WriteHeader(http.StatusNoContent)
				return
			}
			reply(http.StatusOK, rn)
			return
		}
		reply(http.StatusNotFound, map[string]string{"message": "runner not found"})
	default:
		reply(http.StatusNotFound, map[string]string{"message": "no route " + r.Method + " " + path})
	}
}

func target(url string, scope corral.Scope, path string) corral.Target {
	return corral.Target{ID: "t1", Kind: corral.KindGitea, Scope: scope, Path: path, URL: url,
		Token: pat, RunnerPrefix: "corral-t1", WebhookSecret: hookSecret}
}

func newServer(t *testing.T, h http.Handler) string {
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}
