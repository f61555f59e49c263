package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
)

// Environment of a simulated runner (see RunRunner).
const (
	EnvURL   = "CORRAL_SIM_URL"
	EnvToken = "CORRAL_SIM_TOKEN"
)

// RunnerCommand is the command a provider starts for a simulated runner.
var RunnerCommand = []string{"sim-runner"}

// Client is corral's corral.Forge for one target of the simulated forge.
type Client struct {
	hc     *http.Client
	base   *url.URL
	target string // the sim's target id
	id     string // corral's target id, for errors
	prefix string
	token  corral.Secret
}

var _ corral.Forge = (*Client)(nil)

// Parser returns the webhook parser for the simulated forge: GitHub's,
// since the simulation sends GitHub-shaped webhooks.
func Parser() github.Parser { return github.Parser{} }

// NewClient returns a client for target t: t.URL is the simulated forge's
// base URL, t.Path (or t.ID when empty) the sim's target id. hc nil uses a
// client with a 30s timeout. It does no I/O.
func NewClient(t corral.Target, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(t.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sim forge target %q: URL %q is not an absolute http(s) URL: %w", t.ID, t.URL, corral.ErrBadInput)
	}
	id := t.Path
	if id == "" {
		id = t.ID
	}
	if id == "" {
		return nil, fmt.Errorf("sim forge target: neither Path nor ID is set: %w", corral.ErrBadInput)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{hc: hc, base: u, target: id, id: t.ID, prefix: t.RunnerPrefix, token: t.Token}, nil
}

func (c *Client) endpoint(rest string, q url.Values) string {
	u := *c.base
	u.Path = c.base.Path + apiPrefix + c.target + "/actions" + rest
	u.RawPath = c.base.EscapedPath() + apiPrefix + url.PathEscape(c.target) + "/actions" + rest
	u.RawQuery = q.Encode()
	return u.String()
}

// do sends one request. want lists the success statuses. It returns the
// response body (at most 4 MiB) and headers, or a *corral.CallError.
func (c *Client) do(ctx context.Context, op, method, rawURL string, in any, want ...int) ([]byte, http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, nil, err
		}
		body = bytes.NewReader(b)
	}
	ce := &corral.CallError{Op: op, Target: c.id, Method: method, URL: rawURL}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		ce.Err = fmt.Errorf("%w: %v", corral.ErrBadInput, err)
		return nil, nil, ce
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			ce.Err = ctx.Err()
		} else {
			ce.Err = fmt.Errorf("%w: %v", corral.ErrUnavailable, stripURL(err))
		}
		return nil, nil, ce
	}
	defer resp.Body.Close()
	ce.Status = resp.StatusCode
	ce.RequestID = resp.Header.Get("X-GitHub-Request-Id")
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		ce.Err = fmt.Errorf("%w: reading the answer: %v", corral.ErrUnavailable, err)
		return nil, nil, ce
	}
	for _, s := range want {
		if resp.StatusCode == s {
			return b, resp.Header, nil
		}
	}
	ce.Err = fmt.Errorf("%w: %s", kindOf(resp.StatusCode, method), message(b))
	return nil, nil, ce
}

// kindOf maps an HTTP status of the sim (GitHub's conventions) to a
// sentinel error.
func kindOf(status int, method string) error {
	switch {
	case status == http.StatusNotFound:
		return corral.ErrNotFound
	case status == http.StatusConflict:
		return corral.ErrConflict
	case status == http.StatusUnprocessableEntity && method == http.MethodDelete:
		return corral.ErrBusy
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return corral.ErrUnauthorized
	case status == http.StatusTooManyRequests:
		return corral.ErrRateLimited
	case status >= 500:
		return corral.ErrUnavailable
	default:
		return corral.ErrBadInput
	}
}

func message(b []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return m.Message
	}
	return "unexpected answer"
}

