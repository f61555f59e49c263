package gitea

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/corral-ci/corral/internal/corral"
)

// runnerModel is Gitea's ActionRunner (Forgejo: labels are plain strings).
type runnerModel struct {
	ID     int64           `json:"id"`
	Name   string          `json:"name"`
	Status string          `json:"status"`
	Busy   bool            `json:"busy"`
	Labels json.RawMessage `json:"labels"`
}

func (r runnerModel) runner() corral.Runner {
	out := corral.Runner{ID: r.ID, Name: r.Name, Online: r.Status == "online" || r.Status == "idle" || r.Status == "active", Busy: r.Busy}
	if r.Status == "active" { // Forgejo-style status words
		out.Busy = true
	}
	var objs []struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(r.Labels, &objs) == nil {
		for _, l := range objs {
			out.Labels = append(out.Labels, l.Name)
		}
		return out
	}
	var names []string
	if json.Unmarshal(r.Labels, &names) == nil {
		out.Labels = names
	}
	return out
}

// Runners lists the target's runners whose names start with the target's
// runner prefix: GET …/actions/runners, page by page.
func (c *Client) Runners(ctx context.Context) ([]corral.Runner, error) {
	all, err := c.listRunners(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, r := range all {
		if strings.HasPrefix(r.Name, c.t.RunnerPrefix) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (c *Client) listRunners(ctx context.Context) ([]corral.Runner, error) {
	var out []corral.Runner
	seen := map[int64]bool{}
	err := c.pages(ctx, "list-runners", c.scope+"/actions/runners", nil, func(b []byte, h http.Header) (int, int, error) {
		rs, total, err := decodeList[runnerModel](b, h, "runners")
		if err != nil {
			return 0, 0, err
		}
		for _, r := range rs {
			if !seen[r.ID] {
				seen[r.ID] = true
				out = append(out, r.runner())
			}
		}
		return len(rs), total, nil
	})
	return out, err
}

// RemoveRunner removes a registration: DELETE …/actions/runners/{id}; nil
// when it is gone already. Gitea deletes a busy runner without complaint,
// so the runner is read first and a busy one is refused with ErrBusy
// (Gitea shows a runner busy while it reports on a task, within 10 s). A
// Runner without ID is looked up by name among the target's runners.
func (c *Client) RemoveRunner(ctx context.Context, r corral.Runner) error {
	if r.ID == 0 {
		if r.Name == "" {
			return &corral.CallError{Op: "remove-runner", Target: c.t.ID, Err: fmt.Errorf("%w: neither id nor name", corral.ErrBadInput)}
		}
		all, err := c.listRunners(ctx)
		if err != nil {
			return err
		}
		for _, x := range all {
			if x.Name != r.Name {
				continue
			}
			if x.Busy {
				return busy(c.t.ID, x)
			}
			// Names may repeat (a retried bootstrap): remove every idle one.
			if err := c.deleteRunner(ctx, x.ID); err != nil {
				return err
			}
		}
		return nil
	}
	const op = "get-runner"
	path := fmt.Sprintf("%s/actions/runners/%d", c.scope, r.ID)
	b, _, err := c.do(ctx, op, http.MethodGet, path, nil, http.StatusOK)
	if errors.Is(err, corral.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var m runnerModel
	if err := json.Unmarshal(b, &m); err != nil {
		return c.malformed(op, http.MethodGet, path, err)
	}
	if cur := m.runner(); cur.Busy {
		return busy(c.t.ID, cur)
	}
	return c.deleteRunner(ctx, r.ID)
}

func busy(target string, r corral.Runner) error {
	return &corral.CallError{Op: "remove-runner", Target: target,
		Err: fmt.Errorf("runner %s (id %d): %w", r.Name, r.ID, corral.ErrBusy)}
}

func (c *Client) deleteRunner(ctx context.Context, id int64) error {
	_, _, err := c.do(ctx, "remove-runner", http.MethodDelete, fmt.Sprintf("%s/actions/runners/%d", c.scope, id), nil, http.StatusNoContent, http.StatusOK)
	if errors.Is(err, corral.ErrNotFound) {
		return nil
	}
	return err
}
