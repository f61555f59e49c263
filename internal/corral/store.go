package corral

import (
	"context"
	"time"
)

// Store is the state of record. Update runs fn in one read-write
// transaction: all of fn's writes commit together or not at all, and
// Update returns only after the commit is durable. fn may be called again
// if the backend must retry (serialization failure), so it must not have
// side effects outside the transaction.
type Store interface {
	Update(ctx context.Context, fn func(Tx) error) error
	View(ctx context.Context, fn func(ReadTx) error) error
	Close() error
}

// JobFilter selects jobs. Zero fields select everything.
type JobFilter struct {
	States   []JobState
	TargetID string
	PoolID   string
	AfterID  int64 // paging: jobs with ID > AfterID, ordered by ID
	Limit    int   // 0 = no limit
}

// InstanceFilter selects instances. Zero fields select everything.
type InstanceFilter struct {
	States  []InstanceState
	PoolID  string
	JobID   int64
	AfterID string // paging: instances with ID > AfterID, ordered by ID
	Limit   int
}

// CountFilter counts live instances (every state but deleted). Empty
// fields count across all pools or tenants.
type CountFilter struct {
	PoolID   string
	TenantID string
}

// ReadTx reads the ledger.
type ReadTx interface {
	Tenants(ctx context.Context) ([]Tenant, error)
	Targets(ctx context.Context) ([]Target, error)
	Pools(ctx context.Context) ([]Pool, error)
	// ProviderDefs lists the provider instances recorded, by name.
	ProviderDefs(ctx context.Context) ([]ProviderDef, error)

	Job(ctx context.Context, id int64) (Job, error)
	JobByForgeID(ctx context.Context, targetID string, forgeJobID int64) (Job, error)
	Jobs(ctx context.Context, f JobFilter) ([]Job, error)
	Timeline(ctx context.Context, jobID int64) ([]Event, error)

	Instance(ctx context.Context, id string) (Instance, error)
	InstanceByName(ctx context.Context, name string) (Instance, error)
	Instances(ctx context.Context, f InstanceFilter) ([]Instance, error)
	CountInstances(ctx context.Context, f CountFilter) (int, error)
}

// Tx reads and writes the ledger inside one transaction.
type Tx interface {
	ReadTx

	// PutTenant, PutTarget and PutPool insert or replace configuration
	// rows (secrets are not stored: they stay in the config).
	PutTenant(ctx context.Context, t Tenant) error
	PutTarget(ctx context.Context, t Target) error
	PutPool(ctx context.Context, p Pool) error
	// PutProviderDef inserts or replaces a provider instance's definition
	// by name; DeleteProviderDef forgets one (nil if it is unknown).
	PutProviderDef(ctx context.Context, d ProviderDef) error
	DeleteProviderDef(ctx context.Context, name string) error

	// InsertDelivery records a webhook delivery id for a target. It
	// returns false if the id was recorded before (a duplicate).
	InsertDelivery(ctx context.Context, targetID, deliveryID string, at time.Time) (bool, error)
	// PruneDeliveries forgets delivery ids recorded before t.
	PruneDeliveries(ctx context.Context, before time.Time) (int, error)

	// PutJob inserts a job when j.ID is 0 (setting j.ID; ErrConflict if
	// the target already has that forge job id) and updates it otherwise.
	PutJob(ctx context.Context, j *Job) error
	AddEvent(ctx context.Context, e Event) error

	// PutInstance inserts or updates an instance by its ID. Inserting a
	// second instance with the same Name returns ErrConflict.
	PutInstance(ctx context.Context, in *Instance) error

	// LockLimits serializes reservations: after it returns, no other
	// transaction can insert or revive an instance of this tenant or pool
	// (nor, globally, any instance) until this one ends. Lock order is
	// fixed (global, tenant, pool) so it cannot deadlock.
	LockLimits(ctx context.Context, tenantID, poolID string) error

	// AcquireLease takes or renews the named lease for holder until
	// now+ttl, if it is free, expired or already held by holder.
	AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
}
