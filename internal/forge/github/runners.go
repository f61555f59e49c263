package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	gh "github.com/google/go-github/v75/github"

	"github.com/corral-ci/corral/internal/corral"
)

// Environment of a runner's bootstrap. The actions runner reads each
// option of config.sh and run.sh from ACTIONS_RUNNER_INPUT_<OPTION> when
// it is not in the arguments, so credentials never appear in an argument
// list.
const (
	EnvJITConfig   = "ACTIONS_RUNNER_INPUT_JITCONFIG"   // run.sh --jitconfig
	EnvURL         = "ACTIONS_RUNNER_INPUT_URL"         // config.sh --url
	EnvToken       = "ACTIONS_RUNNER_INPUT_TOKEN"       // config.sh --token (registration token)
	EnvName        = "ACTIONS_RUNNER_INPUT_NAME"        // config.sh --name
	EnvLabels      = "ACTIONS_RUNNER_INPUT_LABELS"      // config.sh --labels a,b
	EnvRunnerGroup = "ACTIONS_RUNNER_INPUT_RUNNERGROUP" // config.sh --runnergroup NAME
	EnvWork        = "ACTIONS_RUNNER_INPUT_WORK"        // config.sh --work
)

// JITCommand starts a just-in-time runner: run.sh reads the encoded JIT
// config from EnvJITConfig.
var JITCommand = []string{"run.sh"}

// FallbackScriptName is the program a runner image must carry, next to
// config.sh and run.sh, for GHES releases without JIT (before 3.10); its
// content is FallbackScript. Such a bootstrap's Command is
// []string{FallbackScriptName} and its Env carries EnvURL, EnvToken,
// EnvName, EnvLabels, EnvWork and, when the target sets runner_group,
// EnvRunnerGroup.
const FallbackScriptName = "corral-config-and-run.sh"

// FallbackScript registers an ephemeral runner from the environment, then
// runs it for one job. The registration token stays in the environment of
// config.sh and is unset before run.sh (and so the job) starts.
const FallbackScript = `#!/bin/sh
# corral: register an ephemeral GitHub Actions runner from ACTIONS_RUNNER_INPUT_*
# (url, token, name, labels, work, runnergroup), then run one job.
set -eu
d=$(dirname "$0")
"$d/config.sh" --unattended --ephemeral --replace
unset ACTIONS_RUNNER_INPUT_TOKEN
exec "$d/run.sh"
`

// MintRunner registers a just-in-time runner with exactly spec's labels and
// returns its bootstrap: Command JITCommand, Env {EnvJITConfig: config}.
// One API call on the happy path. A 409 (the name is left over from a crash
// or a retry) is resolved by finding the runner by name, removing it if it
// is not busy and minting again; a busy one gives ErrConflict. Where JIT is
// missing (GHES before 3.10, or a 404 on generate-jitconfig) it falls back
// to a registration token and FallbackScriptName.
func (c *Client) MintRunner(ctx context.Context, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	ctx = withPriority(ctx, priorityUrgent)
	if spec.Name == "" || len(spec.Labels) == 0 || len(spec.Labels) > 100 {
		return corral.Bootstrap{}, fmt.Errorf("github mint [%s]: a runner needs a name and 1 to 100 labels: %w", c.t.ID, corral.ErrBadInput)
	}
	if err := c.ensureProbe(ctx); err != nil {
		return corral.Bootstrap{}, err
	}
	if !c.jit() {
		return c.mintFallback(ctx, spec)
	}
	b, err := c.mintJIT(ctx, spec)
	switch {
	case errors.Is(err, corral.ErrConflict):
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
		return c.mintJIT(ctx, spec)
	case errors.Is(err, corral.ErrNotFound):
		// Older GHES has no generate-jitconfig. If registration tokens
		// work, the scope exists and JIT is what is missing.
		fb, ferr := c.mintFallback(ctx, spec)
		if ferr != nil {
			return corral.Bootstrap{}, err
		}
		c.probeMu.Lock()
		c.noJIT = true
		c.probeMu.Unlock()
		c.log.Warn("generate-jitconfig is missing on this forge; using registration tokens and config.sh --ephemeral")
		return fb, nil
	}
	return b, err
}

func (c *Client) workFolder(spec corral.RunnerSpec) string {
	switch {
	case spec.WorkFolder != "":
		return spec.WorkFolder
	case c.work != "":
		return c.work
	}
	return "_work"
}

func (c *Client) mintJIT(ctx context.Context, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	work := c.workFolder(spec)
	req := &gh.GenerateJITConfigRequest{Name: spec.Name, RunnerGroupID: c.group, Labels: spec.Labels, WorkFolder: &work}
	var cfg *gh.JITRunnerConfig
	var resp *gh.Response
	var err error
	switch c.t.Scope {
	case corral.ScopeRepo:
		cfg, resp, err = c.gh.Actions.GenerateRepoJITConfig(ctx, c.owner, c.repo, req)
	case corral.ScopeOrg:
		cfg, resp, err = c.gh.Actions.GenerateOrgJITConfig(ctx, c.owner, req)
	default:
		cfg, resp, err = c.gh.Enterprise.GenerateEnterpriseJITConfig(ctx, c.owner, req)
	}
	if err != nil {
		return corral.Bootstrap{}, c.callErr("generate-jitconfig", resp, err)
	}
	if cfg.GetEncodedJITConfig() == "" {
		return corral.Bootstrap{}, c.malformed("generate-jitconfig", http.MethodPost, "no encoded_jit_config")
	}
	return corral.Bootstrap{
		RunnerID: cfg.GetRunner().GetID(),
		Command:  append([]string(nil), JITCommand...),
		Env:      map[string]corral.Secret{EnvJITConfig: corral.Secret(cfg.GetEncodedJITConfig())},
	}, nil
}

