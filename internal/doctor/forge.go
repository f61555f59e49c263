package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/gitea"
	"github.com/corral-ci/corral/internal/forge/github"
)

// Forge options for the target checks.
type ForgeOptions struct {
	// HTTPClient makes the forge calls (default: 15 s timeout).
	HTTPClient *http.Client
	// Now is the local clock (default time.Now).
	Now func() time.Time
	// Deliveries is how many recent webhook deliveries are read (default 30).
	Deliveries int
}

func (o *ForgeOptions) defaults() {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Deliveries <= 0 {
		o.Deliveries = 30
	}
}

// Target checks one target: its credential and permissions, its clock
// against the forge's Date header, and (where the forge shows them) its
// webhook and recent deliveries.
func Target(ctx context.Context, t corral.Target, opt ForgeOptions) []Result {
	opt.defaults()
	switch t.Kind {
	case corral.KindGitHub, "":
		return gitHubTarget(ctx, t, opt)
	case corral.KindGitea, corral.KindForgejo:
		return giteaTarget(ctx, t, opt)
	}
	return []Result{warn("target "+t.ID, "", "forge kind %q: doctor has no checks for it", t.Kind)}
}

// ghCall is a GitHub API GET with the target's token.
type ghCall struct {
	c      *http.Client
	base   string
	token  string
	now    func() time.Time
	first  http.Header // headers of the first answer (for Date)
	sentAt time.Time
	gotAt  time.Time
}

func (g *ghCall) get(ctx context.Context, path string, v any) (int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	sent := g.now()
	resp, err := g.c.Do(req)
	if err != nil {
		return 0, nil, errors.New(scrub(err.Error(), g.token))
	}
	defer resp.Body.Close()
	if g.first == nil {
		g.first, g.sentAt, g.gotAt = resp.Header, sent, g.now()
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, resp.Header, err
	}
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return resp.StatusCode, resp.Header, fmt.Errorf("%s: answer is not the expected JSON: %v", path, err)
		}
	}
	return resp.StatusCode, resp.Header, nil
}

func gitHubBase(t corral.Target) string {
	raw := strings.TrimSpace(t.URL)
	if raw == "" {
		raw = github.DefaultAPIURL
	}
	return strings.TrimSuffix(raw, "/") + "/"
}

func gitHubScopePath(t corral.Target) string {
	switch t.Scope {
	case corral.ScopeRepo:
		return "repos/" + t.Path
	case corral.ScopeOrg:
		return "orgs/" + url.PathEscape(t.Path)
	}
	return "enterprises/" + url.PathEscape(t.Path)
}

// classicScope is the classic PAT scope a target's runner calls need.
func classicScope(s corral.Scope) string {
	switch s {
	case corral.ScopeRepo:
		return "repo"
	case corral.ScopeOrg:
		return "admin:org"
	}
	return "manage_runners:enterprise"
}

