// Package gitea is corral's adapter for Gitea (1.24+, verified against a
// real Gitea 1.27.3 and gitea-runner v1.0.8 in test/gitea) and, where the
// differences are cheap, Forgejo.
//
// One target is a repository (/repos/{o}/{r}), an organization
// (/orgs/{org}), the token's user (/user) or the whole instance (/admin),
// reached through the REST API /api/v1 with "Authorization: token <PAT>".
//
// Runner credentials: Gitea has no just-in-time runners; a registration
// token (POST …/actions/runners/registration-token) registers any number of
// runners until it is replaced. The Client caches one per target, so
// MintRunner costs one API call when the cache is empty and none otherwise;
// it fetches it again every Options.RotateEvery (picking up a token an
// administrator replaced) and at once after ForgetToken, which
// DiagnoseRunner calls when a runner's output shows Gitea refusing the
// token. The instance runs the real runner through BootstrapScript:
// `register --ephemeral`, then `exec … daemon`; the runner takes one job
// and Gitea deletes its registration.
//
// Forgejo (NOT tested against a real server: the Go module proxy refuses
// forgejo-runner here, so no end-to-end run was possible): the webhook
// parser accepts X-Forgejo-* headers but Forgejo sends no GitHub-shaped
// workflow_job event, so Forgejo jobs come from the forge sweep; OpenJobs
// reads Forgejo's …/actions/runners/jobs (a bare array, status "waiting",
// no repository name); Job has no Forgejo endpoint and answers from that
// list; runner listings may be bare arrays; the bootstrap runs
// forgejo-runner with the same register/daemon flags, which forgejo-runner
// documents but which was not run here.
package gitea

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Target settings this adapter reads (corral.Target.Settings).
const (
	// SettingRunnerURL is the forge address the runners use, when it
	// differs from the target's URL (default: the target's URL without
	// /api/v1).
	SettingRunnerURL = "runner_url"
)

// DefaultRotateEvery is how long a cached registration token is used
// before it is fetched again.
const DefaultRotateEvery = 30 * time.Minute

// Options tunes a Client. The zero value is usable.
type Options struct {
	HTTPClient *http.Client // nil: a client with a 30 s timeout
	Logger     *slog.Logger // nil: discard
	Clock      corral.Clock // nil: the system clock
	// RotateEvery is the age at which the cached registration token is
	// fetched again; 0 means DefaultRotateEvery, negative never.
	RotateEvery time.Duration
	// Recorder observes every request sent (metrics); nil: none. Gitea
	// sends no rate-limit budget, so there is none to report.
	Recorder corral.CallRecorder
}

// Client is corral's corral.Forge for one Gitea or Forgejo target. It is
// safe for concurrent use.
type Client struct {
	t       corral.Target
	forgejo bool
	hc      *http.Client
	log     *slog.Logger
	clock   corral.Clock
	rotate  time.Duration
	rec     corral.CallRecorder
	web     *url.URL // the forge's root URL
	api     string   // web + /api/v1, no trailing slash
	scope   string   // /repos/o/r, /orgs/o, /user or /admin
	runURL  string   // what runners register against
	tok     tokenCache
	poll    pollCache
	handles handleCache // Forgejo: waiting jobs' handles (one-job mode)
}

var (
	_ corral.Forge           = (*Client)(nil)
	_ corral.RunnerDiagnoser = (*Client)(nil)
)

// NewClient validates target t (kind gitea or forgejo) and returns its
// client. It does no I/O.
func NewClient(t corral.Target, opt Options) (*Client, error) {
	if t.Kind != corral.KindGitea && t.Kind != corral.KindForgejo {
		return nil, fmt.Errorf("gitea client: target %q has kind %q, want gitea or forgejo: %w", t.ID, t.Kind, corral.ErrBadInput)
	}
	web, err := rootURL(t.URL)
	if err != nil {
		return nil, fmt.Errorf("gitea target %q: %w", t.ID, err)
	}
	scope, err := scopePath(t.Scope, t.Path)
	if err != nil {
		return nil, fmt.Errorf("gitea target %q: %w", t.ID, err)
	}
	if t.Token.Reveal() == "" {
		return nil, fmt.Errorf("gitea target %q: no token: %w", t.ID, corral.ErrBadInput)
	}
	c := &Client{
		t: t, forgejo: t.Kind == corral.KindForgejo,
		hc: opt.HTTPClient, log: opt.Logger, clock: opt.Clock, rotate: opt.RotateEvery, rec: opt.Recorder,
		web: web, api: strings.TrimSuffix(web.String(), "/") + "/api/v1", scope: scope,
		runURL: strings.TrimSuffix(web.String(), "/"),
	}
	if s := t.Settings[SettingRunnerURL]; s != "" {
		ru, err := rootURL(s)
		if err != nil {
			return nil, fmt.Errorf("gitea target %q: setting %s: %w", t.ID, SettingRunnerURL, err)
		}
		c.runURL = strings.TrimSuffix(ru.String(), "/")
	}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: 30 * time.Second}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "forge/gitea", "target", t.ID)
	if c.clock == nil {
		c.clock = corral.SystemClock{}
	}
	if c.rotate == 0 {
		c.rotate = DefaultRotateEvery
	}
	c.tok.sem = make(chan struct{}, 1)
	return c, nil
}

