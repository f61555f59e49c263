// Package plugin is the provider type whose instances are made by an
// out-of-process plugin: an executable that speaks corral's plugin
// protocol (package pkg/providerplugin, docs/plugins.md), run once per
// command with JSON on its standard input and output.
//
// Every invocation runs in its own process group with only standard
// input, output and error open, a minimal environment, a hard timeout per
// command (the group is killed) and a cap on its answer. Every answer is
// checked against the protocol's schema; a plugin that hangs, crashes or
// prints garbage gives a *PluginError naming the plugin and carrying the
// tail of its standard error, and corral goes on.
package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/corral-ci/corral/internal/corral"
	pp "github.com/corral-ci/corral/pkg/providerplugin"
)

// Provider runs a plugin executable. It is safe for concurrent use.
type Provider struct {
	name string
	s    Settings
	log  *slog.Logger

	mu        sync.Mutex
	handshake *pp.Handshake // nil until a handshake succeeded
}

var _ corral.Provider = (*Provider)(nil)

// New returns the provider instance called name. It does no I/O: the
// handshake happens before the first command.
func New(name string, s Settings, log *slog.Logger) (*Provider, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", corral.ErrBadInput, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.Args = slices.Clone(s.Args)
	return &Provider{name: name, s: s, log: log.With("component", "provider/plugin")}, nil
}

// Handshake runs the handshake once; a later call after a failure tries
// again (the plugin may have been upgraded). A plugin that does not speak
// ProtocolVersion is refused with an error that says which it speaks.
func (p *Provider) Handshake(ctx context.Context) (pp.Handshake, error) {
	p.mu.Lock()
	h := p.handshake
	p.mu.Unlock()
	if h != nil {
		return *h, nil
	}
	out, stderr, err := p.run(ctx, pp.CmdHandshake, pp.Request{Protocols: []int{pp.ProtocolVersion}}, ids{})
	if err != nil {
		return pp.Handshake{}, err
	}
	var r struct {
		Handshake *pp.Handshake `json:"handshake"`
	}
	if err := decode(out, &r); err != nil {
		return pp.Handshake{}, p.bad(pp.CmdHandshake, stderr, err)
	}
	switch {
	case r.Handshake == nil:
		return pp.Handshake{}, p.bad(pp.CmdHandshake, stderr, errors.New(`answer has no "handshake"`))
	case r.Handshake.Protocol != pp.ProtocolVersion:
		return pp.Handshake{}, &PluginError{Provider: p.name, Path: p.s.Path, Command: pp.CmdHandshake, Stderr: stderr,
			Err: fmt.Errorf("%w: the plugin speaks protocol %d, this corral speaks %d", errIncompatible, r.Handshake.Protocol, pp.ProtocolVersion)}
	}
	p.mu.Lock()
	p.handshake = r.Handshake
	p.mu.Unlock()
	p.log.Info("plugin handshake", "path", p.s.Path, "plugin", r.Handshake.Name, "version", r.Handshake.Version)
	return *r.Handshake, nil
}

// call runs a command after the handshake.
func (p *Provider) call(ctx context.Context, command string, req pp.Request, id ids) ([]byte, string, error) {
	if _, err := p.Handshake(ctx); err != nil {
		return nil, "", err
	}
	return p.run(ctx, command, req, id)
}

// bad is an answer that breaks the schema.
func (p *Provider) bad(command, stderr string, err error) error {
	return &PluginError{Provider: p.name, Path: p.s.Path, Command: command, Stderr: stderr,
		Err: fmt.Errorf("%w: malformed answer: %w", corral.ErrUnavailable, err)}
}

// decode decodes exactly one JSON object, refusing unknown fields and
// trailing data.
func decode(out []byte, v any) error {
	if len(bytes.TrimSpace(out)) == 0 {
		return errors.New("empty answer")
	}
	d := json.NewDecoder(bytes.NewReader(out))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("not the protocol's JSON: %w (answer starts %q)", err, head(out))
	}
	if d.More() {
		return fmt.Errorf("data after the JSON answer (answer starts %q)", head(out))
	}
	return nil
}