func gitHubTarget(ctx context.Context, t corral.Target, opt ForgeOptions) []Result {
	cred := "credentials " + t.ID
	if t.Settings[github.SettingAppID] != "" {
		return gitHubApp(ctx, t, opt)
	}
	g := &ghCall{c: opt.HTTPClient, base: gitHubBase(t), token: t.Token.Reveal(), now: opt.Now}
	var out []Result
	status, h, err := g.get(ctx, gitHubScopePath(t)+"/actions/runners?per_page=1", nil)
	switch {
	case err != nil:
		out = append(out, fail(cred, "check the target's url and that this host reaches the forge", "cannot reach %s: %v", g.base, err))
		return out
	case status == http.StatusUnauthorized:
		out = append(out, fail(cred, "create a new token and put it in the target's token (env:NAME or file:PATH)",
			"the forge refused the token (401 Bad credentials): it is wrong, expired or revoked"))
	case status == http.StatusForbidden || status == http.StatusNotFound:
		need := classicScope(t.Scope)
		out = append(out, fail(cred, fmt.Sprintf("a classic PAT needs scope %s; a fine-grained one Self-hosted runners / Administration: write on the %s", need, t.Scope),
			"the token cannot list the %s %q's runners (%d)", t.Scope, t.Path, status))
	case status != http.StatusOK:
		out = append(out, fail(cred, "try again later; see the forge's status page", "listing runners answered %d", status))
	default:
		scopes := h.Get("X-OAuth-Scopes")
		need := classicScope(t.Scope)
		switch {
		case h.Values("X-OAuth-Scopes") == nil:
			out = append(out, ok(cred, "token accepted; runners listed (fine-grained token: the API does not show its permissions)"))
		case slices.Contains(splitScopes(scopes), need):
			out = append(out, ok(cred, "token accepted; scopes %s", scopes))
		default:
			out = append(out, warn(cred, "add scope "+need+" to the token", "token accepted but its scopes (%s) lack %s", scopes, need))
		}
	}
	out = append(out, Clock("clock "+t.ID, g.first, g.sentAt, g.gotAt))
	switch {
	case status == http.StatusOK && t.Mode == corral.ModeScaleSet:
		out = append(out, gitHubScaleSet(ctx, g, t))
	case status == http.StatusOK && t.Scope != corral.ScopeEnterprise:
		out = append(out, gitHubHooks(ctx, g, t, opt))
	}
	return out
}

// gitHubScaleSet says how a scale-set target's jobs reach corral and
// whether the server keeps multi-label scale sets (GHES 3.18+).
func gitHubScaleSet(ctx context.Context, g *ghCall, t corral.Target) Result {
	check := "scaleset " + t.ID
	var meta struct {
		InstalledVersion string `json:"installed_version"`
	}
	status, h, err := g.get(ctx, "meta", &meta)
	if err != nil || status != http.StatusOK {
		return warn(check, "", "mode scaleset: GET /meta failed (%d %v); the server version is not known", status, err)
	}
	v := strings.TrimSpace(meta.InstalledVersion)
	if v == "" {
		v = strings.TrimSpace(h.Get("X-GitHub-Enterprise-Version"))
	}
	switch {
	case v == "":
		return ok(check, "mode scaleset: no webhook needed; one runner scale set per pool (name: the pool's id, labels: the pool's labels)")
	case !github.ScaleSetLabelsKept(v):
		return warn(check, "give each pool one label, its id (jobs say runs-on: POOL ID), or upgrade to GHES "+github.MinMultiLabelScaleSetVersion+" or later",
			"mode scaleset on GHES %s: labels of a scale set beyond its name are dropped silently before %s", v, github.MinMultiLabelScaleSetVersion)
	}
	return ok(check, "mode scaleset on GHES %s: no webhook needed; multi-label scale sets kept; acquirejobs is used", v)
}

