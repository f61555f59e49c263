package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	gh "github.com/google/go-github/v75/github"

	"github.com/corral-ci/corral/internal/corral"
)

// openRunStatuses are the workflow-run statuses whose jobs may be open:
// queued and in_progress runs hold queued and running jobs; waiting runs
// hold jobs waiting for an approval (reported as ActionWaiting, so the
// sweep does not take them for finished).
var openRunStatuses = []string{"queued", "in_progress", "waiting"}

// OpenJobs lists the target's jobs that are queued, waiting or running.
//
// Cost: per repository, one conditional GET of the runs per open status
// (three; a 304 costs no rate limit), and one of the jobs of each open run.
// Which repositories: a repository target its own; an organization the
// repositories its credential sees (GET /installation/repositories for an
// App, /orgs/{org}/repos for a PAT; archived and disabled ones skipped; refreshed every
// RepoListTTL) plus those passed to ObserveRepo; an enterprise only those
// passed to ObserveRepo or to Job, since GitHub has no enterprise-wide
// listing of workflow runs. A sweep short of rate-limit budget fails with
// ErrRateLimited rather than return a partial list.
func (c *Client) OpenJobs(ctx context.Context) ([]corral.JobEvent, error) {
	evs, _, err := c.OpenJobsKnowing(ctx, nil)
	return evs, err
}

