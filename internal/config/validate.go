package config

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/route"
)

// Problem is one thing wrong with the config, at a line of the file or in
// an environment variable.
type Problem struct {
	File string // the config file's name, or "environment CORRAL_X"
	Line int    // 0 when unknown or from the environment
	Key  string // key path, e.g. pools[0].max_lifetime
	Msg  string
}

// String formats the problem as "file:line: key: message".
func (p Problem) String() string {
	s := p.File
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
	}
	if p.Key != "" {
		s += ": " + p.Key
	}
	return s + ": " + p.Msg
}

// ValidationError lists every problem of a config, in file order. It
// matches corral.ErrBadInput with errors.Is.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Is makes errors.Is(err, corral.ErrBadInput) true.
func (e *ValidationError) Is(target error) bool { return target == corral.ErrBadInput }

// Domain is the config in corral's types.
type Domain struct {
	Tenants []corral.Tenant
	Targets []corral.Target
	Pools   []corral.Pool
	// Providers are the provider instances declared (or implied by pools
	// that name a type), with their settings as JSON.
	Providers []corral.ProviderDef
	// Sizes is the full size-word table: route's defaults with the
	// config's sizes over them (pass it as route.Options.Sizes).
	Sizes map[string]corral.Flavor
	// DefaultArch is the canonical arch of jobs that name none (pass it
	// as route.Options.DefaultArch).
	DefaultArch string
}

// Validate reports every problem of the config at once (decoding problems
// found by Parse included) as a *ValidationError, or nil.
func (c *Config) Validate() error {
	_, probs := c.build()
	if len(probs) == 0 {
		return nil
	}
	return &ValidationError{Problems: probs}
}

// Domain converts the config into corral's types. It fails as Validate
// does.
func (c *Config) Domain() (Domain, error) {
	d, probs := c.build()
	if len(probs) > 0 {
		return Domain{}, &ValidationError{Problems: probs}
	}
	return d, nil
}

// builder converts and checks in one pass, so validation and conversion
// cannot disagree.
type builder struct {
	c        *Config
	src      *sources
	problems []Problem
	tenants  map[string]bool
	targets  map[string]string // target id -> tenant
}

// bad records a problem with key, unless decoding the key failed already
// (one problem per mistake).
func (b *builder) bad(key, format string, args ...any) {
	if b.src.failed[key] {
		return
	}
	b.problems = append(b.problems, b.src.at(key, fmt.Sprintf(format, args...)))
}

func (c *Config) build() (Domain, []Problem) {
	src := c.src
	if src == nil {
		name := cmp.Or(c.file, "config")
		src = newSources(name)
	}
	b := &builder{c: c, src: src, tenants: map[string]bool{}, targets: map[string]string{}}
	b.problems = append(b.problems, src.problems...)
	var d Domain
	b.top()
	d.DefaultArch = b.input()
	d.Tenants = b.buildTenants()
	d.Targets = b.buildTargets()
	d.Sizes = b.buildSizes()
	d.Pools = b.buildPools()
	if _, err := route.New(d.Pools, route.Options{Sizes: d.Sizes, DefaultArch: d.DefaultArch}); err != nil {
		b.routeProblems(err)
	}
	b.runners()
	d.Providers = b.buildProviders()
	slices.SortStableFunc(b.problems, func(x, y Problem) int {
		return cmp.Or(cmp.Compare(x.File, y.File), cmp.Compare(x.Line, y.Line))
	})
	return d, b.problems
}

