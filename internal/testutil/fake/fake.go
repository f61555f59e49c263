// Package fake has hand-written, in-memory stand-ins of a forge and a
// provider for unit tests and benchmarks of the core. They record calls and
// can be told to fail. End-to-end tests use the stand-in GitHub (or a real
// Gitea) and real providers instead. The fake provider passes
// providertest's suite (fake_test.go).
package fake

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
)

// Forge is an in-memory forge for one or more targets.
type Forge struct {
	mu   sync.Mutex
	next int64
	Regs map[string]*corral.Runner // by name
	Open []corral.JobEvent
	Done map[int64]string // finished jobs: conclusion
	// Hidden job ids are open but left out of OpenJobs, as a paged
	// listing that shifted while it was read leaves them out.
	Hidden map[int64]bool
	// AssumeOpen makes Job report unknown jobs as queued (benchmarks that
	// send webhooks for jobs the fake never listed).
	AssumeOpen bool
	Calls      map[string]int
	MintErr    error
	// OnMint, if set, is called with each spec (e.g. to time the path).
	OnMint func(corral.RunnerSpec)
}

var _ corral.Forge = (*Forge)(nil)
var _ corral.Forges = (*Forge)(nil)

// NewForge returns an empty forge.
func NewForge() *Forge {
	return &Forge{Regs: map[string]*corral.Runner{}, Calls: map[string]int{}}
}

// Forge returns f for every target.
func (f *Forge) Forge(corral.Target) (corral.Forge, error) { return f, nil }

// Parser returns GitHub's parser.
func (f *Forge) Parser(corral.TargetKind) (corral.WebhookParser, error) { return github.Parser{}, nil }

func (f *Forge) count(op string) {
	f.Calls[op]++
}

// MintRunner registers a runner.
func (f *Forge) MintRunner(_ context.Context, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	if f.OnMint != nil {
		f.OnMint(spec)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("mint")
	if f.MintErr != nil {
		return corral.Bootstrap{}, f.MintErr
	}
	if _, ok := f.Regs[spec.Name]; ok {
		return corral.Bootstrap{}, fmt.Errorf("runner %s: %w", spec.Name, corral.ErrConflict)
	}
	f.next++
	f.Regs[spec.Name] = &corral.Runner{ID: f.next, Name: spec.Name, Labels: spec.Labels}
	return corral.Bootstrap{RunnerID: f.next, Command: []string{"run"},
		Env: map[string]corral.Secret{"TOKEN": corral.Secret("secret-" + spec.Name)}}, nil
}

// OpenJobs returns Open.
func (f *Forge) OpenJobs(context.Context) ([]corral.JobEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("jobs")
	out := make([]corral.JobEvent, 0, len(f.Open))
	for _, ev := range f.Open {
		if !f.Hidden[ev.ForgeJobID] {
			out = append(out, ev)
		}
	}
	return out, nil
}

// Job returns an open job from Open, a finished one from Done, or
// ErrNotFound.
func (f *Forge) Job(_ context.Context, id int64, _ string) (corral.JobEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("job")
	for _, ev := range f.Open {
		if ev.ForgeJobID == id {
			return ev, nil
		}
	}
	if c, ok := f.Done[id]; ok {
		return corral.JobEvent{Action: corral.ActionCompleted, ForgeJobID: id, Conclusion: c}, nil
	}
	if f.AssumeOpen {
		return corral.JobEvent{Action: corral.ActionQueued, ForgeJobID: id}, nil
	}
	return corral.JobEvent{}, fmt.Errorf("job %d: %w", id, corral.ErrNotFound)
}

// Runners lists the registrations.
func (f *Forge) Runners(context.Context) ([]corral.Runner, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("runners")
	out := make([]corral.Runner, 0, len(f.Regs))
	for _, r := range f.Regs {
		out = append(out, *r)
	}
	return out, nil
}

// RemoveRunner removes a registration unless it is busy.
func (f *Forge) RemoveRunner(_ context.Context, r corral.Runner) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count("remove")
	cur, ok := f.Regs[r.Name]
	if !ok {
		return nil
	}
	if cur.Busy {
		return fmt.Errorf("runner %s: %w", r.Name, corral.ErrBusy)
	}
	delete(f.Regs, r.Name)
	return nil
}

// SetRunner changes a registration's flags (online, busy).
func (f *Forge) SetRunner(name string, online, busy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.Regs[name]; ok {
		r.Online, r.Busy = online, busy
	}
}

// Count returns the calls of one kind.
func (f *Forge) Count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Calls[op]
}

// Provider is an in-memory provider: instances are map entries. Each
// instance plays providertest's test runner without a process: it "prints"
// the lines the runner prints for its bootstrap, stops after
// CORRAL_TEST_RUN_FOR or at its deadline, and its "processes" (the
// grandchild marker) live until it is deleted. Reopen gives a second
// Provider on the same state, as a restarted corral would see it.
type Provider struct {
	mu        *sync.Mutex
	Instances map[string]corral.ProviderInstance
	Specs     map[string]corral.InstanceSpec
	Calls     map[string]int
	CreateErr error
	DeleteErr error
	Peak      int
	// Images, when set, are the only images Create accepts; another one
	// fails with ErrNotFound, as a missing image does.
	Images []string
	// OnCreate, if set, is called at the start of each Create.
	OnCreate func(corral.InstanceSpec)
	now      func() time.Time
}

var _ corral.Provider = (*Provider)(nil)

