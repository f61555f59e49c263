package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// TypeName is the docker provider type's name in the config.
const TypeName = "docker"

func init() {
	provider.Register(provider.Type{
		Name:           TypeName,
		NewSettings:    func() provider.Settings { return &Settings{} },
		NewPoolOptions: func() provider.PoolOptions { return &PoolOptions{} },
		Open: func(_ context.Context, _ string, s provider.Settings, env provider.Env) (corral.Provider, error) {
			return New(s.(*Settings).Config(env))
		},
	})
}

// Settings is a docker provider instance as the config file writes it
// (providers: [{name: rack1, type: docker, ...}]): the engines it places
// instances on (the one with the most free room first). It holds file
// paths, never secrets.
type Settings struct {
	Endpoints    []EndpointSettings `yaml:"endpoints" json:"endpoints,omitempty"`
	Network      string             `yaml:"network" json:"network,omitempty"`               // host (default) or none
	ReadOnlyRoot bool               `yaml:"read_only_root" json:"read_only_root,omitempty"` // the runner's root file system read-only
	LogDriver    string             `yaml:"log_driver" json:"log_driver,omitempty"`         // "none" keeps runner output off the engine's disk
	// DindImage runs the per-instance Docker daemon of pools with
	// options: {docker_in_docker: true} (privileged: see the README).
	DindImage        string   `yaml:"dind_image" json:"dind_image,omitempty"`
	DindCapabilities []string `yaml:"dind_capabilities" json:"dind_capabilities,omitempty"` // instead of privileged, where the host refuses it
}

// EndpointSettings is one Docker engine.
type EndpointSettings struct {
	Name         string `yaml:"name" json:"name,omitempty"`
	Host         string `yaml:"host" json:"host"` // unix:///var/run/docker.sock, tcp://host:2376, ssh://user@host
	TLSCA        string `yaml:"tls_ca" json:"tls_ca,omitempty"`
	TLSCert      string `yaml:"tls_cert" json:"tls_cert,omitempty"`
	TLSKey       string `yaml:"tls_key" json:"tls_key,omitempty"`
	MaxInstances int    `yaml:"max_instances" json:"max_instances,omitempty"`
}

// Validate reports every problem at once, by key.
func (s *Settings) Validate() error {
	var es provider.FieldErrors
	bad := func(field, format string, args ...any) {
		es = append(es, provider.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch s.Network {
	case "", NetworkHost, NetworkNone:
	default:
		bad("network", "want host or none, got %q", s.Network)
	}
	names := map[string]bool{}
	for i, e := range s.Endpoints {
		k := fmt.Sprintf("endpoints[%d]", i)
		name := e.Name
		if name == "" && len(s.Endpoints) == 1 {
			name = "default"
		}
		switch {
		case !namePattern.MatchString(name):
			bad(k+".name", "want a plain name (letters, digits, '.', '_', '-'), got %q", e.Name)
		case names[name]:
			bad(k+".name", "duplicate endpoint name %q", name)
		}
		names[name] = true
		if e.Host == "" {
			bad(k+".host", "required: unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST")
		} else if err := checkHost(e.endpoint()); err != nil {
			bad(k+".host", "%v", err)
		}
		if e.MaxInstances < 0 {
			bad(k+".max_instances", "want 0 (no cap) or more")
		}
	}
	for i, c := range s.DindCapabilities {
		if c == "" || strings.ContainsAny(c, " ,=\x00") {
			bad(fmt.Sprintf("dind_capabilities[%d]", i), "want a capability name like CAP_SYS_ADMIN, got %q", c)
		}
	}
	return es.Err()
}

func (e EndpointSettings) endpoint() Endpoint {
	return Endpoint{Name: e.Name, Host: e.Host, TLSCA: e.TLSCA, TLSCert: e.TLSCert, TLSKey: e.TLSKey, MaxInstances: e.MaxInstances}
}

// Config is the provider's Config for these settings; no endpoint means
// the local engine's socket.
func (s *Settings) Config(env provider.Env) Config {
	c := Config{Network: s.Network, ReadOnlyRoot: s.ReadOnlyRoot, LogDriver: s.LogDriver, Logger: env.Logger,
		DindImage: s.DindImage, DindCapabilities: slices.Clone(s.DindCapabilities)}
	for _, e := range s.Endpoints {
		c.Endpoints = append(c.Endpoints, e.endpoint())
	}
	if len(c.Endpoints) == 0 {
		c.Endpoints = []Endpoint{{Name: "local", Host: "unix:///var/run/docker.sock"}}
	}
	return c
}

// PoolOptions is what a pool asks of the docker provider (pool key
// options:).
type PoolOptions struct {
	// DockerInDocker gives each instance a private Docker daemon,
	// destroyed with it; the host's socket is never shared.
	DockerInDocker bool `yaml:"docker_in_docker" json:"docker_in_docker,omitempty"`
}

// Validate checks the options against the provider instance's settings.
func (o *PoolOptions) Validate(s provider.Settings) error {
	if ds, ok := s.(*Settings); ok && o.DockerInDocker && ds.DindImage == "" {
		return provider.FieldErrors{{Field: "docker_in_docker", Msg: "needs dind_image in the settings of the pool's docker provider"}}
	}
	return nil
}

// poolOptions decodes an instance's options.
func poolOptions(spec corral.InstanceSpec) (PoolOptions, error) {
	var o PoolOptions
	return o, provider.DecodePoolOptions(spec.Options, &o)
}