func head(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 80 {
		b = b[:80]
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

// instance checks one instance of an answer.
func checkInstance(in *pp.Instance) (corral.ProviderInstance, error) {
	switch {
	case in == nil:
		return corral.ProviderInstance{}, errors.New(`answer has no "instance"`)
	case in.ProviderID == "":
		return corral.ProviderInstance{}, errors.New("instance without provider_id")
	case in.InstanceID == "":
		return corral.ProviderInstance{}, fmt.Errorf("instance %s without instance_id", in.ProviderID)
	}
	var running bool
	switch in.State {
	case pp.StateRunning:
		running = true
	case pp.StateStopped:
	default:
		return corral.ProviderInstance{}, fmt.Errorf("instance %s has unknown state %q (want %s or %s)", in.InstanceID, in.State, pp.StateRunning, pp.StateStopped)
	}
	return corral.ProviderInstance{ProviderID: in.ProviderID, InstanceID: in.InstanceID, PoolID: in.PoolID,
		Running: running, CreatedAt: in.CreatedAt}, nil
}

// Create asks the plugin for an instance.
func (p *Provider) Create(ctx context.Context, spec corral.InstanceSpec) (corral.ProviderInstance, error) {
	req := pp.Request{ControllerID: spec.ControllerID, Spec: wireSpec(spec)}
	out, stderr, err := p.call(ctx, pp.CmdCreate, req, ids{controller: spec.ControllerID, instance: spec.InstanceID, pool: spec.PoolID})
	if err != nil {
		return corral.ProviderInstance{}, p.callErr(spec.PoolID, err)
	}
	var r struct {
		Instance *pp.Instance `json:"instance"`
	}
	err = decode(out, &r)
	var inst corral.ProviderInstance
	if err == nil {
		inst, err = checkInstance(r.Instance)
	}
	if err == nil && inst.InstanceID != spec.InstanceID {
		err = fmt.Errorf("created instance_id %q, asked for %q", inst.InstanceID, spec.InstanceID)
	}
	if err != nil {
		// The plugin may have made something: the orphan sweep finds it
		// by controller; name it in the log too.
		p.log.Warn("plugin create answer refused", "instance", spec.InstanceID, "err", err)
		return corral.ProviderInstance{}, p.callErr(spec.PoolID, p.bad(pp.CmdCreate, stderr, err))
	}
	if inst.PoolID == "" {
		inst.PoolID = spec.PoolID
	}
	return inst, nil
}

func (p *Provider) callErr(target string, err error) error {
	return &corral.CallError{Op: "plugin create", Target: target, Err: err}
}

// Delete asks the plugin to destroy an instance; not_found is success.
func (p *Provider) Delete(ctx context.Context, inst corral.ProviderInstance) error {
	ref := &pp.InstanceRef{ProviderID: inst.ProviderID, InstanceID: inst.InstanceID}
	out, stderr, err := p.call(ctx, pp.CmdDelete, pp.Request{Instance: ref}, ids{instance: inst.InstanceID, pool: inst.PoolID})
	if errors.Is(err, corral.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var r struct{}
	if err := decode(out, &r); err != nil {
		return p.bad(pp.CmdDelete, stderr, err)
	}
	return nil
}

// Get asks the plugin for one instance; corral.ErrNotFound when it is gone.
func (p *Provider) Get(ctx context.Context, inst corral.ProviderInstance) (corral.ProviderInstance, error) {
	ref := &pp.InstanceRef{ProviderID: inst.ProviderID, InstanceID: inst.InstanceID}
	out, stderr, err := p.call(ctx, pp.CmdGet, pp.Request{Instance: ref}, ids{instance: inst.InstanceID, pool: inst.PoolID})
	if err != nil {
		return corral.ProviderInstance{}, err
	}
	var r struct {
		Instance *pp.Instance `json:"instance"`
	}
	err = decode(out, &r)
	var got corral.ProviderInstance
	if err == nil {
		got, err = checkInstance(r.Instance)
	}
	if err == nil && got.InstanceID != inst.InstanceID {
		err = fmt.Errorf("get %q answered instance %q", inst.InstanceID, got.InstanceID)
	}
	if err != nil {
		return corral.ProviderInstance{}, p.bad(pp.CmdGet, stderr, err)
	}
	return got, nil
}

// List asks the plugin for every instance of the controller.
func (p *Provider) List(ctx context.Context, controllerID string) ([]corral.ProviderInstance, error) {
	out, stderr, err := p.call(ctx, pp.CmdList, pp.Request{ControllerID: controllerID}, ids{controller: controllerID})
	if err != nil {
		return nil, err
	}
	var r struct {
		Instances *[]pp.Instance `json:"instances"`
	}
	if err := decode(out, &r); err != nil {
		return nil, p.bad(pp.CmdList, stderr, err)
	}
	if r.Instances == nil {
		return nil, p.bad(pp.CmdList, stderr, errors.New(`answer has no "instances"`))
	}
	list := make([]corral.ProviderInstance, 0, len(*r.Instances))
	seen := map[string]bool{}
	for i := range *r.Instances {
		in := &(*r.Instances)[i]
		inst, err := checkInstance(in)
		if err != nil {
			return nil, p.bad(pp.CmdList, stderr, fmt.Errorf("instances[%d]: %w", i, err))
		}
		if in.ControllerID != "" && in.ControllerID != controllerID {
			return nil, p.bad(pp.CmdList, stderr, fmt.Errorf("instances[%d]: controller %q, asked for %q", i, in.ControllerID, controllerID))
		}
		if seen[inst.ProviderID] {
			return nil, p.bad(pp.CmdList, stderr, fmt.Errorf("instances[%d]: provider_id %q listed twice", i, inst.ProviderID))
		}
		seen[inst.ProviderID] = true
		list = append(list, inst)
	}
	return list, nil
}

// Health runs the handshake and the plugin's health command (shown in
// /readyz next to the provider).
func (p *Provider) Health(ctx context.Context) error {
	if err := p.s.check(); err != nil {
		return &PluginError{Provider: p.name, Path: p.s.Path, Command: pp.CmdHealth, Err: err}
	}
	out, stderr, err := p.call(ctx, pp.CmdHealth, pp.Request{}, ids{})
	if err != nil {
		return err
	}
	var r struct {
		Health *pp.Health `json:"health"`
	}
	if err := decode(out, &r); err != nil {
		return p.bad(pp.CmdHealth, stderr, err)
	}
	if r.Health == nil {
		return p.bad(pp.CmdHealth, stderr, errors.New(`answer has no "health"`))
	}
	if !r.Health.OK {
		return &PluginError{Provider: p.name, Path: p.s.Path, Command: pp.CmdHealth, Stderr: stderr,
			Err: fmt.Errorf("%w: unhealthy: %s", corral.ErrUnavailable, r.Health.Message)}
	}
	return nil
}

// Describe names the plugin (shown in /readyz).
func (p *Provider) Describe() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.handshake == nil {
		return "plugin " + p.s.Path
	}
	return fmt.Sprintf("plugin %s (%s %s, protocol %d)", p.s.Path, p.handshake.Name, p.handshake.Version, p.handshake.Protocol)
}

// wireSpec is the spec as the protocol carries it, secrets revealed.
func wireSpec(s corral.InstanceSpec) *pp.Spec {
	out := &pp.Spec{
		InstanceID:   s.InstanceID,
		Name:         s.Name,
		ControllerID: s.ControllerID,
		PoolID:       s.PoolID,
		Image:        s.Image,
		Flavor:       pp.Flavor{CPU: s.Flavor.CPU, MemoryMB: s.Flavor.MemoryMB, DiskMB: s.Flavor.DiskMB, Arch: s.Flavor.Arch},
		Labels:       s.Labels,
		Bootstrap:    pp.Bootstrap{Command: s.Bootstrap.Command},
		RunnerDir:    s.RunnerDir,
		Options:      s.Options,
	}
	if !s.Deadline.IsZero() {
		out.Deadline = s.Deadline.UTC()
	}
	if len(s.Bootstrap.Env) > 0 {
		out.Bootstrap.Env = make(map[string]string, len(s.Bootstrap.Env))
		for k, v := range s.Bootstrap.Env {
			out.Bootstrap.Env[k] = v.Reveal()
		}
	}
	if len(s.Bootstrap.Files) > 0 {
		out.Bootstrap.Files = make(map[string]string, len(s.Bootstrap.Files))
		for k, v := range s.Bootstrap.Files {
			out.Bootstrap.Files[k] = v.Reveal()
		}
	}
	return out
}
