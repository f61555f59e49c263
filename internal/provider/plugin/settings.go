package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// TypeName is the plugin provider type's name in the config.
const TypeName = "plugin"

func init() {
	provider.Register(provider.Type{
		Name:        TypeName,
		NewSettings: func() provider.Settings { return &Settings{} },
		Open: func(_ context.Context, name string, s provider.Settings, env provider.Env) (corral.Provider, error) {
			return New(name, *s.(*Settings), env.Logger)
		},
	})
}

// Defaults.
const (
	DefaultCreateTimeout = 2 * time.Minute
	DefaultDeleteTimeout = time.Minute
	DefaultQueryTimeout  = 30 * time.Second // get, list
	DefaultHealthTimeout = 10 * time.Second // health, handshake
	DefaultMaxOutput     = 1 << 20
	maxOutputCap         = 64 << 20
)

// Settings is a plugin provider instance as the config file writes it:
//
//	providers:
//	  - name: lab
//	    type: plugin
//	    path: /usr/local/bin/corral-plugin-process
//	    args: [--verbose]
//	    config_file: /etc/corral/lab.json
//	    env: {LAB_REGION: west}
//	    timeouts: {create: 2m, delete: 1m}
type Settings struct {
	Path       string            `yaml:"path" json:"path"`
	Args       []string          `yaml:"args" json:"args,omitempty"`
	ConfigFile string            `yaml:"config_file" json:"config_file,omitempty"`
	Env        map[string]string `yaml:"env" json:"env,omitempty"`
	Timeouts   Timeouts          `yaml:"timeouts" json:"timeouts,omitzero"`
	// MaxOutputBytes caps what corral reads of one answer (default 1 MiB).
	MaxOutputBytes int `yaml:"max_output_bytes" json:"max_output_bytes,omitempty"`
}

// Timeouts bound each command; zero takes the default. At the timeout
// the plugin's whole process group is killed.
type Timeouts struct {
	Create time.Duration `yaml:"create" json:"create,omitempty"`
	Delete time.Duration `yaml:"delete" json:"delete,omitempty"`
	Get    time.Duration `yaml:"get" json:"get,omitempty"`
	List   time.Duration `yaml:"list" json:"list,omitempty"`
	Health time.Duration `yaml:"health" json:"health,omitempty"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every problem at once, by key.
func (s *Settings) Validate() error {
	var es provider.FieldErrors
	switch {
	case s.Path == "":
		es = append(es, provider.FieldError{Field: "path", Msg: "required: the plugin executable's absolute path"})
	case !filepath.IsAbs(s.Path):
		es = append(es, provider.FieldError{Field: "path", Msg: fmt.Sprintf("want an absolute path, got %q", s.Path)})
	}
	if s.ConfigFile != "" && !filepath.IsAbs(s.ConfigFile) {
		es = append(es, provider.FieldError{Field: "config_file", Msg: fmt.Sprintf("want an absolute path, got %q", s.ConfigFile)})
	}
	for k := range s.Env {
		if !envName.MatchString(k) {
			es = append(es, provider.FieldError{Field: "env." + k, Msg: "want a variable name of letters, digits and '_'"})
		} else if len(k) >= len("CORRAL_") && k[:len("CORRAL_")] == "CORRAL_" {
			es = append(es, provider.FieldError{Field: "env." + k, Msg: "CORRAL_* variables are set by corral"})
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"create", s.Timeouts.Create}, {"delete", s.Timeouts.Delete}, {"get", s.Timeouts.Get}, {"list", s.Timeouts.List}, {"health", s.Timeouts.Health}} {
		if d.v < 0 {
			es = append(es, provider.FieldError{Field: "timeouts." + d.key, Msg: fmt.Sprintf("want a positive duration, got %v", d.v)})
		}
	}
	if s.MaxOutputBytes < 0 || s.MaxOutputBytes > maxOutputCap {
		es = append(es, provider.FieldError{Field: "max_output_bytes", Msg: fmt.Sprintf("want 0 (default 1 MiB) up to %d, got %d", maxOutputCap, s.MaxOutputBytes)})
	}
	return es.Err()
}

// check looks at the executable itself (Open, not Validate: the config
// may be checked on another machine).
func (s *Settings) check() error {
	fi, err := os.Stat(s.Path)
	if err != nil {
		return fmt.Errorf("%w: plugin executable: %w", corral.ErrBadInput, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%w: plugin executable %s is not an executable file", corral.ErrBadInput, s.Path)
	}
	return nil
}

func (s *Settings) timeout(cmd string) time.Duration {
	var v, def time.Duration
	switch cmd {
	case "create":
		v, def = s.Timeouts.Create, DefaultCreateTimeout
	case "delete":
		v, def = s.Timeouts.Delete, DefaultDeleteTimeout
	case "get":
		v, def = s.Timeouts.Get, DefaultQueryTimeout
	case "list":
		v, def = s.Timeouts.List, DefaultQueryTimeout
	default:
		v, def = s.Timeouts.Health, DefaultHealthTimeout
	}
	if v > 0 {
		return v
	}
	return def
}
