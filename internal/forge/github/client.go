package github

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v75/github"

	"github.com/corral-ci/corral/internal/corral"
)

// DefaultAPIURL is github.com's REST API. GHES: https://HOST/api/v3; GHEC
// with data residency: https://api.SUBDOMAIN.ghe.com.
const DefaultAPIURL = "https://api.github.com"

// APIVersion is the REST API version corral speaks (X-GitHub-Api-Version).
const APIVersion = "2022-11-28"

// Target settings the client reads (corral.Target.Settings).
const (
	SettingAppID          = "app_id"          // App id or client id; Token is then the App's private key PEM
	SettingInstallationID = "installation_id" // optional: found with the App JWT otherwise
	SettingRunnerGroupID  = "runner_group_id" // JIT runner group, default 1
	SettingRunnerGroup    = "runner_group"    // group NAME for the registration-token fallback (config.sh --runnergroup)
	SettingCAFile         = "ca_file"         // PEM bundle trusted in addition to the system roots (GHES)
	SettingWorkFolder     = "work_folder"     // runner work folder, default "_work"
	// SettingPointsPerMinute is the budget of secondary rate-limit points
	// per endpoint per minute that mutating calls keep to (default
	// DefaultPointsPerMinute; "0": no budget).
	SettingPointsPerMinute = "points_per_minute"
	// SettingFullSweepEvery is how often the forge sweep lists the jobs of
	// every open workflow run, including the runs the ledger already holds
	// open jobs of (a Go duration, default DefaultFullSweepEvery; "0":
	// every sweep). See Client.OpenJobsKnowing.
	SettingFullSweepEvery = "full_sweep_every"
)

// DefaultFullSweepEvery is how often, by default, a sweep lists the jobs of
// the runs whose jobs the ledger already holds (SettingFullSweepEvery).
const DefaultFullSweepEvery = 5 * time.Minute

// Options tune a Client. The zero value works.
type Options struct {
	// HTTPClient supplies the base transport, its Timeout (applied per
	// attempt) and redirect policy. Nil: http.DefaultTransport, 30 s.
	HTTPClient *http.Client
	// Clock tells the time (tokens, JWTs, rate-limit windows). Nil: system clock.
	Clock corral.Clock
	// Sleep waits d or until ctx ends; retries and rate-limit waits use it.
	// Nil: a real timer. Tests advance a fake clock instead.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives warnings; nil discards them. Secrets never reach it.
	Logger *slog.Logger
	// Cache is shared by every client of the process: installation tokens
	// and ids, rate-limit budgets and redelivery records live there, one per
	// credential. Nil: a private cache (nothing shared with other clients).
	Cache *Cache
	// SweepReserve is the rate-limit budget that sweeps (OpenJobs, Runners,
	// Job) leave to MintRunner and RemoveRunner: below it they fail fast
	// with ErrRateLimited. 0: a tenth of the limit GitHub reports.
	SweepReserve int
	// MaxWait bounds how long MintRunner and RemoveRunner wait for a rate
	// limit to lift before they fail with ErrRateLimited. 0: 20 s.
	MaxWait time.Duration
	// MaxAttempts bounds the tries of one request on 5xx and network
	// errors. 0: 3.
	MaxAttempts int
	// RepoListTTL is how long an organization's repository list is reused
	// by OpenJobs. 0: 10 minutes.
	RepoListTTL time.Duration
	// Recorder observes every request sent (metrics); nil: none.
	Recorder corral.CallRecorder
}