var (
	slugRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62})$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	prefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$`)
)

const slugMsg = "want lowercase letters, digits and dashes (at most 63)"

func (b *builder) runners() {
	managed := false
	for i, p := range b.c.Pools {
		switch p.Runner {
		case "":
		case "managed":
			managed = true
		default:
			b.bad(fmt.Sprintf("pools[%d].runner", i), "want \"managed\" or nothing, got %q", p.Runner)
		}
	}
	rn := b.c.Runners
	for i, k := range rn.Kinds {
		if !slices.Contains([]string{"github", "gitea", "forgejo"}, k) {
			b.bad(fmt.Sprintf("runners.kinds[%d]", i), "want github, gitea or forgejo, got %q", k)
		}
	}
	if managed && len(rn.Kinds) == 0 {
		b.bad("runners.kinds", "a pool has runner: managed, so name the runner kinds to keep (github, gitea, forgejo)")
	}
	if rn.Keep < 0 {
		b.bad("runners.keep", "want 0 (default 3) or more")
	}
	if rn.MirrorURL != "" {
		b.checkURL("runners.mirror_url", rn.MirrorURL)
	}
}

func (b *builder) top() {
	c := b.c
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		b.bad("listen", "want host:port, got %q", c.Listen)
	}
	if c.APIListen != "" {
		if _, _, err := net.SplitHostPort(c.APIListen); err != nil {
			b.bad("api_listen", "want host:port, got %q", c.APIListen)
		} else if c.APIListen == c.Listen {
			b.bad("api_listen", "is listen's address too (%s): give it another one, or leave it out to serve both on listen", c.Listen)
		}
	}
	b.tlsPair("tls", c.TLSCert, c.TLSKey)
	b.tlsPair("api_tls", c.APITLSCert, c.APITLSKey)
	if c.APIListen == "" && (c.APITLSCert != "" || c.APITLSKey != "") {
		b.bad("api_tls_cert", "is set but api_listen is not: the API is served on listen (use tls_cert and tls_key)")
	}
	if c.DataDir == "" {
		b.bad("data_dir", "required")
	}
	if c.InstancesDir != "" && !filepath.IsAbs(c.InstancesDir) {
		b.bad("instances_dir", "want an absolute path, got %q", c.InstancesDir)
	}
	if u := c.InstanceURL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			b.bad("instance_url", "want http(s)://host[:port] as instances reach corral, got %q", u)
		}
	}
	if c.InstanceDiskMB < 0 {
		b.bad("instance_disk_mb", "want 0 (no cap) or a positive size in MiB, got %d", c.InstanceDiskMB)
	}
	// Never echo the store: a DSN may carry a password.
	if s := c.Store.Reveal(); s != "sqlite" && !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
		b.bad("store", `want "sqlite" or a postgres:// DSN`)
	}
	if c.ControllerID != "" && !nameRE.MatchString(c.ControllerID) {
		b.bad("controller_id", "want letters, digits, '.', '_' and '-' (at most 63)")
	}
	if c.MaxInstances < 0 {
		b.bad("max_instances", "must not be negative")
	}
	if c.ReconcileInterval <= 0 {
		b.bad("reconcile_interval", "must be positive")
	}
	if c.LeaseTTL < 0 || (c.LeaseTTL > 0 && c.LeaseTTL < 1e9) { // 0: the default; else at least one second
		b.bad("lease_ttl", "must be at least 1s")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		b.bad("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		b.bad("log.format", "want text or json, got %q", c.Log.Format)
	}
}

func (b *builder) buildTenants() []corral.Tenant {
	var out []corral.Tenant
	for i, t := range b.c.Tenants {
		k := fmt.Sprintf("tenants[%d]", i)
		switch {
		case !slugRE.MatchString(t.ID):
			b.bad(k+".id", "%s", slugMsg)
		case b.tenants[t.ID]:
			b.bad(k+".id", "duplicate tenant id %q", t.ID)
		}
		b.tenants[t.ID] = true
		if t.MaxInstances < 0 {
			b.bad(k+".max_instances", "must not be negative")
		}
		out = append(out, corral.Tenant{ID: t.ID, MaxInstances: t.MaxInstances})
	}
	return out
}

// scopes lists the scopes each forge family has.
var scopes = map[corral.TargetKind][]corral.Scope{
	corral.KindGitHub:  {corral.ScopeRepo, corral.ScopeOrg, corral.ScopeEnterprise},
	corral.KindGitea:   {corral.ScopeRepo, corral.ScopeOrg, corral.ScopeUser, corral.ScopeInstance},
	corral.KindForgejo: {corral.ScopeRepo, corral.ScopeOrg, corral.ScopeUser, corral.ScopeInstance},
}