// NewProvider returns an empty provider.
func NewProvider() *Provider {
	return &Provider{mu: &sync.Mutex{}, Instances: map[string]corral.ProviderInstance{}, Specs: map[string]corral.InstanceSpec{},
		Calls: map[string]int{}, now: time.Now}
}

// Reopen returns another Provider on p's instances (a corral restart):
// what one creates, the other lists and deletes.
func (p *Provider) Reopen() *Provider {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &Provider{mu: p.mu, Instances: p.Instances, Specs: p.Specs, Calls: p.Calls, Images: p.Images, now: p.now}
}

// Create records an instance.
func (p *Provider) Create(_ context.Context, spec corral.InstanceSpec) (corral.ProviderInstance, error) {
	if p.OnCreate != nil {
		p.OnCreate(spec)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Calls["create"]++
	if p.CreateErr != nil {
		return corral.ProviderInstance{}, p.CreateErr
	}
	if len(p.Images) > 0 && !slices.Contains(p.Images, spec.Image) {
		return corral.ProviderInstance{}, fmt.Errorf("image %q: %w", spec.Image, corral.ErrNotFound)
	}
	if _, ok := p.Instances[spec.InstanceID]; ok {
		return corral.ProviderInstance{}, fmt.Errorf("instance %s exists: %w", spec.InstanceID, corral.ErrConflict)
	}
	pi := corral.ProviderInstance{ProviderID: "p-" + spec.InstanceID, InstanceID: spec.InstanceID, PoolID: spec.PoolID,
		Running: true, CreatedAt: p.now()}
	p.Instances[spec.InstanceID] = pi
	p.Specs[spec.InstanceID] = spec
	if len(p.Instances) > p.Peak {
		p.Peak = len(p.Instances)
	}
	return pi, nil
}

// Delete forgets an instance.
func (p *Provider) Delete(_ context.Context, pi corral.ProviderInstance) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Calls["delete"]++
	if p.DeleteErr != nil {
		return p.DeleteErr
	}
	delete(p.Instances, pi.InstanceID)
	delete(p.Specs, pi.InstanceID)
	return nil
}

// List returns the instances created for controllerID.
func (p *Provider) List(_ context.Context, controllerID string) ([]corral.ProviderInstance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Calls["list"]++
	out := make([]corral.ProviderInstance, 0, len(p.Instances))
	for id, pi := range p.Instances {
		if p.Specs[id].ControllerID != controllerID {
			continue
		}
		pi.Running = pi.Running && p.runningLocked(id)
		out = append(out, pi)
	}
	return out, nil
}

// runningLocked: the simulated runner has not stopped by itself (its run
// time or the instance's deadline passed).
func (p *Provider) runningLocked(id string) bool {
	spec, pi, now := p.Specs[id], p.Instances[id], p.now()
	if !spec.Deadline.IsZero() && !now.Before(spec.Deadline) {
		return false
	}
	if d, err := time.ParseDuration(spec.Bootstrap.Env[envRunFor].Reveal()); err == nil && !now.Before(pi.CreatedAt.Add(d)) {
		return false
	}
	return true
}

// The providertest runner's variables (see providertest.RunTestRunner;
// spelled out here so the core's tests do not import the suite).
const (
	envRunFor     = "CORRAL_TEST_RUN_FOR"
	envEcho       = "CORRAL_TEST_ECHO"
	envReadFile   = "CORRAL_TEST_READ_FILE"
	envGrandchild = "CORRAL_TEST_GRANDCHILD"
)

// Output is what the instance's simulated test runner printed so far.
func (p *Provider) Output(instanceID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	spec, ok := p.Specs[instanceID]
	if !ok {
		return ""
	}
	env := spec.Bootstrap.Env
	var b strings.Builder
	fmt.Fprintf(&b, "corral-test-runner: pid=0 instance=%s\n", spec.InstanceID)
	if v, ok := env[envEcho]; ok {
		fmt.Fprintf(&b, "echo=%s\n", v.Reveal())
	}
	if v, ok := env[envReadFile]; ok {
		fmt.Fprintf(&b, "file=%s\n", spec.Bootstrap.Files[v.Reveal()].Reveal())
	}
	if v, ok := env[envGrandchild]; ok {
		fmt.Fprintf(&b, "grandchild=%s\n", v.Reveal())
	}
	if !p.Instances[instanceID].Running || !p.runningLocked(instanceID) {
		b.WriteString("corral-test-runner: done\n")
	}
	return b.String()
}

// Processes counts the live instances whose simulated runner started a
// grandchild with marker.
func (p *Provider) Processes(marker string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, spec := range p.Specs {
		if spec.Bootstrap.Env[envGrandchild].Reveal() == marker {
			n++
		}
	}
	return n
}

// Exit marks an instance's runner as exited.
func (p *Provider) Exit(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pi, ok := p.Instances[id]; ok {
		pi.Running = false
		p.Instances[id] = pi
	}
}

// Len returns how many instances exist.
func (p *Provider) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.Instances)
}

// Count returns the calls of one kind.
func (p *Provider) Count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Calls[op]
}

// Header builds webhook headers GitHub-style (for handler tests).
func Header(event, delivery, sig string) http.Header {
	h := http.Header{}
	h.Set("X-GitHub-Event", event)
	h.Set("X-GitHub-Delivery", delivery)
	if sig != "" {
		h.Set("X-Hub-Signature-256", sig)
	}
	return h
}