// Client is corral's corral.Forge for one GitHub target (repository,
// organization or enterprise).
type Client struct {
	t      corral.Target
	opt    Options
	log    *slog.Logger
	clock  corral.Clock
	base   *url.URL // API base, with a trailing slash
	owner  string   // repo scope: owner; org: org; enterprise: slug
	repo   string   // repo scope only
	group  int64
	work   string
	app    *appAuth // nil for a PAT
	gh     *gh.Client
	appGH  *gh.Client // JWT-authenticated; nil for a PAT
	tr     *transport
	etags  *etagCache
	limKey string // shared limiter of a PAT; app clients key by installation
	points int    // secondary-limit points per endpoint per minute for mutating calls; 0: no budget

	probeRun sync.Mutex // one probe at a time
	probeMu  sync.Mutex
	probed   *ProbeResult
	noJIT    bool // learned from a 404 on generate-jitconfig

	reposMu  sync.Mutex
	repos    []string // organization repositories, from the API
	reposAt  time.Time
	observed map[string]bool // repositories seen in webhooks or calls

	fullEvery time.Duration // see SettingFullSweepEvery; 0: every sweep is full
	skimMu    sync.Mutex
	fullAt    time.Time // the last sweep that listed every open run
}

var (
	_ corral.Forge      = (*Client)(nil)
	_ corral.RunSkimmer = (*Client)(nil)
)

// NewClient validates t and assembles its client. It does no I/O: the
// probe, token requests and the ca_file are deferred to the first call.
func NewClient(t corral.Target, opt Options) (*Client, error) {
	if t.Kind != corral.KindGitHub && t.Kind != "" {
		return nil, fmt.Errorf("github target %q: kind %q: %w", t.ID, t.Kind, corral.ErrBadInput)
	}
	raw := strings.TrimSpace(t.URL)
	if raw == "" {
		raw = DefaultAPIURL
	}
	base, err := url.Parse(strings.TrimSuffix(raw, "/") + "/")
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.User != nil {
		return nil, fmt.Errorf("github target %q: URL is not an absolute http(s) URL without credentials: %w", t.ID, corral.ErrBadInput)
	}
	c := &Client{t: t, opt: opt, base: base, observed: map[string]bool{}}
	switch t.Scope {
	case corral.ScopeRepo:
		o, r, ok := strings.Cut(t.Path, "/")
		if !ok || o == "" || r == "" || strings.Contains(r, "/") {
			return nil, fmt.Errorf("github target %q: repo path %q is not owner/name: %w", t.ID, t.Path, corral.ErrBadInput)
		}
		c.owner, c.repo = o, r
	case corral.ScopeOrg, corral.ScopeEnterprise:
		if t.Path == "" || strings.Contains(t.Path, "/") {
			return nil, fmt.Errorf("github target %q: %s path %q must be one name: %w", t.ID, t.Scope, t.Path, corral.ErrBadInput)
		}
		c.owner = t.Path
	default:
		return nil, fmt.Errorf("github target %q: scope %q (want repo, org or enterprise): %w", t.ID, t.Scope, corral.ErrBadInput)
	}
	if t.Token == "" {
		return nil, fmt.Errorf("github target %q: no token or App key: %w", t.ID, corral.ErrBadInput)
	}
	c.group = 1
	if s := t.Settings[SettingRunnerGroupID]; s != "" {
		c.group, err = strconv.ParseInt(s, 10, 64)
		if err != nil || c.group <= 0 {
			return nil, fmt.Errorf("github target %q: runner_group_id %q is not a positive integer: %w", t.ID, s, corral.ErrBadInput)
		}
	}
	c.points = DefaultPointsPerMinute
	if s := t.Settings[SettingPointsPerMinute]; s != "" {
		c.points, err = strconv.Atoi(s)
		if err != nil || c.points < 0 || (c.points > 0 && c.points < writePoints) {
			return nil, fmt.Errorf("github target %q: points_per_minute %q: want 0 (no budget) or a whole number of at least %d: %w", t.ID, s, writePoints, corral.ErrBadInput)
		}
	}
	c.fullEvery = DefaultFullSweepEvery
	if s := t.Settings[SettingFullSweepEvery]; s != "" {
		c.fullEvery, err = time.ParseDuration(s)
		if err != nil || c.fullEvery < 0 {
			return nil, fmt.Errorf("github target %q: full_sweep_every %q: want a duration such as 5m, or 0 (every sweep lists every run): %w", t.ID, s, corral.ErrBadInput)
		}
	}
	c.work = t.Settings[SettingWorkFolder]
	if c.opt.Clock == nil {
		c.opt.Clock = corral.SystemClock{}
	}
	c.clock = c.opt.Clock
	if c.opt.Sleep == nil {
		c.opt.Sleep = sleep
	}
	if c.opt.Cache == nil {
		c.opt.Cache = NewCache()
	}
	if c.opt.MaxWait <= 0 {
		c.opt.MaxWait = 20 * time.Second
	}
	if c.opt.MaxAttempts <= 0 {
		c.opt.MaxAttempts = 3
	}
	if c.opt.RepoListTTL <= 0 {
		c.opt.RepoListTTL = 10 * time.Minute
	}
	c.log = c.opt.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "forge/github", "target", t.ID)

	base0, err := newBase(opt.HTTPClient, t.Settings[SettingCAFile])
	if err != nil {
		return nil, fmt.Errorf("github target %q: %w", t.ID, err)
	}
	if id := t.Settings[SettingAppID]; id != "" {
		if t.Scope == corral.ScopeEnterprise {
			return nil, fmt.Errorf("github target %q: enterprise runner endpoints refuse GitHub App tokens; use a classic PAT with manage_runners:enterprise: %w", t.ID, corral.ErrBadInput)
		}
		c.app, err = newAppAuth(c, id, t.Settings[SettingInstallationID], t.Token)
		if err != nil {
			return nil, fmt.Errorf("github target %q: %w", t.ID, err)
		}
		appTr := &transport{c: c, base: base0, auth: c.app.jwtAuth}
		c.appGH = newGH(appTr, base)
	} else {
		c.limKey = base.String() + " pat:" + fingerprint(t.Token.Reveal())
	}
	c.etags = newETagCache(1000)
	c.tr = &transport{c: c, base: base0, auth: c.authorize, etags: c.etags}
	if c.app != nil {
		c.tr.refused = c.app.invalidate
	}
	c.gh = newGH(c.tr, base)
	return c, nil
}

