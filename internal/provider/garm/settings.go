package garm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// TypeName is the garm provider type's name in the config.
const TypeName = "garm"

func init() {
	provider.Register(provider.Type{
		Name:           TypeName,
		NewSettings:    func() provider.Settings { return &Settings{} },
		NewPoolOptions: func() provider.PoolOptions { return &PoolOptions{} },
		Open: func(_ context.Context, name string, s provider.Settings, env provider.Env) (corral.Provider, error) {
			return New(name, *s.(*Settings), env)
		},
	})
}

// Defaults.
const (
	DefaultCreateTimeout = 5 * time.Minute // cloud providers wait for the VM
	DefaultDeleteTimeout = 2 * time.Minute
	DefaultQueryTimeout  = time.Minute // get, list
	DefaultMaxOutput     = 4 << 20
	maxOutputCap         = 64 << 20
)

// Settings is a garm external provider as corral's config writes it:
//
//	providers:
//	  - name: lxd
//	    type: garm
//	    executable: /opt/garm/providers.d/garm-provider-lxd
//	    config_file: /etc/garm/garm-provider-lxd.toml
//	    interface_version: v0.1.1
//	    env: {LXD_DIR: /var/snap/lxd/common/lxd}
//	    timeouts: {create: 5m, delete: 2m, get: 1m, list: 1m}
type Settings struct {
	// Executable is the provider binary, run once per command.
	Executable string `yaml:"executable" json:"executable"`
	// ConfigFile is the provider's own config, passed as
	// GARM_PROVIDER_CONFIG_FILE (garm's providers refuse to run without).
	ConfigFile string `yaml:"config_file" json:"config_file"`
	// InterfaceVersion is GARM_INTERFACE_VERSION: v0.1.0 or v0.1.1
	// (default).
	InterfaceVersion string `yaml:"interface_version" json:"interface_version,omitempty"`
	// Env is added to the provider's environment (credentials by
	// reference: the provider reads its own config).
	Env      map[string]string `yaml:"env" json:"env,omitempty"`
	Timeouts Timeouts          `yaml:"timeouts" json:"timeouts,omitzero"`
	// MaxOutputBytes caps what corral reads of one answer (default 4 MiB).
	MaxOutputBytes int `yaml:"max_output_bytes" json:"max_output_bytes,omitempty"`
	// Tools are the runner downloads handed to the provider in the
	// bootstrap's "tools": garm's providers pick the one of the pool's OS
	// and arch for the instance's userdata, and refuse to create without.
	Tools []Tool `yaml:"tools" json:"tools,omitempty"`
}

// Timeouts bound each command; zero takes the default. At the timeout the
// provider's whole process group is killed.
type Timeouts struct {
	Create time.Duration `yaml:"create" json:"create,omitempty"`
	Delete time.Duration `yaml:"delete" json:"delete,omitempty"`
	Get    time.Duration `yaml:"get" json:"get,omitempty"`
	List   time.Duration `yaml:"list" json:"list,omitempty"`
}