// stripURL keeps the cause of a transport error without repeating the URL
// (the CallError already holds it).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// MintRunner registers a JIT-like runner and returns its bootstrap. A 409
// means a registration with that name was left over (a crash or a retry):
// the stale runner is removed, if idle, and the mint is tried once more.
func (c *Client) MintRunner(ctx context.Context, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	in := map[string]any{"name": spec.Name, "labels": spec.Labels, "runner_group_id": 1}
	if spec.WorkFolder != "" {
		in["work_folder"] = spec.WorkFolder
	}
	b, err := c.mint(ctx, in)
	if errors.Is(err, corral.ErrConflict) {
		stale, ferr := c.runnerByName(ctx, spec.Name)
		switch {
		case errors.Is(ferr, corral.ErrNotFound):
			// Gone meanwhile: mint again.
		case ferr != nil:
			return corral.Bootstrap{}, ferr
		case stale.Busy:
			return corral.Bootstrap{}, fmt.Errorf("runner name %q is taken by a busy runner: %w", spec.Name, err)
		default:
			if rerr := c.RemoveRunner(ctx, stale); rerr != nil {
				return corral.Bootstrap{}, rerr
			}
		}
		b, err = c.mint(ctx, in)
	}
	return b, err
}

func (c *Client) mint(ctx context.Context, in any) (corral.Bootstrap, error) {
	body, _, err := c.do(ctx, "generate-jitconfig", http.MethodPost, c.endpoint("/runners/generate-jitconfig", nil), in, http.StatusCreated)
	if err != nil {
		return corral.Bootstrap{}, err
	}
	var out struct {
		Runner           runnerJSON `json:"runner"`
		EncodedJITConfig string     `json:"encoded_jit_config"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.EncodedJITConfig == "" {
		return corral.Bootstrap{}, fmt.Errorf("generate-jitconfig [%s]: malformed answer: %w", c.id, corral.ErrUnavailable)
	}
	return corral.Bootstrap{
		RunnerID: out.Runner.ID,
		Command:  append([]string(nil), RunnerCommand...),
		Env: map[string]corral.Secret{
			EnvURL:   corral.Secret(c.base.String()),
			EnvToken: corral.Secret(out.EncodedJITConfig),
		},
	}, nil
}

func (c *Client) runnerByName(ctx context.Context, name string) (corral.Runner, error) {
	rs, err := c.listRunners(ctx, url.Values{"name": {name}})
	if err != nil {
		return corral.Runner{}, err
	}
	for _, r := range rs {
		if r.Name == name {
			return r, nil
		}
	}
	return corral.Runner{}, fmt.Errorf("runner %q: %w", name, corral.ErrNotFound)
}

// OpenJobs lists the target's queued and in_progress jobs.
func (c *Client) OpenJobs(ctx context.Context) ([]corral.JobEvent, error) {
	var out []corral.JobEvent
	for _, status := range []string{StateQueued, StateInProgress} {
		err := c.pages(ctx, "list-jobs", c.endpoint("/jobs", url.Values{"status": {status}, "per_page": {"100"}}), func(b []byte) error {
			var page struct {
				Jobs []jobObject `json:"jobs"`
			}
			if err := json.Unmarshal(b, &page); err != nil {
				return err
			}
			for _, j := range page.Jobs {
				out = append(out, jobEvent(j))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Job returns one job of the target, whatever its status.
func (c *Client) Job(ctx context.Context, forgeJobID int64, _ string) (corral.JobEvent, error) {
	b, _, err := c.do(ctx, "get-job", http.MethodGet, c.endpoint(fmt.Sprintf("/jobs/%d", forgeJobID), nil), nil, http.StatusOK)
	if err != nil {
		return corral.JobEvent{}, err
	}
	var j jobObject
	if err := json.Unmarshal(b, &j); err != nil {
		return corral.JobEvent{}, &corral.CallError{Op: "get-job", Target: c.id, Method: http.MethodGet,
			Err: fmt.Errorf("%w: malformed answer: %v", corral.ErrUnavailable, err)}
	}
	return jobEvent(j), nil
}

var runURLRepo = regexp.MustCompile(`/repos/([^/]+/[^/]+)/actions/runs/`)

func jobEvent(j jobObject) corral.JobEvent {
	ev := corral.JobEvent{
		Action: corral.JobAction(j.Status), ForgeJobID: j.ID, RunID: j.RunID, RunAttempt: j.RunAttempt,
		Name: j.Name, Labels: j.Labels,
	}
	if m := runURLRepo.FindStringSubmatch(j.RunURL); m != nil {
		ev.Repo = m[1]
	}
	if j.RunnerID != nil {
		ev.RunnerID = *j.RunnerID
	}
	if j.RunnerName != nil {
		ev.RunnerName = *j.RunnerName
	}
	if j.Conclusion != nil {
		ev.Conclusion = *j.Conclusion
	}
	at := j.CreatedAt
	if j.Status == StateInProgress && j.StartedAt != nil {
		at = *j.StartedAt
	}
	ev.At, _ = time.Parse(time.RFC3339, at)
	return ev
}

// Runners lists the target's registrations whose names start with the
// target's runner prefix.
func (c *Client) Runners(ctx context.Context) ([]corral.Runner, error) {
	rs, err := c.listRunners(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := rs[:0]
	for _, r := range rs {
		if strings.HasPrefix(r.Name, c.prefix) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (c *Client) listRunners(ctx context.Context, q url.Values) ([]corral.Runner, error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("per_page", "100")
	var out []corral.Runner
	err := c.pages(ctx, "list-runners", c.endpoint("/runners", q), func(b []byte) error {
		var page struct {
			Runners []runnerJSON `json:"runners"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return err
		}
		for _, r := range page.Runners {
			cr := corral.Runner{ID: r.ID, Name: r.Name, Online: r.Status == "online", Busy: r.Busy}
			for _, l := range r.Labels {
				cr.Labels = append(cr.Labels, l.Name)
			}
			out = append(out, cr)
		}
		return nil
	})
	return out, err
}