func (b *builder) buildTargets() []corral.Target {
	var out []corral.Target
	appSecret := map[string]corral.Secret{} // GitHub App id -> its webhook secret
	for i, t := range b.c.Targets {
		k := fmt.Sprintf("targets[%d]", i)
		switch _, dup := b.targets[t.ID]; {
		case !slugRE.MatchString(t.ID):
			b.bad(k+".id", "%s", slugMsg)
		case dup:
			b.bad(k+".id", "duplicate target id %q", t.ID)
		}
		b.targets[t.ID] = t.Tenant
		if !b.tenants[t.Tenant] {
			b.bad(k+".tenant", "unknown tenant %q", t.Tenant)
		}
		kind, scope := corral.TargetKind(t.Kind), corral.Scope(t.Scope)
		allowed, ok := scopes[kind]
		if !ok && t.Kind == "sim" {
			b.bad(k+".kind", "the simulated forge is gone from serve: for a local demo run `corral dev` (the GitHub adapter against a stand-in GitHub); serve github, gitea or forgejo")
		} else if !ok {
			b.bad(k+".kind", "want github, gitea or forgejo, got %q", t.Kind)
		} else if !slices.Contains(allowed, scope) {
			b.bad(k+".scope", "want one of %v for kind %s, got %q", allowed, kind, t.Scope)
		}
		switch scope {
		case corral.ScopeRepo:
			if o, n, ok := strings.Cut(t.Path, "/"); !ok || o == "" || n == "" || strings.Contains(n, "/") {
				b.bad(k+".path", "want owner/name for scope repo, got %q", t.Path)
			}
		case corral.ScopeOrg, corral.ScopeEnterprise:
			if t.Path == "" || strings.Contains(t.Path, "/") {
				b.bad(k+".path", "want the %s's name for scope %s, got %q", scope, scope, t.Path)
			}
		}
		b.checkURL(k+".url", t.URL)
		mode := b.targetMode(k, kind, t)
		hasSecret := t.WebhookSecret != "" || b.src.has(k+".webhook_secret")
		switch {
		case mode == corral.ModePoll && hasSecret:
			b.bad(k+".webhook_secret", "set, but mode poll takes no webhook: drop it, or use mode webhook+poll")
		case mode == corral.ModeScaleSet && hasSecret:
			b.bad(k+".webhook_secret", "set, but mode scaleset takes no webhook: drop it (the scale-set listener learns of every job)")
		case mode == corral.ModeScaleSet:
		case mode == corral.ModeOneJob && hasSecret:
			b.bad(k+".webhook_secret", "set, but mode one-job takes no webhook (its jobs come by polling): drop it")
		case mode != corral.ModePoll && mode != corral.ModeOneJob && !hasSecret:
			b.bad(k+".webhook_secret", "required for kind %s in mode %s (or use mode poll on gitea/forgejo: no webhook needed)", kind, modeName(mode))
		}
		if t.Token == "" && !b.src.has(k+".token") {
			b.bad(k+".token", "required for kind %s", kind)
		}
		if app := t.Settings["app_id"]; kind == corral.KindGitHub && app != "" {
			// One App, one webhook URL (/webhooks/app/{id}), one secret.
			if prev, seen := appSecret[app]; seen && prev != t.WebhookSecret {
				b.bad(k+".webhook_secret", "differs from another target of GitHub App %s: an App has one webhook secret", app)
			}
			appSecret[app] = t.WebhookSecret
		}
		if !prefixRE.MatchString(t.RunnerPrefix) {
			b.bad(k+".runner_prefix", "want letters, digits, '.', '_' and '-' (at most 40)")
		}
		out = append(out, corral.Target{
			ID: t.ID, TenantID: t.Tenant, Kind: kind, Scope: scope, Path: t.Path, URL: t.URL,
			WebhookSecret: t.WebhookSecret, Token: t.Token, RunnerPrefix: t.RunnerPrefix,
			Settings: maps.Clone(t.Settings), Mode: mode, PollInterval: t.PollInterval,
		})
	}
	return out
}

// Bounds of a target's poll_interval.
const (
	minPollInterval = 500 * time.Millisecond
	maxPollInterval = 10 * time.Minute
)

// targetMode checks a target's mode and poll_interval and returns its mode.
func (b *builder) targetMode(k string, kind corral.TargetKind, t Target) corral.TargetMode {
	var mode corral.TargetMode
	switch t.Mode {
	case "", "webhook":
		mode = corral.ModeWebhook
	case string(corral.ModePoll), string(corral.ModeWebhookPoll):
		mode = corral.TargetMode(t.Mode)
		if kind == corral.KindGitHub {
			b.bad(k+".mode", "%s is for gitea and forgejo targets; a github target takes webhooks (mode webhook) or listens to a runner scale set (mode scaleset)", t.Mode)
		}
	case string(corral.ModeScaleSet):
		mode = corral.ModeScaleSet
		if kind != corral.KindGitHub {
			b.bad(k+".mode", "scaleset is GitHub's runner scale-set API, for github targets; a %s target polls (mode poll)", kind)
		}
	case string(corral.ModeOneJob):
		mode = corral.ModeOneJob
		if kind != corral.KindForgejo {
			b.bad(k+".mode", "one-job is for forgejo targets (Forgejo ≥ 15, forgejo-runner ≥ 12.8), not kind %s", kind)
		}
	case "onejob", "one_job":
		b.bad(k+".mode", "unknown mode %q: did you mean one-job (as forgejo-runner's one-job command)?", t.Mode)
	default:
		b.bad(k+".mode", "want webhook, poll, webhook+poll, scaleset or one-job, got %q", t.Mode)
	}
	switch {
	case t.PollInterval != 0 && !(corral.Target{Mode: mode}).Polls():
		b.bad(k+".poll_interval", "set, but mode %s does not poll (use mode poll, webhook+poll or one-job)", modeName(mode))
	case t.PollInterval != 0 && (t.PollInterval < minPollInterval || t.PollInterval > maxPollInterval):
		b.bad(k+".poll_interval", "want between %v and %v, got %v", minPollInterval, maxPollInterval, t.PollInterval)
	}
	return mode
}

