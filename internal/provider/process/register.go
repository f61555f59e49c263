package process

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// TypeName is the process provider type's name in the config.
const TypeName = "process"

func init() {
	provider.Register(provider.Type{
		Name:        TypeName,
		NewSettings: func() provider.Settings { return &Settings{} },
		Open: func(_ context.Context, name string, s provider.Settings, env provider.Env) (corral.Provider, error) {
			return New(s.(*Settings).Config(name, env))
		},
		// A pool without an image runs corral's own simulated runner.
		PoolImage: func(env provider.Env) string { return env.Executable },
	})
}

// Settings is a process provider instance as the config file writes it
// (providers: [{name: local, type: process}]).
type Settings struct {
	// Dir holds the instances (default: data_dir/instances for the
	// instance named "process", data_dir/instances-NAME for others).
	Dir        string `yaml:"dir" json:"dir,omitempty"`
	Namespaces string `yaml:"namespaces" json:"namespaces,omitempty"` // auto (default), on or off
}

// Validate reports every problem at once, by key.
func (s *Settings) Validate() error {
	var es provider.FieldErrors
	if s.Dir != "" && !filepath.IsAbs(s.Dir) {
		es = append(es, provider.FieldError{Field: "dir", Msg: fmt.Sprintf("want an absolute path, got %q", s.Dir)})
	}
	switch s.Namespaces {
	case "", NamespacesAuto, NamespacesOn, NamespacesOff:
	default:
		es = append(es, provider.FieldError{Field: "namespaces", Msg: fmt.Sprintf("want auto, on or off, got %q", s.Namespaces)})
	}
	return es.Err()
}

// Config is the provider's Config for the instance called name.
func (s *Settings) Config(name string, env provider.Env) Config {
	dir := s.Dir
	switch {
	case dir != "":
	case name == TypeName:
		dir = filepath.Join(env.DataDir, "instances")
	default:
		dir = filepath.Join(env.DataDir, "instances-"+name)
	}
	return Config{Dir: dir, Shim: []string{env.Executable, "shim"}, Namespaces: s.Namespaces, Logger: env.Logger}
}
