// Package config reads corral's YAML config file: it decodes it with line
// numbers, refuses unknown keys, applies CORRAL_* environment overrides and
// defaults, resolves secrets given as env:NAME or file:PATH, validates
// everything at once and converts the result into corral's domain types.
//
// example.yaml, in this directory, documents every key.
package config

import (
	_ "embed"
	"fmt"
	"os"
	"strings"
	"time"

	_ "time/tzdata" // schedules load their time zone even on a bare image

	"gopkg.in/yaml.v3"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/secretbox"
)

// Example is example.yaml: every key, with comments.
//
//go:embed example.yaml
var Example string

// Defaults of keys left out.
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultDataDir           = "./.data"
	DefaultStore             = "sqlite"
	DefaultReconcileInterval = 30 * time.Second
	DefaultLeaseTTL          = 15 * time.Second
	DefaultBootTimeout       = 10 * time.Minute
	DefaultMaxJobRuntime     = 6 * time.Hour
	DefaultIdleTimeout       = 10 * time.Minute
	DefaultMaxLifetime       = 12 * time.Hour
	DefaultTenant            = "default"
)

// Config is the config file as written, after environment overrides,
// defaults and secret resolution. Capacity words, arch names, schedules and
// headroom stay in their written form; Domain converts them.
type Config struct {
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey (PEM files) serve listen over TLS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// APIListen, when set, serves the API and /metrics on an address of
	// their own (keep it private); listen then serves only webhooks,
	// runner downloads and health. Empty: listen serves everything.
	APIListen string `yaml:"api_listen"`
	// APITLSCert and APITLSKey serve api_listen over TLS.
	APITLSCert string `yaml:"api_tls_cert"`
	APITLSKey  string `yaml:"api_tls_key"`
	DataDir    string `yaml:"data_dir"`
	// InstancesDir holds the process provider's instances; empty:
	// data_dir/instances. Each instance is a tmpfs of its own there
	// (when corral runs as root), so a job never fills data_dir's disk.
	InstancesDir string `yaml:"instances_dir"`
	// InstanceDiskMB caps the tmpfs of each process instance (the pool's
	// disk, or 4096 MiB when it names none); 0: no cap.
	InstanceDiskMB int `yaml:"instance_disk_mb"`
	// InstanceURL is corral's public listener as instances reach it, e.g.
	// http://10.0.0.1:8080: the instances of garm providers fetch their
	// runner credential there (/api/v1/metadata). Empty: the scheme and
	// host of runners.public_url; with neither, garm providers cannot
	// create.
	InstanceURL string `yaml:"instance_url"`
	// Store is "sqlite" or a postgres:// DSN. It may hold a password, so
	// it is a Secret (and may be given as env:NAME or file:PATH).
	Store             corral.Secret `yaml:"store"`
	ControllerID      string        `yaml:"controller_id"`
	MaxInstances      int           `yaml:"max_instances"`
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// LeaseTTL is the leader lease's length with several replicas on
	// PostgreSQL: a crashed leader is replaced within about this time.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	Log      Log           `yaml:"log"`
	Tenants  []Tenant      `yaml:"tenants"`
	Targets  []Target      `yaml:"targets"`
	// Sizes overrides or adds size words (word: capacity word).
	Sizes map[string]string `yaml:"sizes"`
	Pools []Pool            `yaml:"pools"`
	// Providers declares the named provider instances pools name (see
	// Provider; package provider holds the types).
	Providers []Provider `yaml:"providers"`
	// Runners configures corral's cache of runner releases.
	Runners Runners `yaml:"runners"`
	// DefaultArch is the arch of jobs that name none (default x64): only
	// pools of that arch, or with accept_any_arch, take them.
	DefaultArch string `yaml:"default_arch"`
	// AllowedHosts, when not empty, is the only HTTP Host names corral
	// answers to (against DNS rebinding); others get 421.
	AllowedHosts []string `yaml:"allowed_hosts"`

	// Warnings is advice that is not an error, such as a literal secret,
	// each as "file:line: key: message".
	Warnings []string `yaml:"-"`

	file string
	src  *sources
}

