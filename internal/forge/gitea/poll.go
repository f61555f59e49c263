package gitea

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/corral-ci/corral/internal/corral"
)

var _ corral.JobPoller = (*Client)(nil)

// pollCache keeps the validator of the last single-page answer of the
// open-jobs listing, so the next poll can be a conditional request.
type pollCache struct {
	mu   sync.Mutex
	etag string
}

// PollJobs lists the jobs waiting for a runner or running, for poll mode:
// Gitea's GET …/actions/jobs?status=queued&status=in_progress, page 1 with
// limit 50, which is one call while at most 50 jobs wait or run (further
// pages otherwise). The running ones tell corral that a job started, as
// the in_progress webhook would. When the previous single-page answer
// carried an ETag it is sent back (If-None-Match), and a 304 answer costs
// no decoding. Forgejo: its …/actions/runners/jobs listing (waiting and
// running jobs).
func (c *Client) PollJobs(ctx context.Context) ([]corral.JobEvent, bool, error) {
	if c.forgejo {
		jobs, err := c.forgejoJobs(ctx)
		if err != nil {
			return nil, false, err
		}
		out := jobs[:0]
		for _, j := range jobs {
			if j.Action == corral.ActionQueued || j.Action == corral.ActionInProgress {
				out = append(out, j)
			}
		}
		return out, false, nil
	}
	const op = "poll-jobs"
	path := c.scope + "/actions/jobs"
	q := url.Values{"status": {"queued", "in_progress"}, "page": {"1"}, "limit": {"50"}}
	c.poll.mu.Lock()
	etag := c.poll.etag
	c.poll.mu.Unlock()
	var hdr http.Header
	if etag != "" {
		hdr = http.Header{"If-None-Match": {etag}}
	}
	b, h, err := c.doWith(ctx, op, http.MethodGet, path, q, hdr, http.StatusOK, http.StatusNotModified)
	if err != nil {
		return nil, false, err
	}
	if etag != "" && len(b) == 0 {
		return nil, true, nil // 304 Not Modified: a 200 always has a body
	}
	var out []corral.JobEvent
	seen := map[int64]bool{}
	add := func(b []byte, h http.Header) (int, int, error) {
		jobs, total, err := decodeList[jobModel](b, h, "jobs")
		if err != nil {
			return 0, 0, err
		}
		for _, j := range jobs {
			ev, err := j.listed()
			if err != nil {
				return 0, 0, err
			}
			open := ev.Action == corral.ActionQueued || ev.Action == corral.ActionInProgress
			if open && !seen[ev.ForgeJobID] {
				seen[ev.ForgeJobID] = true
				out = append(out, ev)
			}
		}
		return len(jobs), total, nil
	}
	n, total, err := add(b, h)
	if err != nil {
		return nil, false, c.malformed(op, http.MethodGet, path, err)
	}
	next := ""
	if n < pageLimit || (total >= 0 && n >= total) {
		next = h.Get("Etag") // one page said it all: it may validate the next poll
	}
	// More than a page waits: read the rest (no conditional request).
	for page, read := 2, n; next == "" && n == pageLimit && (total < 0 || read < total); page++ {
		if page > maxPages {
			break // the first pages are served now; the rest at a later poll
		}
		q.Set("page", fmt.Sprint(page))
		b, h, err := c.do(ctx, op, http.MethodGet, path, q, http.StatusOK)
		if err != nil {
			return nil, false, err
		}
		if n, total, err = add(b, h); err != nil {
			return nil, false, c.malformed(op, http.MethodGet, path, err)
		}
		read += n
	}
	c.poll.mu.Lock()
	c.poll.etag = next
	c.poll.mu.Unlock()
	return out, false, nil
}
