package corral

import (
	"context"
	"encoding/json"
	"time"
)

// InstanceSpec asks a provider for one instance.
type InstanceSpec struct {
	InstanceID   string
	Name         string
	ControllerID string // tags the instance so List finds it after a crash
	PoolID       string
	Image        string
	Flavor       Flavor
	Labels       []string
	Bootstrap    Bootstrap
	// Deadline is the instance's maximum lifetime. The instance enforces
	// it itself, so it dies even when corral is down.
	Deadline time.Time
	// RunnerDir, when set, is a host directory holding an unpacked runner
	// release that corral manages (package runners): providers that can
	// share a host directory give it to the instance read-only, at
	// RunnerMount inside containers.
	RunnerDir string
	// Options are the pool's options for its provider type (JSON of the
	// type's pool-options struct, e.g. Docker-in-Docker); the provider
	// decodes them. Empty: none.
	Options json.RawMessage
}

// RunnerMount is where containers see InstanceSpec.RunnerDir.
const RunnerMount = "/opt/corral/runner"

// ProviderInstance is an instance as its provider sees it.
type ProviderInstance struct {
	ProviderID string
	InstanceID string
	PoolID     string
	// Running is false once the runner has exited (its process, container
	// or machine stopped) but the instance is not deleted yet.
	Running   bool
	CreatedAt time.Time
}

// ProviderDef is a named provider instance as declared in the config and
// kept in the store: its type and its settings (JSON of the type's
// settings struct; secrets by reference only). The store keeps it so that
// a provider removed from the config can still be opened to delete the
// instances it made.
type ProviderDef struct {
	Name      string
	Type      string
	Settings  json.RawMessage
	UpdatedAt time.Time
	// Concurrency caps the calls under way at once to this provider
	// instance, over all its pools (config key concurrency); 0 = no cap
	// beyond each pool's. Not kept in the store: a retired provider is
	// only asked to delete.
	Concurrency int
}

// Provider creates, deletes and lists instances.
type Provider interface {
	// Create starts an instance and returns the provider's id for it.
	Create(ctx context.Context, spec InstanceSpec) (ProviderInstance, error)
	// Delete destroys an instance and wipes what it wrote. Deleting an
	// instance that is already gone returns nil.
	Delete(ctx context.Context, inst ProviderInstance) error
	// List returns every instance tagged with the controller id, running
	// or exited.
	List(ctx context.Context, controllerID string) ([]ProviderInstance, error)
}

// ExitNotifier is implemented by providers that learn at once when an
// instance's runner exits (a child process ends). The reconciler's provider
// sweep finds exits anyway; this only makes cleanup faster.
type ExitNotifier interface {
	Exited() <-chan string // instance ids
}

// LogReader is implemented by providers that can show the end of a
// runner's output (its log), read before the instance is deleted.
type LogReader interface {
	RunnerLog(ctx context.Context, inst ProviderInstance, maxBytes int) (string, error)
}

// Usage is what an instance has used so far, as its provider measures it
// (cgroup statistics for processes and containers).
type Usage struct {
	// CPUSeconds is the CPU time used since the instance started, in
	// seconds (user plus system, all its processes).
	CPUSeconds float64
	// MemoryBytes is the memory in use now; MemoryPeakBytes the most in
	// use at any time since the instance started, when the provider can
	// tell (0 otherwise: a sampler then keeps the highest MemoryBytes).
	MemoryBytes     int64
	MemoryPeakBytes int64
}

// StatsReader is implemented by providers that can measure an instance's
// CPU and memory use while it lives (right-sizing samples it).
type StatsReader interface {
	Stats(ctx context.Context, inst ProviderInstance) (Usage, error)
}

// Kinds of provider calls (metrics: provider errors by kind), a fixed list.
// A provider has no "get": Stats and RunnerLog read one instance.
const (
	ProviderCallCreate = "create"
	ProviderCallDelete = "delete"
	ProviderCallList   = "list"
	ProviderCallStats  = "stats"
	ProviderCallLog    = "log"
)

// ProviderCalls lists every kind of provider call.
var ProviderCalls = []string{ProviderCallCreate, ProviderCallDelete, ProviderCallList, ProviderCallStats, ProviderCallLog}