// Runners configures the runner-release cache that pools with
// `runner: managed` draw from.
type Runners struct {
	Kinds           []string      `yaml:"kinds"`            // github, gitea, forgejo
	MirrorURL       string        `yaml:"mirror_url"`       // an index for air-gapped sites; empty: the projects' releases
	Keep            int           `yaml:"keep"`             // versions kept per platform (default 3)
	RefreshInterval time.Duration `yaml:"refresh_interval"` // default 6h
	PublicURL       string        `yaml:"public_url"`       // where machines download releases, e.g. http://corral:8080/runners/
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Tenant owns targets and pools.
type Tenant struct {
	ID           string `yaml:"id"`
	MaxInstances int    `yaml:"max_instances"`
}

// Target is one scope on a forge.
type Target struct {
	ID            string            `yaml:"id"`
	Tenant        string            `yaml:"tenant"`
	Kind          string            `yaml:"kind"`
	Scope         string            `yaml:"scope"`
	Path          string            `yaml:"path"`
	URL           string            `yaml:"url"`
	WebhookSecret corral.Secret     `yaml:"webhook_secret"`
	Token         corral.Secret     `yaml:"token"`
	RunnerPrefix  string            `yaml:"runner_prefix"`
	Settings      map[string]string `yaml:"settings"`
	// Mode is webhook (default), poll or webhook+poll (Gitea/Forgejo).
	Mode         string        `yaml:"mode"`
	PollInterval time.Duration `yaml:"poll_interval"`
}

// Pool is a routing rule plus capacity.
type Pool struct {
	ID            string            `yaml:"id"`
	Tenant        string            `yaml:"tenant"`
	Targets       []string          `yaml:"targets"`
	Labels        []string          `yaml:"labels"`
	Provider      string            `yaml:"provider"`
	Image         string            `yaml:"image"`
	Flavor        string            `yaml:"flavor"` // capacity word
	Arch          string            `yaml:"arch"`
	MaxFlavor     string            `yaml:"max_flavor"` // capacity word; empty = no cap
	Sizes         map[string]string `yaml:"sizes"`      // this pool's size words
	Priority      int               `yaml:"priority"`
	MaxInstances  int               `yaml:"max_instances"`
	MinIdle       int               `yaml:"min_idle"`
	Concurrency   int               `yaml:"concurrency"` // provider calls at once; 0 = 8
	Schedules     []Schedule        `yaml:"schedules"`
	Headroom      string            `yaml:"headroom"` // "2" or "25%"
	BootTimeout   time.Duration     `yaml:"boot_timeout"`
	MaxJobRuntime time.Duration     `yaml:"max_job_runtime"`
	IdleTimeout   time.Duration     `yaml:"idle_timeout"`
	MaxLifetime   time.Duration     `yaml:"max_lifetime"`
	// Runner "managed": instances get their runner from corral's cache.
	Runner string `yaml:"runner"`
	// Options are options for the pool's provider type, decoded by the
	// type's pool-options struct into ProviderOptions.
	Options         *yaml.Node           `yaml:"options"`
	ProviderOptions provider.PoolOptions `yaml:"-"`
	// DockerInDocker is the deprecated spelling of options:
	// {docker_in_docker: true}.
	DockerInDocker bool `yaml:"docker_in_docker"`
	// AcceptAnyArch: the pool also takes jobs that name no arch when its
	// arch is not default_arch.
	AcceptAnyArch bool `yaml:"accept_any_arch"`
	// PricePerMinute is the cost of one runner minute in this pool, for
	// the usage report; 0 = none.
	PricePerMinute float64 `yaml:"price_per_minute"`
}

// Schedule sets a pool's min idle during a weekly time window.
type Schedule struct {
	Days     []string `yaml:"days"` // mon..sun; empty = every day
	From     string   `yaml:"from"` // "08:00"
	To       string   `yaml:"to"`   // "18:00"; to <= from wraps past midnight
	Timezone string   `yaml:"timezone"`
	MinIdle  int      `yaml:"min_idle"`
}

// Load reads and parses the config file at path. getenv looks up
// environment variables (os.Getenv in production, a map in tests).
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, getenv)
}