// mintFallback asks for a registration token (valid 1 h) and returns a
// bootstrap that registers an ephemeral runner with it (FallbackScript).
// RunnerID is 0: the runner registers itself; RemoveRunner finds it by name.
func (c *Client) mintFallback(ctx context.Context, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	tok, err := c.RegistrationToken(ctx)
	if err != nil {
		return corral.Bootstrap{}, err
	}
	env := map[string]corral.Secret{
		EnvURL:    corral.Secret(c.webURL()),
		EnvToken:  tok,
		EnvName:   corral.Secret(spec.Name),
		EnvLabels: corral.Secret(strings.Join(spec.Labels, ",")),
		EnvWork:   corral.Secret(c.workFolder(spec)),
	}
	if g := c.t.Settings[SettingRunnerGroup]; g != "" && c.t.Scope != corral.ScopeRepo {
		env[EnvRunnerGroup] = corral.Secret(g)
	}
	return corral.Bootstrap{Command: []string{FallbackScriptName}, Env: env}, nil
}

// RegistrationToken creates a runner registration token of the target's
// scope (valid 1 h): the registration fallback and the scale-set
// client's admin exchange use it.
func (c *Client) RegistrationToken(ctx context.Context) (corral.Secret, error) {
	var tok *gh.RegistrationToken
	var resp *gh.Response
	var err error
	switch c.t.Scope {
	case corral.ScopeRepo:
		tok, resp, err = c.gh.Actions.CreateRegistrationToken(ctx, c.owner, c.repo)
	case corral.ScopeOrg:
		tok, resp, err = c.gh.Actions.CreateOrganizationRegistrationToken(ctx, c.owner)
	default:
		tok, resp, err = c.gh.Enterprise.CreateRegistrationToken(ctx, c.owner)
	}
	if err != nil {
		return "", c.callErr("registration-token", resp, err)
	}
	if tok.GetToken() == "" {
		return "", c.malformed("registration-token", http.MethodPost, "no token")
	}
	return corral.Secret(tok.GetToken()), nil
}

// WebURL is the web address of the target's scope (config.sh --url; the
// scale-set admin exchange's url).
func (c *Client) WebURL() string { return c.webURL() }

// APIBase is the REST API's base URL, ending in a slash.
func (c *Client) APIBase() string { return c.gh.BaseURL.String() }

// Runners lists the target's runners whose names start with the target's
// runner prefix (all pages).
func (c *Client) Runners(ctx context.Context) ([]corral.Runner, error) {
	ctx = withPriority(ctx, prioritySweep)
	if err := c.ensureProbe(ctx); err != nil {
		return nil, err
	}
	rs, err := c.listRunners(ctx, "")
	if err != nil {
		return nil, err
	}
	out := rs[:0]
	for _, r := range rs {
		if strings.HasPrefix(r.Name, c.t.RunnerPrefix) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (c *Client) runnerByName(ctx context.Context, name string) (corral.Runner, error) {
	rs, err := c.listRunners(ctx, name)
	if err != nil {
		return corral.Runner{}, err
	}
	for _, r := range rs {
		if r.Name == name {
			return r, nil
		}
	}
	return corral.Runner{}, fmt.Errorf("runner %q of %s: %w", name, c.t.ID, corral.ErrNotFound)
}

// maxPages bounds a listing, in case of a Link loop. A listing cut short
// would read as jobs or runners gone, so it fails instead.
const maxPages = 200

func (c *Client) listRunners(ctx context.Context, name string) ([]corral.Runner, error) {
	opt := &gh.ListRunnersOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	if name != "" {
		opt.Name = &name
	}
	var out []corral.Runner
	for n := 0; ; n++ {
		if n == maxPages {
			return nil, c.malformed("list-runners", http.MethodGet, fmt.Sprintf("more than %d pages", maxPages))
		}
		var page *gh.Runners
		var resp *gh.Response
		var err error
		switch c.t.Scope {
		case corral.ScopeRepo:
			page, resp, err = c.gh.Actions.ListRunners(ctx, c.owner, c.repo, opt)
		case corral.ScopeOrg:
			page, resp, err = c.gh.Actions.ListOrganizationRunners(ctx, c.owner, opt)
		default:
			page, resp, err = c.gh.Enterprise.ListRunners(ctx, c.owner, opt)
		}
		if err != nil {
			return nil, c.callErr("list-runners", resp, err)
		}
		for _, r := range page.Runners {
			cr := corral.Runner{ID: r.GetID(), Name: r.GetName(), Online: r.GetStatus() == "online", Busy: r.GetBusy()}
			for _, l := range r.Labels {
				cr.Labels = append(cr.Labels, l.GetName())
			}
			out = append(out, cr)
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opt.Page = resp.NextPage
	}
}

// RemoveRunner removes a registration: nil if it is already gone, ErrBusy
// (wrapped) if it runs a job. A Runner without ID is looked up by name.
func (c *Client) RemoveRunner(ctx context.Context, r corral.Runner) error {
	ctx = withPriority(ctx, priorityUrgent)
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
	var resp *gh.Response
	var err error
	switch c.t.Scope {
	case corral.ScopeRepo:
		resp, err = c.gh.Actions.RemoveRunner(ctx, c.owner, c.repo, r.ID)
	case corral.ScopeOrg:
		resp, err = c.gh.Actions.RemoveOrganizationRunner(ctx, c.owner, r.ID)
	default:
		resp, err = c.gh.Enterprise.RemoveRunner(ctx, c.owner, r.ID)
	}
	if err != nil {
		err = c.callErr("remove-runner", resp, err)
		if errors.Is(err, corral.ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}
