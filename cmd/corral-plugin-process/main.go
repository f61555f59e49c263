// Command corral-plugin-process is the example corral provider plugin
// (docs/plugins.md): it speaks corral's plugin protocol through the Go SDK
// (pkg/providerplugin) and backs instances by real processes, with the
// code of corral's process provider. Each instance runs under this same
// binary acting as its shim (`corral-plugin-process shim ...`), in its own
// session, so it outlives the plugin process, which exits after every
// command; the shim enforces the deadline itself.
//
// Its config file (config_file in corral's config, JSON):
//
//	{"dir": "/var/lib/corral-plugin-process", "namespaces": "auto", "disk_mb": 0,
//	 "hide": ["/var/lib/corral"], "keep": ["/usr/local/bin/corral"]}
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/process"
	pp "github.com/corral-ci/corral/pkg/providerplugin"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

// Config is the plugin's config file.
type Config struct {
	Dir        string   `json:"dir"`        // instances live here (required, absolute)
	Namespaces string   `json:"namespaces"` // auto (default), on or off
	DiskMB     int      `json:"disk_mb"`    // cap of each instance's tmpfs when root; 0: the flavor's disk
	Hide       []string `json:"hide"`       // host paths runners must not see (corral's data directory)
	Keep       []string `json:"keep"`       // host paths runners see read-only even under hide or the private /tmp
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "shim" {
		os.Exit(shim(os.Args[2:]))
	}
	var p pp.Provider
	p, err := open()
	if err != nil {
		// Still answer in the protocol, so corral shows why.
		p = broken{err}
	}
	pp.Serve(pp.Info{Name: "corral-plugin-process", Version: version}, p)
}

func shim(args []string) int {
	err := process.RunShim(context.Background(), args)
	var ee *process.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "corral-plugin-process shim:", err)
		return 2
	}
	return 0
}

func open() (*plugin, error) {
	path := pp.ConfigFile()
	if path == "" {
		return nil, pp.Errorf(pp.KindBadInput, "no config file: set config_file in corral's provider settings")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, pp.Errorf(pp.KindBadInput, "config file: %v", err)
	}
	var c Config
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return nil, pp.Errorf(pp.KindBadInput, "config file %s: %v", path, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	prov, err := process.New(process.Config{
		Dir:        c.Dir,
		Shim:       []string{exe, "shim"},
		Namespaces: c.Namespaces,
		DiskMB:     c.DiskMB,
		Hide:       c.Hide,
		Keep:       append([]string{exe}, c.Keep...),
	})
	if err != nil {
		return nil, pp.Errorf(pp.KindBadInput, "config file %s: %v", path, err)
	}
	return &plugin{dir: c.Dir, p: prov}, nil
}

type plugin struct {
	dir string
	p   *process.Provider
}

// lock serializes creates of concurrent invocations (process.LockDir).
func (pl *plugin) lock() (func(), error) {
	unlock, err := process.LockDir(pl.dir)
	if err != nil {
		return nil, pp.Errorf(pp.KindUnavailable, "%v", err)
	}
	return unlock, nil
}

func (pl *plugin) Create(ctx context.Context, s pp.Spec) (pp.Instance, error) {
	unlock, err := pl.lock()
	if err != nil {
		return pp.Instance{}, err
	}
	defer unlock()
	spec := corral.InstanceSpec{
		InstanceID:   s.InstanceID,
		Name:         s.Name,
		ControllerID: s.ControllerID,
		PoolID:       s.PoolID,
		Image:        s.Image,
		Flavor:       corral.Flavor{CPU: s.Flavor.CPU, MemoryMB: s.Flavor.MemoryMB, DiskMB: s.Flavor.DiskMB, Arch: s.Flavor.Arch},
		Labels:       s.Labels,
		Bootstrap:    corral.Bootstrap{Command: s.Bootstrap.Command, Env: map[string]corral.Secret{}, Files: map[string]corral.Secret{}},
		Deadline:     s.Deadline,
		RunnerDir:    s.RunnerDir,
	}
	for k, v := range s.Bootstrap.Env {
		spec.Bootstrap.Env[k] = corral.Secret(v)
	}
	for k, v := range s.Bootstrap.Files {
		spec.Bootstrap.Files[k] = corral.Secret(v)
	}
	inst, err := pl.p.Create(ctx, spec)
	if err != nil {
		return pp.Instance{}, wireErr(err)
	}
	return wire(inst, s.ControllerID), nil
}

func (pl *plugin) Delete(ctx context.Context, ref pp.InstanceRef) error {
	return wireErr(pl.p.Delete(ctx, corral.ProviderInstance{ProviderID: ref.ProviderID, InstanceID: ref.InstanceID}))
}

func (pl *plugin) Get(ctx context.Context, ref pp.InstanceRef) (pp.Instance, error) {
	inst, err := pl.p.Get(ctx, ref.ProviderID)
	if err != nil {
		return pp.Instance{}, wireErr(err)
	}
	return wire(inst, ""), nil
}

func (pl *plugin) List(ctx context.Context, controllerID string) ([]pp.Instance, error) {
	list, err := pl.p.List(ctx, controllerID)
	if err != nil {
		return nil, wireErr(err)
	}
	out := make([]pp.Instance, 0, len(list))
	for _, inst := range list {
		out = append(out, wire(inst, controllerID))
	}
	return out, nil
}

func (pl *plugin) Health(ctx context.Context) error { return pl.p.Health(ctx) }

func wire(inst corral.ProviderInstance, controller string) pp.Instance {
	state := pp.StateStopped
	if inst.Running {
		state = pp.StateRunning
	}
	return pp.Instance{ProviderID: inst.ProviderID, InstanceID: inst.InstanceID, PoolID: inst.PoolID,
		ControllerID: controller, State: state, CreatedAt: inst.CreatedAt}
}

// wireErr gives corral's error kinds to the protocol's.
func wireErr(err error) error {
	if err == nil {
		return nil
	}
	kind := pp.KindInternal
	switch {
	case errors.Is(err, corral.ErrNotFound):
		kind = pp.KindNotFound
	case errors.Is(err, corral.ErrBadInput):
		kind = pp.KindBadInput
	case errors.Is(err, corral.ErrConflict):
		kind = pp.KindConflict
	case errors.Is(err, corral.ErrUnavailable):
		kind = pp.KindUnavailable
	}
	return &pp.Error{Kind: kind, Message: err.Error()}
}

// broken answers every command with the error that kept the plugin from
// opening (a bad config file).
type broken struct{ err error }

func (b broken) Create(context.Context, pp.Spec) (pp.Instance, error) { return pp.Instance{}, b.err }
func (b broken) Delete(context.Context, pp.InstanceRef) error         { return b.err }
func (b broken) Get(context.Context, pp.InstanceRef) (pp.Instance, error) {
	return pp.Instance{}, b.err
}
func (b broken) List(context.Context, string) ([]pp.Instance, error) { return nil, b.err }
func (b broken) Health(context.Context) error                        { return b.err }