// rootURL parses the forge's URL; a trailing /api/v1 is dropped.
func rootURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(strings.TrimSuffix(s, "/"), "/api/v1"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("URL %q is not an absolute http(s) URL without credentials: %w", redactURL(s), corral.ErrBadInput)
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return s
}

// scopePath is the API prefix of a scope.
func scopePath(s corral.Scope, path string) (string, error) {
	switch s {
	case corral.ScopeRepo:
		o, r, ok := strings.Cut(path, "/")
		if !ok || o == "" || r == "" || strings.Contains(r, "/") {
			return "", fmt.Errorf("repository scope needs path owner/name, got %q: %w", path, corral.ErrBadInput)
		}
		return "/repos/" + url.PathEscape(o) + "/" + url.PathEscape(r), nil
	case corral.ScopeOrg:
		if path == "" || strings.Contains(path, "/") {
			return "", fmt.Errorf("organization scope needs the organization's name as path, got %q: %w", path, corral.ErrBadInput)
		}
		return "/orgs/" + url.PathEscape(path), nil
	case corral.ScopeUser:
		return "/user", nil
	case corral.ScopeInstance:
		return "/admin", nil
	default:
		return "", fmt.Errorf("scope %q is not repo, org, user or instance: %w", s, corral.ErrBadInput)
	}
}

// do sends one request to path (below /api/v1) and returns the body (at
// most 4 MiB) and headers of an answer with one of the wanted statuses, or
// a *corral.CallError that names the call and never holds a credential.
func (c *Client) do(ctx context.Context, op, method, path string, q url.Values, want ...int) ([]byte, http.Header, error) {
	return c.doWith(ctx, op, method, path, q, nil, want...)
}

// doWith is do with extra request headers (a conditional request).
func (c *Client) doWith(ctx context.Context, op, method, path string, q url.Values, hdr http.Header, want ...int) ([]byte, http.Header, error) {
	return c.send(ctx, op, method, path, q, hdr, nil, want...)
}

// doJSON is do with a JSON request body.
func (c *Client) doJSON(ctx context.Context, op, method, path string, body []byte, want ...int) ([]byte, http.Header, error) {
	return c.send(ctx, op, method, path, nil, http.Header{"Content-Type": {"application/json"}}, body, want...)
}

func (c *Client) send(ctx context.Context, op, method, path string, q url.Values, hdr http.Header, body []byte, want ...int) ([]byte, http.Header, error) {
	u := c.api + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	ce := &corral.CallError{Op: op, Target: c.t.ID, Method: method, URL: u}
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rb)
	if err != nil {
		ce.Err = fmt.Errorf("%w: %v", corral.ErrBadInput, err)
		return nil, nil, ce
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "token "+c.t.Token.Reveal())
	resp, err := c.hc.Do(req)
	if err != nil {
		c.recordCall(path, 0)
		if ctx.Err() != nil {
			ce.Err = ctx.Err()
		} else {
			ce.Err = fmt.Errorf("%w: %s", corral.ErrUnavailable, c.scrub(stripURL(err).Error()))
		}
		return nil, nil, ce
	}
	defer resp.Body.Close()
	c.recordCall(path, resp.StatusCode)
	ce.Status = resp.StatusCode
	ce.RequestID = resp.Header.Get("X-Request-Id")
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
	ce.Err = fmt.Errorf("%w: %s", kindOf(resp.StatusCode), c.scrub(message(b)))
	return nil, nil, ce
}