func modeName(m corral.TargetMode) string {
	if m == corral.ModeWebhook {
		return "webhook"
	}
	return string(m)
}

func (b *builder) checkURL(key, s string) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		b.bad(key, "required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		b.bad(key, "want an http:// or https:// URL")
	case u.User != nil:
		b.bad(key, "must not carry credentials (use token)") // and never echo them
	}
}

// routeProblems turns route.New's complaints into problems at the pools'
// keys.
func (b *builder) routeProblems(err error) {
	var es route.Errors
	if !errors.As(err, &es) {
		b.bad("pools", "%v", err)
		return
	}
	for _, e := range es {
		if e.Index < 0 {
			b.bad(e.Field, "%s", e.Msg)
			continue
		}
		b.bad(fmt.Sprintf("pools[%d].%s", e.Index, e.Field), "%s", e.Msg)
	}
}

// tlsPair checks a certificate and key: both or neither, and loadable.
func (b *builder) tlsPair(prefix, cert, key string) {
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		b.bad(prefix+"_cert", "%s_cert and %s_key go together: give both or neither", prefix, prefix)
	default:
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			b.bad(prefix+"_cert", "cannot load the certificate and key: %v", err)
		}
	}
}

// CheckTarget applies the config file's defaults and checks to one target
// written through the API: the same rules as a target of the file, with
// each problem named by its key (kind, path, webhook_secret...). tenants
// are the known tenants; others are the other targets (for the id and the
// GitHub App's one webhook secret).
func CheckTarget(t Target, tenants []string, others []corral.Target) (corral.Target, error) {
	c := &Config{Targets: []Target{t}}
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	ct := &c.Targets[0]
	setStr(&ct.Tenant, DefaultTenant)
	if ct.Kind == string(corral.KindGitHub) {
		setStr(&ct.URL, "https://api.github.com")
	}
	if ct.ID != "" {
		setStr(&ct.RunnerPrefix, "corral-"+ct.ID)
	}
	b := &builder{c: c, src: newSources("request body"), tenants: map[string]bool{}, targets: map[string]string{}}
	for _, id := range tenants {
		b.tenants[id] = true
	}
	for _, o := range others {
		b.targets[o.ID] = o.TenantID
		if app := o.Settings["app_id"]; o.Kind == corral.KindGitHub && app != "" && app == ct.Settings["app_id"] &&
			ct.Kind == string(corral.KindGitHub) && o.WebhookSecret != ct.WebhookSecret {
			b.bad("webhook_secret", "differs from target %s of the same GitHub App %s: an App has one webhook secret", o.ID, app)
		}
	}
	out := b.buildTargets()
	if len(b.problems) > 0 {
		for i := range b.problems {
			b.problems[i].Key = strings.TrimPrefix(b.problems[i].Key, "targets[0].")
		}
		return corral.Target{}, &ValidationError{Problems: b.problems}
	}
	return out[0], nil
}

// CheckTenant applies the config file's checks to one tenant written
// through the API, each problem named by its key (id, max_instances).
func CheckTenant(t Tenant) (corral.Tenant, error) {
	b := &builder{c: &Config{Tenants: []Tenant{t}}, src: newSources("request body"), tenants: map[string]bool{}, targets: map[string]string{}}
	out := b.buildTenants()
	if len(b.problems) > 0 {
		for i := range b.problems {
			b.problems[i].Key = strings.TrimPrefix(b.problems[i].Key, "tenants[0].")
		}
		return corral.Tenant{}, &ValidationError{Problems: b.problems}
	}
	return out[0], nil
}