var (
	envName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	sha256Hex = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// Validate reports every problem at once, by key.
func (s *Settings) Validate() error {
	var es provider.FieldErrors
	switch {
	case s.Executable == "":
		es = append(es, provider.FieldError{Field: "executable", Msg: "required: the garm provider executable's absolute path"})
	case !filepath.IsAbs(s.Executable):
		es = append(es, provider.FieldError{Field: "executable", Msg: fmt.Sprintf("want an absolute path, got %q", s.Executable)})
	}
	switch {
	case s.ConfigFile == "":
		es = append(es, provider.FieldError{Field: "config_file", Msg: "required: garm providers read their own config file (GARM_PROVIDER_CONFIG_FILE)"})
	case !filepath.IsAbs(s.ConfigFile):
		es = append(es, provider.FieldError{Field: "config_file", Msg: fmt.Sprintf("want an absolute path, got %q", s.ConfigFile)})
	}
	if v := s.InterfaceVersion; v != "" && v != Version010 && v != Version011 {
		es = append(es, provider.FieldError{Field: "interface_version", Msg: fmt.Sprintf("want %s or %s, got %q", Version010, Version011, v)})
	}
	for _, k := range sortedKeys(s.Env) {
		switch {
		case !envName.MatchString(k):
			es = append(es, provider.FieldError{Field: "env." + k, Msg: "want a variable name of letters, digits and '_'"})
		case strings.HasPrefix(k, "GARM_"):
			es = append(es, provider.FieldError{Field: "env." + k, Msg: "GARM_* variables are set by corral for each command"})
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"create", s.Timeouts.Create}, {"delete", s.Timeouts.Delete}, {"get", s.Timeouts.Get}, {"list", s.Timeouts.List}} {
		if d.v < 0 {
			es = append(es, provider.FieldError{Field: "timeouts." + d.key, Msg: fmt.Sprintf("want a positive duration, got %v", d.v)})
		}
	}
	for i, t := range s.Tools {
		k := fmt.Sprintf("tools[%d]", i)
		if t.OS == "" || t.Architecture == "" {
			es = append(es, provider.FieldError{Field: k, Msg: "needs os (linux, win, osx) and architecture (x64, arm64, arm)"})
		}
		if u, err := url.Parse(t.DownloadURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			es = append(es, provider.FieldError{Field: k + ".download_url", Msg: fmt.Sprintf("want an http(s) URL, got %q", t.DownloadURL)})
		}
		if t.SHA256Checksum != "" && !sha256Hex.MatchString(t.SHA256Checksum) {
			es = append(es, provider.FieldError{Field: k + ".sha256_checksum", Msg: "want 64 hex digits"})
		}
	}
	if s.MaxOutputBytes < 0 || s.MaxOutputBytes > maxOutputCap {
		es = append(es, provider.FieldError{Field: "max_output_bytes", Msg: fmt.Sprintf("want 0 (default 4 MiB) up to %d, got %d", maxOutputCap, s.MaxOutputBytes)})
	}
	return es.Err()
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (s *Settings) version() string {
	if s.InterfaceVersion == "" {
		return Version011
	}
	return s.InterfaceVersion
}

func (s *Settings) timeout(cmd string) time.Duration {
	var v, def time.Duration
	switch cmd {
	case cmdCreate:
		v, def = s.Timeouts.Create, DefaultCreateTimeout
	case cmdDelete, cmdRemoveAll:
		v, def = s.Timeouts.Delete, DefaultDeleteTimeout
	case cmdList:
		v, def = s.Timeouts.List, DefaultQueryTimeout
	default:
		v, def = s.Timeouts.Get, DefaultQueryTimeout
	}
	if v > 0 {
		return v
	}
	return def
}

func (s *Settings) maxOutput() int {
	if s.MaxOutputBytes > 0 {
		return s.MaxOutputBytes
	}
	return DefaultMaxOutput
}

// check looks at the executable and config file themselves (Health, not
// Validate: the config may be checked on another machine).
func (s *Settings) check() error {
	fi, err := os.Stat(s.Executable)
	if err != nil {
		return fmt.Errorf("%w: garm provider executable: %w", corral.ErrBadInput, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%w: garm provider executable %s is not an executable file", corral.ErrBadInput, s.Executable)
	}
	if _, err := os.Stat(s.ConfigFile); err != nil {
		return fmt.Errorf("%w: garm provider config file: %w", corral.ErrBadInput, err)
	}
	return nil
}

// PoolOptions is what a pool asks of a garm provider beyond corral's pool:
//
//	provider_options:
//	  flavor: m1.small            # the provider's flavor (default: "<cpu>cpu<memory>mb")
//	  os_type: linux              # default linux
//	  extra_specs: {storage_pool: fast}
//	  ssh_keys: ["ssh-ed25519 AAAA..."]
//	  runner_group: ci            # GitHub runner group
type PoolOptions struct {
	Flavor      string         `yaml:"flavor" json:"flavor,omitempty"`
	OSType      string         `yaml:"os_type" json:"os_type,omitempty"`
	ExtraSpecs  map[string]any `yaml:"extra_specs" json:"extra_specs,omitempty"`
	SSHKeys     []string       `yaml:"ssh_keys" json:"ssh_keys,omitempty"`
	RunnerGroup string         `yaml:"runner_group" json:"runner_group,omitempty"`
}

// Validate checks the options.
func (o *PoolOptions) Validate(provider.Settings) error {
	var es provider.FieldErrors
	if o.OSType != "" && o.OSType != "linux" && o.OSType != "windows" {
		es = append(es, provider.FieldError{Field: "os_type", Msg: fmt.Sprintf("want linux or windows, got %q", o.OSType)})
	}
	if _, err := json.Marshal(o.ExtraSpecs); err != nil {
		es = append(es, provider.FieldError{Field: "extra_specs", Msg: fmt.Sprintf("not representable as JSON: %v", err)})
	}
	return es.Err()
}