// kindOf maps Gitea's status to a sentinel error. Gitea deletes busy
// runners without complaint, so ErrBusy never comes from a status: see
// RemoveRunner.
func kindOf(status int) error {
	switch {
	case status == http.StatusNotFound || status == http.StatusGone:
		return corral.ErrNotFound
	case status == http.StatusConflict:
		return corral.ErrConflict
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

// message reads Gitea's {"message": ...} from an error answer.
func message(b []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) != nil || m.Message == "" {
		return "unexpected answer"
	}
	if len(m.Message) > 300 {
		m.Message = m.Message[:300] + "..."
	}
	return m.Message
}

// scrub hides the target's token and the cached registration token,
// should an answer ever echo one.
func (c *Client) scrub(s string) string {
	for _, sec := range []string{c.t.Token.Reveal(), c.tok.peek().Reveal()} {
		if len(sec) >= 8 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// malformed reports an answer corral cannot read.
func (c *Client) malformed(op, method, path string, err error) error {
	return &corral.CallError{Op: op, Target: c.t.ID, Method: method, URL: c.api + path, Status: http.StatusOK,
		Err: fmt.Errorf("%w: malformed answer: %v", corral.ErrUnavailable, err)}
}

// decodeList reads a listing that is either Gitea's {key: [...],
// total_count} or Forgejo's bare array with X-Total-Count.
func decodeList[T any](b []byte, h http.Header, key string) ([]T, int, error) {
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []T
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, 0, err
		}
		total := -1
		if v := h.Get("X-Total-Count"); v != "" {
			_, _ = fmt.Sscan(v, &total)
		}
		return items, total, nil
	}
	if string(trimmed) == "null" {
		return nil, 0, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &obj); err != nil {
		return nil, 0, err
	}
	var items []T
	if raw, ok := obj[key]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, 0, fmt.Errorf("field %s: %w", key, err)
		}
	}
	total := -1
	if raw, ok := obj["total_count"]; ok {
		if err := json.Unmarshal(raw, &total); err != nil {
			return nil, 0, fmt.Errorf("field total_count: %w", err)
		}
	}
	return items, total, nil
}

// pageLimit is Gitea's maximum page size (MAX_RESPONSE_ITEMS default 50).
const pageLimit = 50

// maxPages bounds a listing.
const maxPages = 1000

// pages reads path page by page until a short page or total_count is
// reached; each gets one page's body and headers and returns how many
// items it held and the total (-1 unknown).
func (c *Client) pages(ctx context.Context, op, path string, q url.Values, each func([]byte, http.Header) (int, int, error)) error {
	seen := 0
	for page := 1; ; page++ {
		if page > maxPages {
			// A listing cut short would read as jobs or runners gone.
			return &corral.CallError{Op: op, Target: c.t.ID, Method: http.MethodGet, URL: c.api + path,
				Err: fmt.Errorf("%w: more than %d pages", corral.ErrUnavailable, maxPages)}
		}
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		qq.Set("page", fmt.Sprint(page))
		qq.Set("limit", fmt.Sprint(pageLimit))
		b, h, err := c.do(ctx, op, http.MethodGet, path, qq, http.StatusOK)
		if err != nil {
			return err
		}
		n, total, err := each(b, h)
		if err != nil {
			return c.malformed(op, http.MethodGet, path, err)
		}
		seen += n
		if n < pageLimit || (total >= 0 && seen >= total) {
			return nil
		}
	}
}

// tokenCache holds the target's registration token.
type tokenCache struct {
	sem chan struct{} // held while a token is fetched: one call at a time
	mu  sync.Mutex
	val corral.Secret
	at  time.Time
}

func (tc *tokenCache) peek() corral.Secret {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.val
}

// endpointClass sorts a Gitea or Forgejo API path (below /api/v1) into one
// of corral's fixed endpoint classes (metrics).
func endpointClass(path string) string {
	has := func(s string) bool { return strings.Contains(path, s) }
	switch {
	case has("/actions/runners/registration-token"):
		return corral.CallRegistration
	case has("/actions/runners/jobs"), has("/actions/jobs"), has("/actions/runs"), has("/actions/tasks"):
		return corral.CallJobs
	case has("/actions/runners"):
		return corral.CallRunners
	case has("/hooks"):
		return corral.CallHooks
	case strings.HasSuffix(path, "/repos"):
		return corral.CallRepos
	case strings.HasSuffix(path, "/version"):
		return corral.CallMeta
	}
	return corral.CallOther
}

func (c *Client) recordCall(path string, status int) {
	if c.rec != nil {
		c.rec.ForgeCall(c.t.ID, endpointClass(path), corral.CallResult(status, status == http.StatusTooManyRequests))
	}
}