// maxPages bounds a listing, in case of a Link loop.
const maxPages = 1000

// pages GETs first and follows rel="next" links on the same host.
func (c *Client) pages(ctx context.Context, op, first string, each func([]byte) error) error {
	next := first
	for n := 0; next != ""; n++ {
		if n == maxPages {
			// A listing cut short would read as jobs or runners gone.
			return &corral.CallError{Op: op, Target: c.id, Method: http.MethodGet, URL: next,
				Err: fmt.Errorf("%w: more than %d pages", corral.ErrUnavailable, maxPages)}
		}
		b, h, err := c.do(ctx, op, http.MethodGet, next, nil, http.StatusOK)
		if err != nil {
			return err
		}
		if err := each(b); err != nil {
			return &corral.CallError{Op: op, Target: c.id, Method: http.MethodGet, URL: next, Status: http.StatusOK,
				Err: fmt.Errorf("%w: malformed answer: %v", corral.ErrUnavailable, err)}
		}
		next = nextLink(h.Get("Link"))
		if next != "" {
			u, err := url.Parse(next)
			if err != nil || u.Host != c.base.Host {
				return &corral.CallError{Op: op, Target: c.id, Method: http.MethodGet, URL: next,
					Err: fmt.Errorf("%w: next page link leaves the forge", corral.ErrUnavailable)}
			}
		}
	}
	return nil
}

// nextLink returns the rel="next" URL of a Link header, or "".
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		seg := strings.Split(part, ";")
		if len(seg) < 2 {
			continue
		}
		for _, p := range seg[1:] {
			if strings.TrimSpace(p) == `rel="next"` {
				return strings.Trim(strings.TrimSpace(seg[0]), "<>")
			}
		}
	}
	return ""
}

// RemoveRunner removes a registration: nil if it is already gone, ErrBusy
// if it runs a job. A Runner without ID is looked up by name.
func (c *Client) RemoveRunner(ctx context.Context, r corral.Runner) error {
	if r.ID == 0 {
		found, err := c.runnerByName(ctx, r.Name)
		if errors.Is(err, corral.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		r = found
	}
	_, _, err := c.do(ctx, "remove-runner", http.MethodDelete, c.endpoint("/runners/"+strconv.FormatInt(r.ID, 10), nil), nil, http.StatusNoContent)
	if errors.Is(err, corral.ErrNotFound) {
		return nil
	}
	return err
}