func newGH(rt http.RoundTripper, base *url.URL) *gh.Client {
	g := gh.NewClient(&http.Client{Transport: rt})
	b := *base
	g.BaseURL = &b
	g.UploadURL = &b
	g.UserAgent = "corral"
	// Our transport tracks and honours rate limits with the injected clock.
	g.DisableRateLimitCheck = true
	return g
}

// authorize returns the Authorization header and the limiter key for a
// request of the target's own credential (PAT or installation token).
func (c *Client) authorize(ctx context.Context) (string, string, error) {
	if c.app == nil {
		return "Bearer " + c.t.Token.Reveal(), c.limKey, nil
	}
	return c.app.installationAuth(ctx)
}

// ObserveRepo tells the client about a repository ("owner/name") seen in a
// webhook: OpenJobs of an organization or enterprise target also sweeps it.
// The app may call it for every delivery; it is cheap.
func (c *Client) ObserveRepo(repo string) {
	o, r, ok := strings.Cut(repo, "/")
	if !ok || o == "" || r == "" {
		return
	}
	if c.t.Scope == corral.ScopeOrg && !strings.EqualFold(o, c.owner) {
		return
	}
	c.reposMu.Lock()
	c.observed[repo] = true
	c.reposMu.Unlock()
}

// webURL is the web address of the target's scope, for config.sh --url.
func (c *Client) webURL() string {
	u := *c.base
	u.RawQuery, u.Fragment = "", ""
	switch {
	case u.Host == "api.github.com":
		u.Host = "github.com"
		u.Path = "/"
	case strings.HasPrefix(u.Host, "api.") && strings.HasSuffix(u.Host, ".ghe.com"):
		u.Host = strings.TrimPrefix(u.Host, "api.")
		u.Path = "/"
	default:
		u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v3") + "/"
	}
	switch c.t.Scope {
	case corral.ScopeRepo:
		u.Path += c.owner + "/" + c.repo
	case corral.ScopeOrg:
		u.Path += c.owner
	default:
		u.Path += "enterprises/" + c.owner
	}
	u.RawPath = ""
	return u.String()
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
