// Package shoes is the provider type whose machines are made by one of
// myshoes' "shoes" provider plugins (shoes-lxd, shoes-aws, ...), run
// unchanged: an executable that corral starts and talks to through
// hashicorp/go-plugin over gRPC (the service in shoespb/shoes.proto),
// with myshoes' handshake.
//
// The protocol has two calls: AddInstance (runner name, setup script,
// resource type, labels; answers the machine's cloud id) and
// DeleteInstance (cloud id). corral writes the setup script (script.go):
// it starts the runner with the one-time credential corral minted. There
// is no listing, so corral keeps its own record of every machine it asked
// for (ledger.go) and List answers from it: the orphan sweep deletes what
// corral asked for and no longer needs, but cannot see machines made
// outside these records, nor tell that a runner exited (Running stays
// true until the forge reports the job done or the deadline passes).
//
// One plugin process serves all calls; it is started at the first call
// and again after it died or was killed at a timeout, runs in its own
// process group with only PATH and the configured environment, and dies
// with corral.
package shoes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/plugin"
	"github.com/corral-ci/corral/internal/provider/shoes/shoespb"
)

// Provider runs one shoes plugin. It is safe for concurrent use.
type Provider struct {
	name  string
	s     Settings
	log   *slog.Logger
	led   *ledger
	clock func() time.Time

	mu sync.Mutex
	c  *conn // the running plugin, nil before the first call
}

var _ corral.Provider = (*Provider)(nil)

// New returns the provider instance called name. It does no I/O: the
// plugin starts at the first call.
func New(name string, s Settings, log *slog.Logger) (*Provider, error) {
	err := s.Validate()
	if err == nil && s.StateDir == "" {
		err = errors.New("state_dir: required (corral's data directory gives the default)")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", corral.ErrBadInput, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.Args = slices.Clone(s.Args)
	return &Provider{name: name, s: s, log: log.With("component", "provider/shoes", "provider", name),
		led: &ledger{dir: s.StateDir}, clock: time.Now}, nil
}

// runnerName is the name AddInstance gets.
func (p *Provider) runnerName(spec corral.InstanceSpec) string {
	if p.s.RunnerName == NameMyshoes {
		return "myshoes-" + asUUID(spec.InstanceID)
	}
	if spec.Name != "" {
		return spec.Name
	}
	return spec.InstanceID
}

// asUUID writes a 32-digit hex id as a UUID (8-4-4-4-12); other ids are
// returned as they are.
func asUUID(id string) string {
	if len(id) != 32 {
		return id
	}
	for _, r := range id {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return id
		}
	}
	return id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:]
}

func createErr(spec corral.InstanceSpec, err error) error {
	return &corral.CallError{Op: "shoes create", Target: spec.PoolID, Err: err}
}

// Create asks the plugin for a machine that runs the setup script.
func (p *Provider) Create(ctx context.Context, spec corral.InstanceSpec) (corral.ProviderInstance, error) {
	if spec.ControllerID == "" {
		return corral.ProviderInstance{}, createErr(spec, fmt.Errorf("%w: empty controller id", corral.ErrBadInput))
	}
	var opts PoolOptions
	if len(spec.Options) > 0 {
		if err := json.Unmarshal(spec.Options, &opts); err != nil {
			return corral.ProviderInstance{}, createErr(spec, fmt.Errorf("%w: pool options: %w", corral.ErrBadInput, err))
		}
	}
	size, err := pickSize(p.s.ResourceTypes, spec.Flavor, opts.ResourceType)
	if err != nil {
		return corral.ProviderInstance{}, createErr(spec, err)
	}
	script, err := setupScript(spec, &p.s)
	if err != nil {
		return corral.ProviderInstance{}, createErr(spec, err)
	}
	rec := &record{InstanceID: spec.InstanceID, ControllerID: spec.ControllerID, PoolID: spec.PoolID,
		RunnerName: p.runnerName(spec), Labels: slices.Clone(spec.Labels), CreatedAt: p.clock().UTC()}
	if old, err := p.led.get(spec.InstanceID); err != nil {
		return corral.ProviderInstance{}, createErr(spec, err)
	} else if old != nil {
		return corral.ProviderInstance{}, createErr(spec, fmt.Errorf("%w: instance %s exists (cloud id %q)", corral.ErrConflict, spec.InstanceID, old.CloudID))
	}
	// Recorded before the call: if corral dies during it, the record is
	// how the machine is found again.
	if err := p.led.put(rec); err != nil {
		return corral.ProviderInstance{}, createErr(spec, err)
	}
	var resp *shoespb.AddResponse
	nothing, err := p.call(ctx, "AddInstance", p.s.timeout(p.s.Timeouts.Create, DefaultCreateTimeout), func(ctx context.Context, c shoespb.ShoesClient) error {
		var err error
		resp, err = c.AddInstance(ctx, &shoespb.AddRequest{RunnerName: rec.RunnerName, SetupScript: script, Size: size, Labels: spec.Labels})
		return err
	})
	if err == nil && resp.GetCloudId() == "" {
		err = &plugin.PluginError{Provider: p.name, Path: p.s.Path, Command: "AddInstance", Stderr: p.stderr(),
			Err: fmt.Errorf("%w: malformed answer: no cloud_id", corral.ErrUnavailable)}
		nothing = false // something may have been made
	}
	if err != nil {
		if nothing {
			// No call, or the plugin refused: nothing was made, as far
			// as it says.
			if derr := p.led.drop(spec.InstanceID); derr != nil {
				p.log.Warn("drop record", "instance", spec.InstanceID, "err", derr)
			}
		} else {
			// Outcome unknown: the record stays, so that Delete and
			// the orphan sweep try the runner name as the cloud id.
			p.log.Warn("AddInstance outcome unknown; the record stays for cleanup", "instance", spec.InstanceID, "runner", rec.RunnerName, "err", err)
		}
		return corral.ProviderInstance{}, createErr(spec, err)
	}
	rec.CloudID, rec.ShoesType, rec.IPAddress = resp.GetCloudId(), resp.GetShoesType(), resp.GetIpAddress()
	if resp.GetSize() != shoespb.Size_SIZE_UNKNOWN {
		rec.ResourceType = sizeName(resp.GetSize())
	} else {
		rec.ResourceType = sizeName(size)
	}
	if err := p.led.put(rec); err != nil {
		// The machine exists but corral could not note its cloud id:
		// delete it rather than lose it.
		p.log.Warn("record of a new machine failed; deleting it", "instance", spec.InstanceID, "cloud_id", rec.CloudID, "err", err)
		if derr := p.deleteCloud(ctx, rec.CloudID, spec.Labels); derr != nil {
			p.log.Warn("delete unrecorded machine", "cloud_id", rec.CloudID, "err", derr)
		}
		return corral.ProviderInstance{}, createErr(spec, err)
	}
	p.log.Info("shoes machine added", "instance", spec.InstanceID, "cloud_id", rec.CloudID, "shoes_type", rec.ShoesType,
		"resource_type", rec.ResourceType, "ip", rec.IPAddress)
	return rec.instance(), nil
}