func splitScopes(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type ghHook struct {
	ID     int64 `json:"id"`
	Active bool  `json:"active"`
	Config struct {
		URL         string `json:"url"`
		ContentType string `json:"content_type"`
	} `json:"config"`
	Events []string `json:"events"`
}

type ghDelivery struct {
	StatusCode int    `json:"status_code"`
	Status     string `json:"status"`
	Event      string `json:"event"`
}

// gitHubHooks finds the repository's or organization's webhooks that post
// to corral for t (URL ending in /webhooks/{id}) and reads their recent
// deliveries: answers 401 mean corral refused the signature, so the
// secret at GitHub differs from the target's webhook_secret.
func gitHubHooks(ctx context.Context, g *ghCall, t corral.Target, opt ForgeOptions) Result {
	check := "webhook " + t.ID
	var hooks []ghHook
	status, _, err := g.get(ctx, gitHubScopePath(t)+"/hooks?per_page=100", &hooks)
	switch {
	case err != nil:
		return warn(check, "", "cannot list webhooks: %v", err)
	case status == http.StatusForbidden || status == http.StatusNotFound:
		need := "admin:org_hook"
		if t.Scope == corral.ScopeRepo {
			need = "admin:repo_hook"
		}
		return warn(check, "to let doctor check the webhook, give the token scope "+need+" (read) — corral itself does not need it",
			"the token cannot list the %s's webhooks (%d); webhook not checked", t.Scope, status)
	case status != http.StatusOK:
		return warn(check, "", "listing webhooks answered %d; webhook not checked", status)
	}
	suffix := "/webhooks/" + t.ID
	var mine []ghHook
	for _, h := range hooks {
		u, err := url.Parse(h.Config.URL)
		if err == nil && strings.TrimSuffix(u.Path, "/") == suffix {
			mine = append(mine, h)
		}
	}
	if len(mine) == 0 {
		return fail(check, fmt.Sprintf("add a webhook on the %s posting workflow_job events to https://CORRAL%s with the target's webhook_secret (or use a GitHub App)", t.Scope, suffix),
			"no webhook of the %s %q posts to corral (…%s); jobs are found only by the periodic sweep", t.Scope, t.Path, suffix)
	}
	var problems []string
	refused, failed, total := 0, 0, 0
	for _, h := range mine {
		if !h.Active {
			problems = append(problems, fmt.Sprintf("hook %d is inactive", h.ID))
		}
		if len(h.Events) > 0 && !slices.Contains(h.Events, "workflow_job") && !slices.Contains(h.Events, "*") {
			problems = append(problems, fmt.Sprintf("hook %d does not send workflow_job", h.ID))
		}
		var ds []ghDelivery
		st, _, err := g.get(ctx, fmt.Sprintf("%s/hooks/%d/deliveries?per_page=%d", gitHubScopePath(t), h.ID, opt.Deliveries), &ds)
		if err != nil || st != http.StatusOK {
			problems = append(problems, fmt.Sprintf("hook %d: deliveries not readable (%d)", h.ID, st))
			continue
		}
		for _, d := range ds {
			total++
			switch {
			case d.StatusCode >= 200 && d.StatusCode < 300:
			case d.StatusCode == http.StatusUnauthorized:
				refused++
			default:
				failed++
			}
		}
	}
	switch {
	case refused > 0:
		return fail(check, "set the same secret in the webhook at the forge and in the target's webhook_secret",
			"%d of the last %d deliveries were refused 401 by corral: the webhook secret differs", refused, total)
	case failed > 0:
		return warn(check, "check that the forge reaches corral's listen address (firewall, TLS, proxy) and corral's log",
			"%d of the last %d deliveries failed (not answered 2xx)", failed, total)
	case len(problems) > 0:
		return warn(check, "edit the webhook at the forge", "%s", strings.Join(problems, "; "))
	}
	return ok(check, "%d webhook(s) post to …%s; last %d deliveries all accepted", len(mine), suffix, total)
}

// gitHubApp checks an App target through corral's own client (its JWT,
// installation token and runner listing, with the permission to fix when
// refused) and the clock on GET /meta. The App's webhook deliveries need
// the App's JWT and are not read here.
func gitHubApp(ctx context.Context, t corral.Target, opt ForgeOptions) []Result {
	cred := "credentials " + t.ID
	var out []Result
	g := &ghCall{c: opt.HTTPClient, base: gitHubBase(t), now: opt.Now}
	if _, _, err := g.get(ctx, "meta", nil); err != nil {
		return []Result{fail(cred, "check the target's url and that this host reaches the forge", "cannot reach %s: %v", g.base, err)}
	}
	c, err := github.NewClient(t, github.Options{HTTPClient: opt.HTTPClient})
	if err != nil {
		out = append(out, fail(cred, "correct the target", "%s", scrub(err.Error(), t.Token.Reveal())))
	} else if _, err := c.Probe(ctx); err != nil {
		out = append(out, fail(cred, "see the reason; the App's key, id, installation and permissions are set on GitHub's App settings page",
			"%s", scrub(err.Error(), t.Token.Reveal())))
	} else {
		out = append(out, ok(cred, "App %s: installation token minted; runners listed", t.Settings[github.SettingAppID]))
	}
	out = append(out, Clock("clock "+t.ID, g.first, g.sentAt, g.gotAt))
	out = append(out, ok("webhook "+t.ID, "GitHub App: the App's webhook is set on the App; corral redelivers its failed deliveries itself (not read by doctor)"))
	return out
}

// giteaTarget checks a Gitea or Forgejo token (GET /api/v1/user), the
// clock, and the runner listing corral's sweeps make (which needs the
// token's scope). Gitea's API does not show a token's scopes, nor
// deliveries of organization webhooks to a token.
func giteaTarget(ctx context.Context, t corral.Target, opt ForgeOptions) []Result {
	cred := "credentials " + t.ID
	base := strings.TrimSuffix(strings.TrimSpace(t.URL), "/")
	base = strings.TrimSuffix(base, "/api/v1")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/user", nil)
	if err != nil {
		return []Result{fail(cred, "correct the target's url", "url: %v", err)}
	}
	req.Header.Set("Authorization", "token "+t.Token.Reveal())
	sent := opt.Now()
	resp, err := opt.HTTPClient.Do(req)
	if err != nil {
		return []Result{fail(cred, "check the target's url and that this host reaches the forge", "cannot reach %s: %s", base, scrub(err.Error(), t.Token.Reveal()))}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	got := opt.Now()
	var out []Result
	switch resp.StatusCode {
	case http.StatusOK:
		c, err := gitea.NewClient(t, gitea.Options{HTTPClient: opt.HTTPClient})
		if err == nil {
			_, err = c.Runners(ctx)
		}
		if err != nil {
			out = append(out, fail(cred, "give the token scope write:repository (repository targets) or write:organization (organization targets)",
				"token accepted, but listing runners failed: %s", scrub(err.Error(), t.Token.Reveal())))
		} else {
			out = append(out, ok(cred, "token accepted; runners listed (Gitea's API does not show a token's scopes)"))
		}
	case http.StatusUnauthorized, http.StatusForbidden:
		out = append(out, fail(cred, "create a new access token and put it in the target's token (env:NAME or file:PATH)",
			"the forge refused the token (%d): it is wrong, expired or lacks scope read:user", resp.StatusCode))
	default:
		out = append(out, fail(cred, "check the target's url", "GET /api/v1/user answered %d", resp.StatusCode))
	}
	out = append(out, Clock("clock "+t.ID, resp.Header, sent, got))
	if resp.StatusCode == http.StatusOK {
		out = append(out, giteaPoll(ctx, t, opt))
	}
	return out
}

// giteaPoll says how the target's jobs reach corral; in a poll mode it
// polls once, as the poller would.
func giteaPoll(ctx context.Context, t corral.Target, opt ForgeOptions) Result {
	check := "jobs " + t.ID
	if !t.Polls() {
		return ok(check, "mode webhook: jobs come by webhook to …/webhooks/%s (the periodic sweep is the backstop)", t.ID)
	}
	c, err := gitea.NewClient(t, gitea.Options{HTTPClient: opt.HTTPClient})
	if err != nil {
		return fail(check, "correct the target", "%v", err)
	}
	jobs, _, err := c.PollJobs(ctx)
	if err != nil {
		return fail(check, "mode poll needs Gitea 1.25 or later (GET …/actions/jobs) and a token that reads the scope's Actions",
			"mode %s: listing the open jobs failed: %s", t.Mode, scrub(err.Error(), t.Token.Reveal()))
	}
	return ok(check, "mode %s: the open-jobs listing answers (%d waiting or running now); polled every %v, no webhook needed",
		t.Mode, len(jobs), t.EffectivePollInterval())
}
