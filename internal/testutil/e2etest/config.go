package e2etest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"github.com/corral-ci/corral/internal/provider/process"
)

// Config is what an end-to-end test says about corral's configuration.
// WriteConfig turns it into a config file with the one template below:
// when the config file's shape changes, this file is the only one of the
// end-to-end suites to change.
type Config struct {
	Listen, DataDir string
	Store           string // "sqlite" (default) or a PostgreSQL DSN
	ControllerID    string // default "e2e"
	Reconcile       string // reconcile_interval, default "1s"
	LeaseTTL        string // lease_ttl; empty: corral's default
	LogLevel        string // default "info"
	// Tenants, when set, are listed in the config; targets and pools name
	// theirs in Tenant (empty: corral's implicit tenant "default").
	Tenants []string
	Targets []Target
	Pools   []Pool
	// Docker is the settings of a docker provider instance named "docker"
	// (pools say provider: docker), if any pool uses it.
	Docker *Docker
	// Providers are further named provider instances.
	Providers []Provider
	// InstanceURL is instance_url: where instances of garm providers
	// reach corral's metadata endpoint (e.g. "http://" + Listen).
	InstanceURL string
}

// Provider is a named provider instance of a type; Docker holds a docker
// instance's settings.
type Provider struct {
	Name, Type string
	Docker     *Docker
	Plugin     *Plugin
	Garm       *Garm
	Shoes      *Shoes
	// Settings are further setting lines of the instance, each a YAML
	// "key: value" (flow style for structures), e.g. "forwards: [{host: ...}]".
	Settings []string
}

// Garm is a garm provider instance's settings.
type Garm struct {
	Executable, ConfigFile string
	Env                    string // a YAML mapping like "{X: y}"; empty: none
	Timeouts               string // a YAML mapping like "{create: 30s}"; empty: the defaults
}

// Shoes is a shoes provider instance's settings (docs/plugins.md).
type Shoes struct {
	Path     string
	Env      map[string]string
	Timeouts string // a YAML mapping like "{create: 30s}"; empty: the defaults
}

// Plugin is a plugin provider instance's settings.
type Plugin struct {
	Path, ConfigFile string
	Timeouts         string // a YAML mapping like "{create: 30s}"; empty: the defaults
}

// Target is one forge target. Secrets are named by environment variable.
type Target struct {
	ID, Kind, Scope, Path, URL string
	SecretEnv                  string // webhook secret: env:SecretEnv
	Token                      string // a reference: "env:X" or "file:/path"
	RunnerPrefix               string
	AppID                      int64 // GitHub App id (settings.app_id), 0 for none
	Tenant                     string
	// Mode is the target's mode (webhook, poll, webhook+poll); empty:
	// none written. In mode poll SecretEnv may be empty: no
	// webhook_secret is written then.
	Mode, PollInterval string
	// RunnerURL is settings.runner_url (Gitea: the address runners use
	// when it differs from URL).
	RunnerURL string
	// PointsPerMinute is settings.points_per_minute (GitHub's secondary
	// rate-limit budget; "0": none); empty: not written (the default).
	PointsPerMinute string
}

// SettingsFlow is the target's settings as a YAML flow mapping, or "".
func (t Target) SettingsFlow() string {
	var kv []string
	if t.AppID != 0 {
		kv = append(kv, fmt.Sprintf("app_id: %q", strconv.FormatInt(t.AppID, 10)))
	}
	if t.RunnerURL != "" {
		kv = append(kv, fmt.Sprintf("runner_url: %q", t.RunnerURL))
	}
	if t.PointsPerMinute != "" {
		kv = append(kv, fmt.Sprintf("points_per_minute: %q", t.PointsPerMinute))
	}
	if len(kv) == 0 {
		return ""
	}
	return "{" + strings.Join(kv, ", ") + "}"
}

// Pool is one pool. Empty durations get the defaults in WriteConfig.
type Pool struct {
	ID, Tenant                                           string
	Labels                                               []string
	Provider                                             string // a provider instance's name; default "process"
	Image, Flavor, MaxFlavor                             string
	MaxInstances, MinIdle                                int
	BootTimeout, MaxJobRuntime, IdleTimeout, MaxLifetime string
	Arch                                                 string // the pool's arch; empty: the default (x64)
	// Options are the pool's provider options as a YAML flow mapping,
	// e.g. "{workspace: tmpfs}"; empty: none.
	Options string
}

// Docker is the docker provider's section.
type Docker struct {
	Network   string
	Endpoints []Endpoint
}

// Endpoint is one Docker engine; Max 0 means no per-engine limit.
type Endpoint struct {
	Name, Host string
	Max        int
}