func (p *Provider) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c == nil {
		return ""
	}
	return p.c.stderr.String()
}

// deleteCloud asks the plugin to delete a machine; not found is success.
func (p *Provider) deleteCloud(ctx context.Context, cloudID string, labels []string) error {
	_, err := p.call(ctx, "DeleteInstance", p.s.timeout(p.s.Timeouts.Delete, DefaultDeleteTimeout), func(ctx context.Context, c shoespb.ShoesClient) error {
		_, err := c.DeleteInstance(ctx, &shoespb.DeleteRequest{CloudId: cloudID, Labels: labels})
		return err
	})
	if errors.Is(err, corral.ErrNotFound) {
		return nil
	}
	return err
}

// Delete asks the plugin to delete the machine (by the cloud id in
// corral's record, else the one given), then forgets it.
func (p *Provider) Delete(ctx context.Context, inst corral.ProviderInstance) error {
	var rec *record
	if inst.InstanceID != "" {
		r, err := p.led.get(inst.InstanceID)
		if err != nil && !errors.Is(err, corral.ErrBadInput) {
			return err
		}
		rec = r
	}
	cloudID, labels := inst.ProviderID, []string(nil)
	if rec != nil {
		cloudID, labels = rec.providerID(), rec.Labels
	}
	if cloudID == "" {
		return nil // never made, never recorded
	}
	err := p.deleteCloud(ctx, cloudID, labels)
	if err != nil && rec != nil && rec.CloudID == "" && errors.Is(err, corral.ErrBadInput) {
		// The runner name was only a guess at the cloud id of a machine
		// whose AddInstance never answered, and the plugin refuses it.
		p.log.Warn("forgetting a machine whose cloud id is unknown; check the cloud for it", "instance", rec.InstanceID, "runner", rec.RunnerName, "err", err)
		err = nil
	}
	if err != nil {
		return err
	}
	if rec != nil {
		return p.led.drop(rec.InstanceID)
	}
	return nil
}

// List answers from corral's records of the machines it asked for (the
// protocol cannot list): those of the controller. A machine whose
// AddInstance never answered is listed not running, under its runner name.
func (p *Provider) List(_ context.Context, controllerID string) ([]corral.ProviderInstance, error) {
	recs, err := p.led.all()
	if err != nil {
		return nil, err
	}
	out := make([]corral.ProviderInstance, 0, len(recs))
	for i := range recs {
		if recs[i].ControllerID == controllerID {
			out = append(out, recs[i].instance())
		}
	}
	return out, nil
}

// Health starts the plugin if it is not running (its handshake).
func (p *Provider) Health(context.Context) error {
	_, err := p.connect()
	return err
}

// Describe names the plugin (shown in /readyz).
func (p *Provider) Describe() string {
	return "shoes plugin " + p.s.Path
}