// OpenJobsKnowing is OpenJobs told which workflow runs the ledger holds
// open jobs of (corral.RunSkimmer). Between full sweeps it does not list
// the jobs of such a run, and returns the run in skipped: the caller keeps
// its own view of that run's jobs, which webhooks keep current. A full
// sweep lists every open run's jobs: the client's first sweep (after a
// start or a take-over, when webhooks may have been missed), then one
// every FullSweepEvery. A run the ledger knows nothing of is listed at
// every sweep, so a job whose queued webhook was lost is found at the next
// sweep; one whose run also holds an announced job, at the next full sweep.
//
// A run's updated_at is not used to list changed runs sooner: GitHub moves
// it whenever a job of the run starts or ends, so a long matrix run would
// be listed at every sweep, and webhooks already bring those changes.
func (c *Client) OpenJobsKnowing(ctx context.Context, known map[int64]bool) ([]corral.JobEvent, map[int64]bool, error) {
	ctx = withPriority(ctx, prioritySweep)
	if err := c.ensureProbe(ctx); err != nil {
		return nil, nil, err
	}
	repos, err := c.sweepRepos(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := c.clock.Now()
	c.skimMu.Lock()
	full := known == nil || c.fullEvery <= 0 || c.fullAt.IsZero() || now.Sub(c.fullAt) >= c.fullEvery
	c.skimMu.Unlock()
	skip := func(run int64) bool { return !full && known[run] }
	skipped := map[int64]bool{}
	var out []corral.JobEvent
	seen := map[int64]bool{}
	for _, repo := range repos {
		evs, err := c.repoOpenJobs(ctx, repo, skip, skipped)
		if errors.Is(err, corral.ErrNotFound) && c.t.Scope != corral.ScopeRepo {
			// Deleted, renamed or no longer visible: not this target's.
			c.log.Warn("repository skipped by the job sweep", "repo", repo, "err", err)
			c.forgetRepo(repo)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		for _, ev := range evs {
			if !seen[ev.ForgeJobID] {
				seen[ev.ForgeJobID] = true
				out = append(out, ev)
			}
		}
	}
	if known != nil && full {
		c.skimMu.Lock()
		c.fullAt = now
		c.skimMu.Unlock()
	}
	c.log.Debug("job sweep", "full", full, "repos", len(repos), "open_jobs", len(out), "runs_skipped", len(skipped), "runs_known", len(known))
	return out, skipped, nil
}

// repoOpenJobs lists the open jobs of repo's open runs, except those of
// the runs skip names, which it adds to skipped.
func (c *Client) repoOpenJobs(ctx context.Context, repo string, skip func(run int64) bool, skipped map[int64]bool) ([]corral.JobEvent, error) {
	owner, name, _ := strings.Cut(repo, "/")
	var runs []int64
	seenRun := map[int64]bool{}
	for _, st := range openRunStatuses {
		err := c.openRuns(ctx, owner, name, st, func(id int64) bool {
			if seenRun[id] {
				return false
			}
			seenRun[id] = true
			if skip(id) {
				skipped[id] = true
			} else {
				runs = append(runs, id)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	var out []corral.JobEvent
	for _, run := range runs {
		opt := &gh.ListWorkflowJobsOptions{Filter: "latest", ListOptions: gh.ListOptions{PerPage: 100}}
		for n := 0; ; n++ {
			if n == maxPages {
				return nil, c.malformed("list-jobs", http.MethodGet, fmt.Sprintf("more than %d pages", maxPages))
			}
			page, resp, err := c.gh.Actions.ListWorkflowJobs(ctx, owner, name, run, opt)
			if err != nil {
				cerr := c.callErr("list-jobs", resp, err)
				if errors.Is(cerr, corral.ErrNotFound) {
					break // the run was deleted meanwhile
				}
				return nil, cerr
			}
			for _, j := range page.Jobs {
				if ev := jobEvent(j, repo); ev.Action != corral.ActionCompleted {
					out = append(out, ev)
				}
			}
			if resp.NextPage == 0 {
				break
			}
			opt.Page = resp.NextPage
		}
	}
	return out, nil
}

// openRuns lists the ids of the repository's runs of status st, newest
// first, passing each to add (true: not seen before). GitHub caps a
// status search at 1,000 runs while total_count counts them all: when the
// list comes short of total_count, it asks again for the runs created up
// to the oldest one seen, until nothing new comes: a capped list is never
// taken for the whole.
func (c *Client) openRuns(ctx context.Context, owner, name, st string, add func(id int64) bool) error {
	created := ""
	for pages := 0; ; {
		opt := &gh.ListWorkflowRunsOptions{Status: st, Created: created, ListOptions: gh.ListOptions{PerPage: 100}}
		var got, fresh, total int
		var oldest time.Time
		for {
			if pages == maxPages {
				return c.malformed("list-runs", http.MethodGet, fmt.Sprintf("more than %d pages", maxPages))
			}
			pages++
			page, resp, err := c.gh.Actions.ListRepositoryWorkflowRuns(ctx, owner, name, opt)
			if err != nil {
				return c.callErr("list-runs", resp, err)
			}
			total = page.GetTotalCount()
			for _, r := range page.WorkflowRuns {
				got++
				if add(r.GetID()) {
					fresh++
				}
				if t := r.GetCreatedAt().Time; !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
					oldest = t
				}
			}
			if resp.NextPage == 0 {
				break
			}
			opt.Page = resp.NextPage
		}
		if total <= got {
			return nil
		}
		if oldest.IsZero() || (created != "" && fresh == 0) {
			// More runs created in one second than GitHub lists: it offers no
			// finer search. The reconciler still asks about every job it
			// holds that this sweep missed before finishing it.
			c.log.Warn("workflow run list capped by GitHub; the sweep may miss queued runs", "repo", owner+"/"+name,
				"status", st, "total", total)
			return nil
		}
		// Capped: ask for the older runs (the same second again, since
		// several runs may share it; the ids seen are skipped).
		created = "<=" + oldest.UTC().Format(time.RFC3339)
	}
}

// Job returns GitHub's current view of one job (GET
// /repos/{repo}/actions/jobs/{id}); ErrNotFound when GitHub no longer knows
// it. repo may be empty for a repository target.
func (c *Client) Job(ctx context.Context, forgeJobID int64, repo string) (corral.JobEvent, error) {
	ctx = withPriority(ctx, prioritySweep)
	if repo == "" && c.t.Scope == corral.ScopeRepo {
		repo = c.t.Path
	}
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" {
		return corral.JobEvent{}, fmt.Errorf("github job %d [%s]: repository %q is not owner/name: %w", forgeJobID, c.t.ID, repo, corral.ErrBadInput)
	}
	j, resp, err := c.gh.Actions.GetWorkflowJobByID(ctx, owner, name, forgeJobID)
	if err != nil {
		return corral.JobEvent{}, c.callErr("get-job", resp, err)
	}
	c.ObserveRepo(repo)
	return jobEvent(j, repo), nil
}

// jobAction maps a job's status to the action a webhook would carry.
func jobAction(status string) corral.JobAction {
	switch status {
	case "queued":
		return corral.ActionQueued
	case "in_progress":
		return corral.ActionInProgress
	case "completed":
		return corral.ActionCompleted
	default: // waiting, pending, requested
		return corral.ActionWaiting
	}
}

func jobEvent(j *gh.WorkflowJob, repo string) corral.JobEvent {
	ev := corral.JobEvent{
		Action:     jobAction(j.GetStatus()),
		ForgeJobID: j.GetID(),
		RunID:      j.GetRunID(),
		RunAttempt: int(j.GetRunAttempt()),
		Repo:       repo,
		Name:       j.GetName(),
		Labels:     j.Labels,
		RunnerID:   j.GetRunnerID(),
		RunnerName: j.GetRunnerName(),
		Conclusion: j.GetConclusion(),
	}
	created, started, completed := j.GetCreatedAt().Time, j.GetStartedAt().Time, j.GetCompletedAt().Time
	switch ev.Action {
	case corral.ActionInProgress:
		ev.At = firstNonZero(started, created)
	case corral.ActionCompleted:
		ev.At = firstNonZero(completed, started, created)
	default:
		ev.At = firstNonZero(created, started)
	}
	if ev.Action == corral.ActionCompleted {
		ev.Workflow = j.GetWorkflowName()
		ev.CreatedAt, ev.StartedAt, ev.CompletedAt = created, started, completed
		for i, st := range j.Steps {
			if i == corral.MaxSteps {
				break
			}
			ev.Steps = append(ev.Steps, corral.Step{Number: int(st.GetNumber()), Name: st.GetName(), Conclusion: st.GetConclusion(),
				StartedAt: st.GetStartedAt().Time, CompletedAt: st.GetCompletedAt().Time})
		}
	}
	return ev
}

func firstNonZero(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// sweepRepos returns the repositories OpenJobs looks at (see OpenJobs).
func (c *Client) sweepRepos(ctx context.Context) ([]string, error) {
	if c.t.Scope == corral.ScopeRepo {
		return []string{c.t.Path}, nil
	}
	if c.t.Scope == corral.ScopeOrg {
		c.reposMu.Lock()
		stale := c.reposAt.IsZero() || c.clock.Now().Sub(c.reposAt) >= c.opt.RepoListTTL
		c.reposMu.Unlock()
		if stale {
			repos, err := c.orgRepos(ctx)
			if errors.Is(err, corral.ErrNotFound) {
				// The probe found the organization, so the listing itself
				// is missing (a stand-in or proxy without it): sweep the
				// observed repositories and ask again after the TTL.
				c.log.Warn("organization repository list unavailable; sweeping observed repositories only", "err", err)
				repos, err = nil, nil
			}
			if err != nil {
				return nil, err
			}
			c.reposMu.Lock()
			c.repos, c.reposAt = repos, c.clock.Now()
			c.reposMu.Unlock()
		}
	}
	c.reposMu.Lock()
	defer c.reposMu.Unlock()
	set := map[string]bool{}
	for _, r := range c.repos {
		set[r] = true
	}
	for r := range c.observed {
		set[r] = true
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	slices.Sort(out)
	return out, nil
}

func (c *Client) forgetRepo(repo string) {
	c.reposMu.Lock()
	defer c.reposMu.Unlock()
	delete(c.observed, repo)
	c.repos = slices.DeleteFunc(c.repos, func(r string) bool { return r == repo })
}

// orgRepos lists the organization's repositories the credential sees,
// except archived and disabled ones (which run no workflows).
func (c *Client) orgRepos(ctx context.Context) ([]string, error) {
	var out []string
	add := func(rs []*gh.Repository) {
		for _, r := range rs {
			if r.GetArchived() || r.GetDisabled() || !strings.EqualFold(r.GetOwner().GetLogin(), c.owner) {
				continue
			}
			out = append(out, r.GetFullName())
		}
	}
	lo := gh.ListOptions{PerPage: 100}
	for n := 0; ; n++ {
		if n == maxPages {
			return nil, c.malformed("list-repos", http.MethodGet, fmt.Sprintf("more than %d pages", maxPages))
		}
		var resp *gh.Response
		var err error
		if c.app != nil {
			var page *gh.ListRepositories
			page, resp, err = c.gh.Apps.ListRepos(ctx, &lo)
			if err == nil {
				add(page.Repositories)
			}
		} else {
			var page []*gh.Repository
			page, resp, err = c.gh.Repositories.ListByOrg(ctx, c.owner, &gh.RepositoryListByOrgOptions{Type: "all", ListOptions: lo})
			if err == nil {
				add(page)
			}
		}
		if err != nil {
			return nil, c.callErr("list-repos", resp, err)
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		lo.Page = resp.NextPage
	}
}