var configTmpl = template.Must(template.New("corral.yaml").Parse(`listen: {{.Listen}}
data_dir: {{.DataDir}}
store: {{.Store}}
controller_id: {{.ControllerID}}
reconcile_interval: {{.Reconcile}}
{{- if .LeaseTTL}}
lease_ttl: {{.LeaseTTL}}
{{- end}}
log: {level: {{.LogLevel}}, format: text}
{{- if .InstanceURL}}
instance_url: {{.InstanceURL}}
{{- end}}
{{- if .Tenants}}
tenants:
{{- range .Tenants}}
  - id: {{.}}
{{- end}}
{{- end}}
targets:
{{- range .Targets}}
  - id: {{.ID}}
{{- if .Tenant}}
    tenant: {{.Tenant}}
{{- end}}
    kind: {{.Kind}}
    scope: {{.Scope}}
    path: {{.Path}}
    url: {{.URL}}
{{- if .SecretEnv}}
    webhook_secret: env:{{.SecretEnv}}
{{- end}}
{{- if .Mode}}
    mode: {{.Mode}}
{{- end}}
{{- if .PollInterval}}
    poll_interval: {{.PollInterval}}
{{- end}}
    token: {{.Token}}
    runner_prefix: {{.RunnerPrefix}}
{{- with .SettingsFlow}}
    settings: {{.}}
{{- end}}
{{- end}}
pools:
{{- range .Pools}}
  - id: {{.ID}}
{{- if .Tenant}}
    tenant: {{.Tenant}}
{{- end}}
    labels: [{{range $i, $l := .Labels}}{{if $i}}, {{end}}{{$l}}{{end}}]
    provider: {{.Provider}}
{{- if .Image}}
    image: {{.Image}}
{{- end}}
{{- if .Flavor}}
    flavor: {{.Flavor}}
{{- end}}
{{- if .MaxFlavor}}
    max_flavor: {{.MaxFlavor}}
{{- end}}
    max_instances: {{.MaxInstances}}
    min_idle: {{.MinIdle}}
    boot_timeout: {{.BootTimeout}}
    max_job_runtime: {{.MaxJobRuntime}}
    idle_timeout: {{.IdleTimeout}}
    max_lifetime: {{.MaxLifetime}}
{{- if .Arch}}
    arch: {{.Arch}}
{{- end}}
{{- if .Options}}
    options: {{.Options}}
{{- end}}
{{- end}}
{{- if or .Docker .Providers}}
providers:
{{- with .Docker}}
  - name: docker
    type: docker
    network: {{.Network}}
    endpoints:
{{- range .Endpoints}}
      - {name: {{.Name}}, host: "{{.Host}}"{{if .Max}}, max_instances: {{.Max}}{{end}}}
{{- end}}
{{- end}}
{{- range .Providers}}
  - name: {{.Name}}
    type: {{.Type}}
{{- with .Docker}}
    network: {{.Network}}
    endpoints:
{{- range .Endpoints}}
      - {name: {{.Name}}, host: "{{.Host}}"{{if .Max}}, max_instances: {{.Max}}{{end}}}
{{- end}}
{{- end}}
{{- range .Settings}}
    {{.}}
{{- end}}
{{- with .Plugin}}
    path: {{.Path}}
{{- if .ConfigFile}}
    config_file: {{.ConfigFile}}
{{- end}}
{{- if .Timeouts}}
    timeouts: {{.Timeouts}}
{{- end}}
{{- end}}
{{- with .Garm}}
    executable: {{.Executable}}
    config_file: {{.ConfigFile}}
{{- if .Env}}
    env: {{.Env}}
{{- end}}
{{- if .Timeouts}}
    timeouts: {{.Timeouts}}
{{- end}}
{{- end}}
{{- with .Shoes}}
    path: {{.Path}}
{{- if .Env}}
    env:
{{- range $k, $v := .Env}}
      {{$k}}: "{{$v}}"
{{- end}}
{{- end}}
{{- if .Timeouts}}
    timeouts: {{.Timeouts}}
{{- end}}
{{- end}}
{{- end}}
{{- end}}
`))

func (c *Config) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Store, "sqlite")
	def(&c.ControllerID, "e2e")
	def(&c.Reconcile, "1s")
	def(&c.LogLevel, "info")
	for i := range c.Pools {
		p := &c.Pools[i]
		def(&p.Provider, "process")
		def(&p.BootTimeout, "30s")
		def(&p.MaxJobRuntime, "2m")
		def(&p.IdleTimeout, "5s")
		def(&p.MaxLifetime, "10m")
	}
}

// Render returns the config file's text.
func (c Config) Render() ([]byte, error) {
	c.Targets = append([]Target(nil), c.Targets...)
	c.Pools = append([]Pool(nil), c.Pools...)
	c.defaults()
	var b bytes.Buffer
	err := configTmpl.Execute(&b, c)
	return b.Bytes(), err
}

// WriteConfig writes c to a new file in a temporary directory and returns
// its path.
func WriteConfig(t testing.TB, c Config) string {
	t.Helper()
	b, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "corral.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "" {
		// Process instances a stopped corral left (it adopts them at its
		// next start) are tmpfs mounts and cgroups: free them before the
		// test's directories go. Runs after the corral processes started
		// later are killed (cleanups run last first).
		t.Cleanup(func() { _ = process.RemoveLeftovers(filepath.Join(c.DataDir, "instances")) })
	}
	return p
}
