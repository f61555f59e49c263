// Package garm is the provider type that runs garm's external providers
// unchanged: executables written for garm (github.com/cloudbase/garm) that
// create, delete, get and list instances when called with GARM_COMMAND and
// the other GARM_* variables, read the bootstrap JSON on standard input and
// print instance JSON on standard output.
//
// Every invocation goes through package pluginexec (own process group,
// hard timeout, output cap, no inherited descriptors, minimal
// environment). Every answer is checked (an instance needs a provider_id,
// its name and one of the statuses garm accepts); a provider that hangs,
// crashes or prints garbage gives an *Error naming it, its command and
// the tail of its standard error.
//
// garm's instances fetch their runner credential themselves: their
// userdata calls the metadata URL with a per-instance bearer token. corral
// serves those paths (Metadata) and grants the token when it creates the
// instance.
package garm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/provider/pluginexec"
)

// Error is a failed invocation of a garm provider.
type Error struct {
	Provider string // the provider instance's name
	Path     string
	Command  string
	Err      error
	Stderr   string // its tail
}

func (e *Error) Error() string {
	s := fmt.Sprintf("garm provider %s (%s) %s: %v", e.Provider, e.Path, e.Command, e.Err)
	if e.Stderr != "" {
		s += "; stderr: " + strconv.Quote(e.Stderr)
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Provider runs a garm external provider. It is safe for concurrent use.
type Provider struct {
	name  string
	s     Settings
	meta  provider.InstanceMetadata
	state *state
	log   *slog.Logger
	now   func() time.Time
}

var _ corral.Provider = (*Provider)(nil)

// New returns the provider instance called name. env.DataDir holds its
// state file; env.Metadata grants the instances their tokens (without it
// Create refuses: garm's instances have no other way to their credential).
func New(name string, s Settings, env provider.Env) (*Provider, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", corral.ErrBadInput, err)
	}
	if env.DataDir == "" || !filepath.IsAbs(env.DataDir) {
		return nil, fmt.Errorf("%w: garm provider %s needs corral's data directory (absolute) for its state", corral.ErrBadInput, name)
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.Env = cloneMap(s.Env)
	s.Tools = slices.Clone(s.Tools)
	return &Provider{name: name, s: s, meta: env.Metadata, log: log.With("component", "provider/garm"),
		state: &state{path: filepath.Join(env.DataDir, "garm", name+".json")}, now: time.Now}, nil
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// call is one invocation's variables.
type call struct {
	command, controller, pool, instance string
	extraSpecs                          map[string]any
	stdin                               []byte
}

// run invokes the provider and returns its standard output when it exited
// 0. A non-zero exit is an *Error wrapping corral.ErrNotFound (exit 30),
// corral.ErrConflict (31) or corral.ErrUnavailable.
func (p *Provider) run(ctx context.Context, c call) ([]byte, string, error) {
	res, err := pluginexec.Run(ctx, pluginexec.Cmd{Path: p.s.Executable, Env: p.environ(c), Stdin: c.stdin,
		Timeout: p.s.timeout(c.command), MaxOutput: p.s.maxOutput()})
	if err != nil {
		return nil, res.Stderr, p.err(c.command, res.Stderr, err)
	}
	if res.Exit != nil {
		var kind error
		switch res.ExitCode() {
		case exitNotFound:
			kind = corral.ErrNotFound
		case exitDuplicate:
			kind = corral.ErrConflict
		default:
			kind = corral.ErrUnavailable
		}
		return nil, res.Stderr, p.err(c.command, res.Stderr, fmt.Errorf("%w: failed: %s", kind, res.Died()))
	}
	return res.Stdout, res.Stderr, nil
}

func (p *Provider) err(command, stderr string, err error) error {
	return &Error{Provider: p.name, Path: p.s.Executable, Command: command, Stderr: stderr, Err: err}
}

// bad is an answer that breaks the protocol.
func (p *Provider) bad(command, stderr string, err error) error {
	return p.err(command, stderr, fmt.Errorf("%w: malformed answer: %w", corral.ErrUnavailable, err))
}

// environ is the provider's whole environment: PATH, the configured env
// and garm's variables. Nothing else of corral's environment passes.
func (p *Provider) environ(c call) []string {
	var pairs []string
	for _, k := range sortedKeys(p.s.Env) {
		pairs = append(pairs, k+"="+p.s.Env[k])
	}
	pairs = append(pairs,
		envCommand+"="+c.command,
		envControllerID+"="+c.controller,
		envConfigFile+"="+p.s.ConfigFile,
		envInterfaceVersion+"="+p.s.version(),
	)
	if c.pool != "" {
		pairs = append(pairs, envPoolID+"="+c.pool)
	}
	if c.instance != "" {
		pairs = append(pairs, envInstanceID+"="+c.instance)
	}
	if p.s.version() == Version011 {
		spec, _ := json.Marshal(c.extraSpecs)
		if c.extraSpecs == nil {
			spec = []byte("{}")
		}
		pairs = append(pairs, envPoolExtraSpecs+"="+base64.StdEncoding.EncodeToString(spec))
	}
	return pluginexec.Environ(pairs...)
}

// decodeInstance decodes one instance answer: exactly one JSON object.
func decodeOne(out []byte, v any) error {
	if len(bytes.TrimSpace(out)) == 0 {
		return errors.New("empty answer")
	}
	d := json.NewDecoder(bytes.NewReader(out))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("not garm's instance JSON: %w (answer starts %q)", err, head(out))
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

// check validates an instance as garm does (a provider_id, a name, a
// status garm accepts) and gives it corral's shape. unknown counts as
// running: nothing says the runner exited, and a running one is never
// deleted on a guess.
func check(in Instance) (running bool, err error) {
	switch {
	case in.ProviderID == "":
		return false, fmt.Errorf("instance %q without provider_id", in.Name)
	case in.Name == "":
		return false, fmt.Errorf("instance %s without name", in.ProviderID)
	}
	switch in.Status {
	case statusRunning, statusUnknown:
		return true, nil
	case statusStopped, statusError:
		return false, nil
	}
	return false, fmt.Errorf("instance %s has status %q, want one of %s, %s, %s, %s", in.Name, in.Status,
		statusRunning, statusStopped, statusError, statusUnknown)
}

// fault is the provider_fault of an instance, as text.
func fault(in Instance) string {
	if len(in.ProviderFault) == 0 || string(in.ProviderFault) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(in.ProviderFault, &s) == nil {
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			s = string(b)
		}
		return strings.TrimSpace(s)
	}
	return head(in.ProviderFault)
}

// Create grants the instance its metadata token, then runs CreateInstance
// with garm's bootstrap JSON.
func (p *Provider) Create(ctx context.Context, spec corral.InstanceSpec) (corral.ProviderInstance, error) {
	fail := func(err error) (corral.ProviderInstance, error) {
		return corral.ProviderInstance{}, &corral.CallError{Op: "garm create", Target: spec.PoolID, Err: err}
	}
	if p.meta == nil {
		return fail(p.err(cmdCreate, "", fmt.Errorf("%w: garm instances fetch their runner credential from corral's metadata endpoint, which is not served: set runners.public_url", corral.ErrBadInput)))
	}
	var opt PoolOptions
	if err := provider.DecodePoolOptions(spec.Options, &opt); err != nil {
		return fail(err)
	}
	created := p.now().UTC()
	// Remembered before the provider acts: a crash from here on leaves an
	// instance List maps back to corral's id.
	if err := p.state.add(spec.Name, stateEntry{InstanceID: spec.InstanceID, Controller: spec.ControllerID, PoolID: spec.PoolID, CreatedAt: created}); err != nil {
		return fail(err)
	}
	g, err := p.meta.Grant(spec)
	if err != nil {
		return fail(err)
	}
	boot := p.bootstrap(spec, opt, g)
	in, err := json.Marshal(boot)
	if err != nil {
		p.meta.Revoke(spec.InstanceID)
		return fail(err)
	}
	out, stderr, err := p.run(ctx, call{command: cmdCreate, controller: spec.ControllerID, pool: spec.PoolID,
		extraSpecs: opt.ExtraSpecs, stdin: in})
	if err != nil {
		p.meta.Revoke(spec.InstanceID)
		return fail(err)
	}
	var got Instance
	err = decodeOne(out, &got)
	var running bool
	if err == nil {
		running, err = check(got)
	}
	switch {
	case err != nil:
	case got.Name != spec.Name:
		err = fmt.Errorf("created instance %q, asked for %q", got.Name, spec.Name)
	case got.Status == statusError:
		err = fmt.Errorf("instance %s is in error: %s", got.Name, fault(got))
	}
	if err != nil {
		// The provider may have made something: the orphan sweep finds it
		// by its name in the state.
		p.meta.Revoke(spec.InstanceID)
		p.log.Warn("garm create answer refused", "instance", spec.InstanceID, "err", err)
		return fail(p.bad(cmdCreate, stderr, err))
	}
	return corral.ProviderInstance{ProviderID: got.ProviderID, InstanceID: spec.InstanceID, PoolID: spec.PoolID,
		Running: running, CreatedAt: created}, nil
}

// bootstrap is garm's bootstrap JSON for spec.
func (p *Provider) bootstrap(spec corral.InstanceSpec, opt PoolOptions, g provider.MetadataGrant) Bootstrap {
	b := Bootstrap{
		Name:          spec.Name,
		Tools:         append([]Tool{}, p.s.Tools...),
		RepoURL:       g.RepoURL,
		CallbackURL:   g.CallbackURL,
		MetadataURL:   g.MetadataURL,
		InstanceToken: g.Token,
		SSHKeys:       opt.SSHKeys,
		RunnerGroup:   opt.RunnerGroup,
		OSArch:        garmArch(spec.Flavor.Arch),
		OSType:        opt.OSType,
		Flavor:        opt.Flavor,
		Image:         spec.Image,
		Labels:        spec.Labels,
		PoolID:        spec.PoolID,
		JITConfig:     g.JIT,
	}
	if b.SSHKeys == nil {
		b.SSHKeys = []string{}
	}
	if b.OSType == "" {
		b.OSType = "linux"
	}
	if b.Flavor == "" {
		b.Flavor = fmt.Sprintf("%dcpu%dmb", spec.Flavor.CPU, spec.Flavor.MemoryMB)
	}
	if opt.ExtraSpecs != nil {
		b.ExtraSpecs, _ = json.Marshal(opt.ExtraSpecs)
	}
	return b
}

// garmArch names corral's architectures as garm does.
func garmArch(a string) string {
	switch strings.ToLower(a) {
	case "", "x64", "amd64", "x86_64":
		return "amd64"
	case "arm64", "aarch64":
		return "arm64"
	case "arm":
		return "arm"
	case "x86", "i386":
		return "i386"
	}
	return a
}

// locate finds what garm's commands need of an instance corral names:
// the controller and pool ids and the garm name, from the state (the
// instance's own entry, else the controller last listed with).
func (p *Provider) locate(f stateFile, inst corral.ProviderInstance) (controller, pool, name string) {
	controller, pool = f.Controller, inst.PoolID
	for n, e := range f.Instances {
		if e.InstanceID == inst.InstanceID {
			controller, name = e.Controller, n
			if pool == "" {
				pool = e.PoolID
			}
			break
		}
	}
	return controller, pool, name
}

// Delete runs DeleteInstance; not found (exit 30) is success. It revokes
// the instance's metadata token first. An instance of no pool corral
// knows was never made by it: nothing to do.
func (p *Provider) Delete(ctx context.Context, inst corral.ProviderInstance) error {
	if p.meta != nil {
		p.meta.Revoke(inst.InstanceID)
	}
	f, err := p.state.snapshot()
	if err != nil {
		return err
	}
	controller, pool, name := p.locate(f, inst)
	if pool == "" {
		return nil
	}
	id := inst.ProviderID
	if id == "" { // garm's rule: before a provider_id, the name
		id = name
	}
	if id == "" {
		return nil
	}
	_, _, err = p.run(ctx, call{command: cmdDelete, controller: controller, pool: pool, instance: id})
	if err != nil && !errors.Is(err, corral.ErrNotFound) {
		return err
	}
	if name != "" {
		return p.state.remove(name)
	}
	return nil
}

// Get runs GetInstance; corral.ErrNotFound when the provider says so.
func (p *Provider) Get(ctx context.Context, inst corral.ProviderInstance) (corral.ProviderInstance, error) {
	f, err := p.state.snapshot()
	if err != nil {
		return corral.ProviderInstance{}, err
	}
	controller, pool, _ := p.locate(f, inst)
	out, stderr, err := p.run(ctx, call{command: cmdGet, controller: controller, pool: pool, instance: inst.ProviderID})
	if err != nil {
		return corral.ProviderInstance{}, err
	}
	var got Instance
	err = decodeOne(out, &got)
	var running bool
	if err == nil {
		running, err = check(got)
	}
	if err == nil && got.ProviderID != inst.ProviderID {
		err = fmt.Errorf("get %q answered instance %q", inst.ProviderID, got.ProviderID)
	}
	if err != nil {
		return corral.ProviderInstance{}, p.bad(cmdGet, stderr, err)
	}
	return p.mapped(f, got, pool, running), nil
}

// mapped gives a listed instance corral's id: the one recorded under its
// name, or the name itself for an instance corral does not know (the
// orphan sweep then deletes it by provider id).
func (p *Provider) mapped(f stateFile, in Instance, pool string, running bool) corral.ProviderInstance {
	out := corral.ProviderInstance{ProviderID: in.ProviderID, InstanceID: in.Name, PoolID: pool, Running: running}
	if e, ok := f.Instances[in.Name]; ok {
		out.InstanceID, out.CreatedAt = e.InstanceID, e.CreatedAt
		if out.PoolID == "" {
			out.PoolID = e.PoolID
		}
	}
	return out
}

// List runs ListInstances for every pool corral created instances in (the
// protocol lists one pool at a time). One failing pool fails the whole
// list: a partial list would make live instances look gone.
func (p *Provider) List(ctx context.Context, controllerID string) ([]corral.ProviderInstance, error) {
	f, err := p.state.snapshot()
	if err != nil {
		return nil, err
	}
	var list []corral.ProviderInstance
	var empty []string
	seen := map[string]bool{}
	for _, pool := range f.Pools {
		out, stderr, err := p.run(ctx, call{command: cmdList, controller: controllerID, pool: pool})
		if err != nil {
			return nil, err
		}
		var ins []Instance
		if err := decodeOne(out, &ins); err != nil {
			return nil, p.bad(cmdList, stderr, fmt.Errorf("pool %s: %w", pool, err))
		}
		if len(ins) == 0 {
			empty = append(empty, pool)
		}
		for i, in := range ins {
			running, err := check(in)
			if err != nil {
				return nil, p.bad(cmdList, stderr, fmt.Errorf("pool %s: [%d]: %w", pool, i, err))
			}
			if seen[in.ProviderID] {
				return nil, p.bad(cmdList, stderr, fmt.Errorf("pool %s: [%d]: provider_id %q listed twice", pool, i, in.ProviderID))
			}
			seen[in.ProviderID] = true
			list = append(list, p.mapped(f, in, pool, running))
		}
	}
	if err := p.state.prune(controllerID, empty); err != nil {
		p.log.Warn("garm provider state", "err", err)
	}
	return list, nil
}

// RemoveAll runs RemoveAllInstances: the provider deletes everything
// tagged with the controller id.
func (p *Provider) RemoveAll(ctx context.Context, controllerID string) error {
	_, _, err := p.run(ctx, call{command: cmdRemoveAll, controller: controllerID})
	return err
}

// Start and Stop run StartInstance and StopInstance (corral itself never
// stops an instance: its instances are ephemeral).
func (p *Provider) Start(ctx context.Context, inst corral.ProviderInstance) error {
	return p.power(ctx, cmdStart, inst)
}

// Stop runs StopInstance.
func (p *Provider) Stop(ctx context.Context, inst corral.ProviderInstance) error {
	return p.power(ctx, cmdStop, inst)
}

func (p *Provider) power(ctx context.Context, command string, inst corral.ProviderInstance) error {
	f, err := p.state.snapshot()
	if err != nil {
		return err
	}
	controller, pool, _ := p.locate(f, inst)
	_, _, err = p.run(ctx, call{command: command, controller: controller, pool: pool, instance: inst.ProviderID})
	return err
}

// Health checks the executable and its config file (shown in /readyz).
func (p *Provider) Health(context.Context) error {
	if err := p.s.check(); err != nil {
		return p.err("health", "", err)
	}
	return nil
}

// Describe names the provider (shown in /readyz).
func (p *Provider) Describe() string {
	return fmt.Sprintf("garm external provider %s (interface %s)", p.s.Executable, p.s.version())
}
