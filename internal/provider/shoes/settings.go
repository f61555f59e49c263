package shoes

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// TypeName is the shoes provider type's name in the config.
const TypeName = "shoes"

func init() {
	provider.Register(provider.Type{
		Name:           TypeName,
		NewSettings:    func() provider.Settings { return &Settings{} },
		NewPoolOptions: func() provider.PoolOptions { return &PoolOptions{} },
		Open: func(_ context.Context, name string, s provider.Settings, env provider.Env) (corral.Provider, error) {
			st := *s.(*Settings)
			if st.StateDir == "" && env.DataDir != "" {
				st.StateDir = filepath.Join(env.DataDir, "shoes-"+name)
			}
			return New(name, st, env.Logger)
		},
		// Like the process type, a pool without an image runs corral's own
		// simulated runner: right for a shoes plugin whose machines see
		// this host's files (the test plugin); real clouds name the
		// runner program on their machines.
		PoolImage: func(env provider.Env) string { return env.Executable },
	})
}

// Defaults.
const (
	DefaultStartTimeout  = 30 * time.Second
	DefaultCreateTimeout = 5 * time.Minute
	DefaultDeleteTimeout = 2 * time.Minute
	DefaultKillGrace     = 10 * time.Second
)

// Runner name formats (Settings.RunnerName).
const (
	// NameCorral sends corral's runner name (the name the forge shows).
	NameCorral = "corral"
	// NameMyshoes sends "myshoes-" and the instance id written as a UUID:
	// the form some plugins (shoes-lxd) insist on, since myshoes names
	// its runners so.
	NameMyshoes = "myshoes"
)

// Settings is a shoes provider instance as the config file writes it:
//
//	providers:
//	  - name: lxd
//	    type: shoes
//	    path: /usr/local/bin/shoes-lxd
//	    env: {LXD_HOST: https://192.0.2.10:8443, LXD_CLIENT_CERT: /etc/corral/lxd.crt,
//	          LXD_CLIENT_KEY: /etc/corral/lxd.key}
//	    runner_name: myshoes
//	    timeouts: {start: 30s, create: 5m, delete: 2m}
//	    resource_types: [{name: small, cpu: 2, memory_mb: 4096}, {name: large, cpu: 8, memory_mb: 16384}]
//	    work_dir: /tmp
//	    prelude: |
//	      apt-get install -y git
type Settings struct {
	// Path is the plugin executable (absolute).
	Path string   `yaml:"path" json:"path"`
	Args []string `yaml:"args" json:"args,omitempty"`
	// Env is the plugin's environment besides PATH (shoes plugins are
	// configured by environment variables). Nothing else of corral's
	// environment reaches the plugin.
	Env      map[string]string `yaml:"env" json:"env,omitempty"`
	Timeouts Timeouts          `yaml:"timeouts" json:"timeouts,omitzero"`
	// ResourceTypes maps corral's flavors to myshoes' resource types: the
	// smallest listed type with at least the flavor's cpu and memory is
	// asked for. Empty: DefaultResourceTypes.
	ResourceTypes []ResourceType `yaml:"resource_types" json:"resource_types,omitempty"`
	// RunnerName is how AddInstance names the runner: corral (default) or
	// myshoes.
	RunnerName string `yaml:"runner_name" json:"runner_name,omitempty"`
	// StateDir holds corral's record of the machines it asked for (the
	// protocol has no listing). Default: data_dir/shoes-NAME.
	StateDir string `yaml:"state_dir" json:"state_dir,omitempty"`
	// WorkDir is where the setup script makes the runner's directory on
	// the machine (default: $TMPDIR or /tmp there).
	WorkDir string `yaml:"work_dir" json:"work_dir,omitempty"`
	// Prelude is shell run by the setup script before the runner starts
	// (install packages, fetch the runner program). It must not hold
	// secrets: it is kept in the store with the settings.
	Prelude string `yaml:"prelude" json:"prelude,omitempty"`
}

// Timeouts bound the plugin's start (its handshake) and each call; zero
// takes the default. A call past its timeout kills the plugin process,
// which is started again for the next call.
type Timeouts struct {
	Start  time.Duration `yaml:"start" json:"start,omitempty"`
	Create time.Duration `yaml:"create" json:"create,omitempty"`
	Delete time.Duration `yaml:"delete" json:"delete,omitempty"`
}

// PoolOptions is what a pool may ask of a shoes provider
// (the pool's options: {resource_type: large}).
type PoolOptions struct {
	// ResourceType, when set, is sent as is instead of the one the
	// flavor maps to.
	ResourceType string `yaml:"resource_type" json:"resource_type,omitempty"`
}

// Validate checks the pool's options.
func (o *PoolOptions) Validate(provider.Settings) error {
	if o.ResourceType != "" {
		if _, ok := sizeByName(o.ResourceType); !ok {
			return provider.FieldErrors{{Field: "resource_type", Msg: fmt.Sprintf("want one of %s, got %q", strings.Join(sizeNames(), ", "), o.ResourceType)}}
		}
	}
	return nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every problem at once, by key.
func (s *Settings) Validate() error {
	var es provider.FieldErrors
	switch {
	case s.Path == "":
		es = append(es, provider.FieldError{Field: "path", Msg: "required: the shoes plugin executable's absolute path"})
	case !filepath.IsAbs(s.Path):
		es = append(es, provider.FieldError{Field: "path", Msg: fmt.Sprintf("want an absolute path, got %q", s.Path)})
	}
	for k := range s.Env {
		switch {
		case !envName.MatchString(k):
			es = append(es, provider.FieldError{Field: "env." + k, Msg: "want a variable name of letters, digits and '_'"})
		case strings.HasPrefix(k, "PLUGIN_") || k == magicKey:
			es = append(es, provider.FieldError{Field: "env." + k, Msg: "set by go-plugin for the handshake"})
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"start", s.Timeouts.Start}, {"create", s.Timeouts.Create}, {"delete", s.Timeouts.Delete}} {
		if d.v < 0 {
			es = append(es, provider.FieldError{Field: "timeouts." + d.key, Msg: fmt.Sprintf("want a positive duration, got %v", d.v)})
		}
	}
	es = append(es, validateResourceTypes(s.ResourceTypes)...)
	switch s.RunnerName {
	case "", NameCorral, NameMyshoes:
	default:
		es = append(es, provider.FieldError{Field: "runner_name", Msg: fmt.Sprintf("want %s or %s, got %q", NameCorral, NameMyshoes, s.RunnerName)})
	}
	if s.StateDir != "" && !filepath.IsAbs(s.StateDir) {
		es = append(es, provider.FieldError{Field: "state_dir", Msg: fmt.Sprintf("want an absolute path, got %q", s.StateDir)})
	}
	if s.WorkDir != "" && !filepath.IsAbs(s.WorkDir) {
		es = append(es, provider.FieldError{Field: "work_dir", Msg: fmt.Sprintf("want an absolute path on the machines, got %q", s.WorkDir)})
	}
	if strings.IndexByte(s.Prelude, 0) >= 0 {
		es = append(es, provider.FieldError{Field: "prelude", Msg: "holds a NUL byte"})
	}
	return es.Err()
}

func (s *Settings) timeout(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
