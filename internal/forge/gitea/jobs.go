package gitea

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/corral-ci/corral/internal/corral"
)

// OpenJobs lists the target's jobs that wait for a runner or run: Gitea's
// GET …/actions/jobs?status=queued&status=in_progress, page by page (limit
// 50). Forgejo: GET …/actions/runners/jobs (see the package comment).
func (c *Client) OpenJobs(ctx context.Context) ([]corral.JobEvent, error) {
	if c.forgejo {
		return c.forgejoJobs(ctx)
	}
	var out []corral.JobEvent
	seen := map[int64]bool{}
	err := c.pages(ctx, "list-jobs", c.scope+"/actions/jobs", url.Values{"status": {"queued", "in_progress"}},
		func(b []byte, h http.Header) (int, int, error) {
			jobs, total, err := decodeList[jobModel](b, h, "jobs")
			if err != nil {
				return 0, 0, err
			}
			for _, j := range jobs {
				ev, err := j.listed()
				if err != nil {
					return 0, 0, err
				}
				if ev.Action != corral.ActionQueued && ev.Action != corral.ActionInProgress {
					continue // changed state between filter and answer
				}
				if !seen[ev.ForgeJobID] { // pages shift while they are read
					seen[ev.ForgeJobID] = true
					out = append(out, ev)
				}
			}
			return len(jobs), total, nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// listed turns a REST job into a JobEvent whose action is its status.
func (j jobModel) listed() (corral.JobEvent, error) {
	action := corral.JobAction(j.Status)
	switch j.Status {
	case "queued", "waiting", "in_progress", "completed":
	default:
		action = corral.ActionWaiting
	}
	return j.event(action)
}

// Job returns Gitea's view of one job: GET /repos/{repo}/actions/jobs/{id}.
// repo is the job's owner/name; a repository target's own path is used when
// it is empty.
func (c *Client) Job(ctx context.Context, forgeJobID int64, repo string) (corral.JobEvent, error) {
	if c.forgejo {
		return c.forgejoJob(ctx, forgeJobID)
	}
	if repo == "" && c.t.Scope == corral.ScopeRepo {
		repo = c.t.Path
	}
	o, r, ok := strings.Cut(repo, "/")
	if !ok || o == "" || r == "" {
		return corral.JobEvent{}, &corral.CallError{Op: "get-job", Target: c.t.ID,
			Err: fmt.Errorf("%w: job %d: repository %q is not owner/name", corral.ErrBadInput, forgeJobID, repo)}
	}
	const op = "get-job"
	path := fmt.Sprintf("/repos/%s/%s/actions/jobs/%d", url.PathEscape(o), url.PathEscape(r), forgeJobID)
	b, _, err := c.do(ctx, op, http.MethodGet, path, nil, http.StatusOK)
	if err != nil {
		return corral.JobEvent{}, err
	}
	var j jobModel
	if err := json.Unmarshal(b, &j); err != nil {
		return corral.JobEvent{}, c.malformed(op, http.MethodGet, path, err)
	}
	ev, err := j.listed()
	if err != nil {
		return corral.JobEvent{}, c.malformed(op, http.MethodGet, path, err)
	}
	if ev.Repo == "" {
		ev.Repo = repo
	}
	return ev, nil
}

// forgejoJob is Forgejo's listing entry (…/actions/runners/jobs).
type forgejoJob struct {
	ID      int64    `json:"id"`
	Attempt int      `json:"attempt"`
	Handle  string   `json:"handle"`
	Name    string   `json:"name"`
	RunsOn  []string `json:"runs_on"`
	Status  string   `json:"status"`
	TaskID  int64    `json:"task_id"`
	Repo    *struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

// forgejoStatus maps Forgejo's status words to corral's actions.
func forgejoStatus(s string) corral.JobAction {
	switch s {
	case "waiting":
		return corral.ActionQueued
	case "running":
		return corral.ActionInProgress
	case "blocked":
		return corral.ActionWaiting
	default:
		return corral.ActionCompleted
	}
}

// forgejoJobs reads Forgejo's job listing. Untested against a real
// Forgejo (see the package comment); the repository name is absent from
// the answer, so Repo is the target's path for a repository target only.
func (c *Client) forgejoJobs(ctx context.Context) ([]corral.JobEvent, error) {
	var out []corral.JobEvent
	handles := map[int64]string{}
	seen := map[int64]bool{}
	err := c.pages(ctx, "list-jobs", c.scope+"/actions/runners/jobs", nil, func(b []byte, h http.Header) (int, int, error) {
		jobs, total, err := decodeList[forgejoJob](b, h, "jobs")
		if err != nil {
			return 0, 0, err
		}
		for _, j := range jobs {
			a := forgejoStatus(j.Status)
			if j.ID <= 0 || (a != corral.ActionQueued && a != corral.ActionInProgress) {
				continue
			}
			if seen[j.ID] {
				continue // a listing that ignores paging repeats itself
			}
			seen[j.ID] = true
			if a == corral.ActionQueued && validHandle(j.Handle) {
				handles[j.ID] = j.Handle
			}
			ev := corral.JobEvent{Action: a, ForgeJobID: j.ID, Name: j.Name, Labels: j.RunsOn, RunAttempt: j.Attempt}
			if j.Repo != nil {
				ev.Repo = j.Repo.FullName
			} else if c.t.Scope == corral.ScopeRepo {
				ev.Repo = c.t.Path
			}
			out = append(out, ev)
		}
		return len(jobs), total, nil
	})
	if err == nil {
		c.handles.set(handles)
	}
	return out, err
}

// forgejoJob answers from the open listing: Forgejo has no single-job
// endpoint that corral knows of.
func (c *Client) forgejoJob(ctx context.Context, id int64) (corral.JobEvent, error) {
	jobs, err := c.forgejoJobs(ctx)
	if err != nil {
		return corral.JobEvent{}, err
	}
	for _, j := range jobs {
		if j.ForgeJobID == id {
			return j, nil
		}
	}
	return corral.JobEvent{}, &corral.CallError{Op: "get-job", Target: c.t.ID,
		Err: fmt.Errorf("forgejo job %d is not open: %w", id, corral.ErrNotFound)}
}
