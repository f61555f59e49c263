package qemu

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// TypeName is the qemu provider type's name in the config.
const TypeName = "qemu"

func init() {
	provider.Register(provider.Type{
		Name:           TypeName,
		NewSettings:    func() provider.Settings { return &Settings{} },
		NewPoolOptions: func() provider.PoolOptions { return &Options{} },
		Open: func(_ context.Context, name string, s provider.Settings, env provider.Env) (corral.Provider, error) {
			return New(s.(*Settings).Config(name, env))
		},
	})
}

// Settings is a qemu provider instance as the config file writes it
// (providers: [{name: vms, type: qemu, forwards: [...]}]).
type Settings struct {
	// Dir holds the instances (default: data_dir/vms-NAME).
	Dir     string `yaml:"dir" json:"dir,omitempty"`
	Machine string `yaml:"machine" json:"machine,omitempty"` // microvm (default) or q35
	Accel   string `yaml:"accel" json:"accel,omitempty"`     // auto (default), kvm or tcg
	// Runner is the runner of pools whose options name none: a host file
	// or directory handed to every guest (a static program: the guest has
	// no C library).
	Runner   string `yaml:"runner" json:"runner,omitempty"`
	Forwards []struct {
		Host  string `yaml:"host" json:"host"`
		Guest string `yaml:"guest" json:"guest,omitempty"`
	} `yaml:"forwards" json:"forwards,omitempty"`
}

// Validate reports every problem at once, by key.
func (s *Settings) Validate() error {
	var es provider.FieldErrors
	if s.Dir != "" && !filepath.IsAbs(s.Dir) {
		es = append(es, provider.FieldError{Field: "dir", Msg: fmt.Sprintf("want an absolute path, got %q", s.Dir)})
	}
	if s.Runner != "" && !filepath.IsAbs(s.Runner) {
		es = append(es, provider.FieldError{Field: "runner", Msg: fmt.Sprintf("want an absolute path, got %q", s.Runner)})
	}
	switch s.Machine {
	case "", MachineMicrovm, MachineQ35:
	default:
		es = append(es, provider.FieldError{Field: "machine", Msg: fmt.Sprintf("want microvm or q35, got %q", s.Machine)})
	}
	switch s.Accel {
	case "", AccelAuto, AccelKVM, AccelTCG:
	default:
		es = append(es, provider.FieldError{Field: "accel", Msg: fmt.Sprintf("want auto, kvm or tcg, got %q", s.Accel)})
	}
	for i, f := range s.Forwards {
		if _, _, err := splitPort(f.Host); err != nil {
			es = append(es, provider.FieldError{Field: fmt.Sprintf("forwards[%d].host", i), Msg: err.Error()})
		}
		if f.Guest != "" {
			if _, _, err := splitPort(f.Guest); err != nil {
				es = append(es, provider.FieldError{Field: fmt.Sprintf("forwards[%d].guest", i), Msg: err.Error()})
			}
		}
	}
	return es.Err()
}

// Config is the provider's Config for the instance called name.
func (s *Settings) Config(name string, env provider.Env) Config {
	dir := s.Dir
	if dir == "" {
		dir = filepath.Join(env.DataDir, "vms-"+name)
	}
	c := Config{Dir: dir, Machine: s.Machine, Accel: s.Accel, Runner: s.Runner, Logger: env.Logger}
	if env.Executable != "" {
		c.Relay = []string{env.Executable, RelayArg}
	}
	for _, f := range s.Forwards {
		c.Forwards = append(c.Forwards, Forward{Host: f.Host, Guest: f.Guest})
	}
	return c
}

// Validate checks a pool's options.
func (o *Options) Validate(provider.Settings) error {
	if err := o.check(); err != nil {
		return provider.FieldErrors{{Field: "options", Msg: err.Error()}}
	}
	return nil
}
