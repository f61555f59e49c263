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
			p, err := New(s.(*Settings).Config(name, env))
			if err != nil {
				return nil, err
			}
			if env.Logger != nil {
				summary, degraded := p.Isolation()
				env.Logger.Info("process provider isolation", "provider", name, "summary", summary)
				for _, d := range degraded {
					env.Logger.Warn("process provider isolation degraded", "provider", name, "reason", d)
				}
			}
			return p, nil
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
	// DiskMB caps each instance's tmpfs (default: the top-level
	// instance_disk_mb; 0 = the flavor's disk, uncapped).
	DiskMB int `yaml:"disk_mb" json:"disk_mb,omitempty"`
}

// Validate reports every problem at once, by key.
func (s *Settings) Validate() error {
	var es provider.FieldErrors
	if s.Dir != "" && !filepath.IsAbs(s.Dir) {
		es = append(es, provider.FieldError{Field: "dir", Msg: fmt.Sprintf("want an absolute path, got %q", s.Dir)})
	}
	if s.DiskMB < 0 {
		es = append(es, provider.FieldError{Field: "disk_mb", Msg: fmt.Sprintf("want 0 or a positive size in MiB, got %d", s.DiskMB)})
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
	case name == TypeName && env.InstancesDir != "":
		dir = env.InstancesDir
	case name == TypeName:
		dir = filepath.Join(env.DataDir, "instances")
	default:
		dir = filepath.Join(env.DataDir, "instances-"+name)
	}
	disk := s.DiskMB
	if disk == 0 {
		disk = env.InstanceDiskMB
	}
	c := Config{Dir: dir, Shim: []string{env.Executable, "shim"}, Namespaces: s.Namespaces, DiskMB: disk, Logger: env.Logger}
	// Runners never see corral's data directory (database, secret.key);
	// corral's binary (the shim, the simulated runner) stays readable.
	if env.DataDir != "" {
		c.Hide = []string{env.DataDir}
	}
	if env.Executable != "" {
		c.Keep = []string{env.Executable}
	}
	return c
}