// Parse decodes a config file named name (used in messages and to resolve
// relative file: secrets), applies environment overrides and defaults,
// resolves secrets and validates. On problems it returns the Config as far
// as it was read together with a *ValidationError listing every problem.
func Parse(name string, data []byte, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	c := &Config{file: name, src: newSources(name)}
	d := &decoder{file: name, src: c.src, getenv: getenv, warn: &c.Warnings}
	d.decodeFile(data, c)
	c.decodeProviders(d)
	c.applyEnv(d)
	c.applyDefaults()
	c.resolveSealed(d)
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// envOverrides maps environment variables to the top-level keys they set.
var envOverrides = []struct{ env, key string }{
	{"CORRAL_LISTEN", "listen"},
	{"CORRAL_API_LISTEN", "api_listen"},
	{"CORRAL_DATA_DIR", "data_dir"},
	{"CORRAL_STORE", "store"},
	{"CORRAL_CONTROLLER_ID", "controller_id"},
	{"CORRAL_LOG_LEVEL", "log.level"},
	{"CORRAL_MAX_INSTANCES", "max_instances"},
}

// applyEnv sets the keys of the CORRAL_* variables that are set; problems
// name the variable instead of a line.
func (c *Config) applyEnv(d *decoder) {
	for _, o := range envOverrides {
		v := d.getenv(o.env)
		if v == "" {
			continue
		}
		c.src.fromEnv(o.key, o.env)
		switch o.key {
		case "listen":
			c.Listen = v
		case "api_listen":
			c.APIListen = v
		case "data_dir":
			c.DataDir = v
		case "store":
			c.Store = d.secret(v, o.key, false)
		case "controller_id":
			c.ControllerID = v
		case "log.level":
			c.Log.Level = v
		case "max_instances":
			if n, ok := d.atoi(v, o.key); ok {
				c.MaxInstances = n
			}
		}
	}
}

// applyDefaults fills keys left out.
func (c *Config) applyDefaults() {
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDur := func(p *time.Duration, key string, v time.Duration) {
		if !c.src.has(key) && *p == 0 {
			*p = v
		}
	}
	setStr(&c.Listen, DefaultListen)
	setStr(&c.DataDir, DefaultDataDir)
	if c.Store == "" {
		c.Store = DefaultStore
	}
	setDur(&c.ReconcileInterval, "reconcile_interval", DefaultReconcileInterval)
	setDur(&c.LeaseTTL, "lease_ttl", DefaultLeaseTTL)
	setStr(&c.Log.Level, "info")
	setStr(&c.Log.Format, "text")
	referenced := false
	for i := range c.Targets {
		t := &c.Targets[i]
		setStr(&t.Tenant, DefaultTenant)
		if t.Kind == string(corral.KindGitHub) {
			setStr(&t.URL, "https://api.github.com")
		}
		if t.ID != "" {
			setStr(&t.RunnerPrefix, "corral-"+t.ID)
		}
		referenced = referenced || t.Tenant == DefaultTenant
	}
	for i := range c.Pools {
		p := &c.Pools[i]
		k := fmt.Sprintf("pools[%d].", i)
		setStr(&p.Tenant, DefaultTenant)
		setStr(&p.Arch, "x64")
		setDur(&p.BootTimeout, k+"boot_timeout", DefaultBootTimeout)
		setDur(&p.MaxJobRuntime, k+"max_job_runtime", DefaultMaxJobRuntime)
		setDur(&p.IdleTimeout, k+"idle_timeout", DefaultIdleTimeout)
		setDur(&p.MaxLifetime, k+"max_lifetime", DefaultMaxLifetime)
		referenced = referenced || p.Tenant == DefaultTenant
	}
	if len(c.Tenants) == 0 && referenced {
		c.Tenants = []Tenant{{ID: DefaultTenant}}
	}
}

// resolveSealed opens every "sealed:NAME" secret from the data directory's
// secret box (key: CORRAL_SECRET_KEY or data_dir/secret.key).
func (c *Config) resolveSealed(d *decoder) {
	var box *secretbox.Box
	var boxErr error
	open := func(key string, s *corral.Secret) {
		name, ok := strings.CutPrefix(string(*s), sealedMark)
		if !ok {
			return
		}
		*s = ""
		if box == nil && boxErr == nil {
			// data_dir is relative to the working directory, as serve has it.
			box, boxErr = secretbox.Open(c.DataDir, d.getenv, false)
		}
		if boxErr != nil {
			d.src.problems = append(d.src.problems, d.src.at(key, fmt.Sprintf("sealed secret %q: %v", name, boxErr)))
			return
		}
		v, err := box.Get(name)
		if err != nil {
			d.src.problems = append(d.src.problems, d.src.at(key, err.Error()))
			return
		}
		*s = v
	}
	open("store", &c.Store)
	for i := range c.Targets {
		open(fmt.Sprintf("targets[%d].webhook_secret", i), &c.Targets[i].WebhookSecret)
		open(fmt.Sprintf("targets[%d].token", i), &c.Targets[i].Token)
	}
}
