package github

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	gh "github.com/google/go-github/v75/github"

	"github.com/corral-ci/corral/internal/corral"
)

// redeliveryMemory is how long a redelivered guid is remembered: past
// GitHub's redelivery window (3 days; GHES 7).
const redeliveryMemory = 8 * 24 * time.Hour

// maxRedeliveries bounds the redeliveries of one RedeliverFailed call.
const maxRedeliveries = 100

// redeliveries records, per App, the delivery guids corral asked GitHub to
// redeliver, so that no delivery is redelivered twice, whichever target of
// the App asks. It lives in memory: after a restart a failed delivery may
// be redelivered once more, which the ledger's dedup by delivery guid
// makes harmless.
type redeliveries struct {
	mu   sync.Mutex // held for a whole RedeliverFailed: one at a time per App
	done map[string]time.Time
}

func (c *Cache) redeliveries(app string) *redeliveries {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.redeliv[app]
	if r == nil {
		r = &redeliveries{done: map[string]time.Time{}}
		c.redeliv[app] = r
	}
	return r
}

// CanListDeliveries reports whether the client can list its webhook
// deliveries (and so RedeliverFailed works): only a GitHub App can.
func (c *Client) CanListDeliveries() bool { return c.app != nil }

// RedeliverFailed asks GitHub to redeliver the App's failed workflow_job
// webhook deliveries since the given time (GET /app/hook/deliveries
// ?status=failure, cursor-paged, newest first; POST
// /app/hook/deliveries/{id}/attempts), each delivery (guid) once, so that a
// missed queued event is rescued in seconds rather than at the next sweep.
// It returns how many it asked for. Only for App targets (ErrBadInput
// otherwise); repository and organization hooks of PATs are not covered.
func (c *Client) RedeliverFailed(ctx context.Context, since time.Time) (int, error) {
	ctx = withPriority(ctx, prioritySweep)
	if c.app == nil {
		return 0, fmt.Errorf("redeliver [%s]: only GitHub App targets can list their webhook deliveries: %w", c.t.ID, corral.ErrBadInput)
	}
	rec := c.opt.Cache.redeliveries(c.app.prefix)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	now := c.clock.Now()
	for g, at := range rec.done {
		if now.Sub(at) > redeliveryMemory {
			delete(rec.done, g)
		}
	}
	n := 0
	cursor := ""
	for pages := 0; pages < maxPages; pages++ {
		q := url.Values{"status": {"failure"}, "per_page": {"100"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		req, err := c.appGH.NewRequest("GET", "app/hook/deliveries?"+q.Encode(), nil)
		if err != nil {
			return n, err
		}
		var items []*gh.HookDelivery
		resp, err := c.appGH.Do(ctx, req, &items)
		if err != nil {
			return n, c.callErr("list-deliveries", resp, err)
		}
		older := false
		for _, d := range items {
			if d.GetDeliveredAt().Time.Before(since) {
				older = true // newest first: the rest is older too
				break
			}
			guid := d.GetGUID()
			if d.GetEvent() != "workflow_job" || guid == "" || !rec.done[guid].IsZero() {
				continue
			}
			if n == maxRedeliveries {
				return n, nil
			}
			if err := c.redeliver(ctx, d.GetID()); err != nil {
				return n, err
			}
			rec.done[guid] = c.clock.Now()
			n++
		}
		if older || resp.Cursor == "" {
			return n, nil
		}
		cursor = resp.Cursor
	}
	return n, nil
}

func (c *Client) redeliver(ctx context.Context, id int64) error {
	req, err := c.appGH.NewRequest("POST", "app/hook/deliveries/"+strconv.FormatInt(id, 10)+"/attempts", nil)
	if err != nil {
		return err
	}
	resp, err := c.appGH.Do(ctx, req, nil)
	var accepted *gh.AcceptedError
	if err != nil && !errors.As(err, &accepted) {
		return c.callErr("redeliver", resp, err)
	}
	return nil
}
