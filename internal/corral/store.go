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
	TenantID string
	PoolID   string
	Repo     string // "owner/name"
	// CreatedFrom and CreatedBefore bound the job's creation time in
	// corral: From <= created_at < Before; zero = unbounded.
	CreatedFrom, CreatedBefore time.Time
	AfterID                    int64 // paging: jobs with ID > AfterID, ordered by ID
	Limit                      int   // 0 = no limit
	// Brief reads only the fields a sweep compares (ID, TargetID,
	// ForgeJobID, RunID, Repo, State, CreatedAt, UpdatedAt): a narrower row
	// is a cheaper read of a large fleet. The others are zero.
	Brief bool
}

// InstanceFilter selects instances. Zero fields select everything.
type InstanceFilter struct {
	States   []InstanceState
	PoolID   string
	TenantID string
	JobID    int64
	AfterID  string // paging: instances with ID > AfterID, ordered by ID
	Limit    int
	// Brief reads only what the reconciler's sweeps compare: every field
	// but Labels, Flavor, Attempts, LastError, Reason and DeletedAt, which
	// are zero. A brief row is never to be written back.
	Brief bool
}

// InstanceCount is how many live instances of one pool are in one state.
type InstanceCount struct {
	PoolID string
	State  InstanceState
	N      int
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
	// InstanceCounts counts the live instances by pool and state, in pool
	// and state order: what a pass needs of the many instances it does
	// not act on (a large fleet is mostly busy), without reading them.
	InstanceCounts(ctx context.Context) ([]InstanceCount, error)

	// CatalogVersion is the version of the configuration rows (tenants,
	// targets, pools): every transaction that changes them bumps it, so a
	// replica learns of a change by reading one number.
	CatalogVersion(ctx context.Context) (int64, error)
	// Lease returns the named lease as the store has it (ErrNotFound if it
	// was never taken).
	Lease(ctx context.Context, name string) (Lease, error)
	// LeaseTerms lists the terms of the named lease, oldest first, each
	// with the number of fenced writes committed in it (see CheckFence).
	LeaseTerms(ctx context.Context, name string) ([]LeaseTerm, error)
	// Backoffs lists the pools resting after failures.
	Backoffs(ctx context.Context) ([]Backoff, error)
	// PoolStates maps each pool that is not active to its state (paused
	// or draining); a pool absent from the map is active.
	PoolStates(ctx context.Context) (map[string]PoolState, error)
	// PausedTargets lists the targets paused through the API (a target
	// absent from it takes jobs).
	PausedTargets(ctx context.Context) (map[string]bool, error)

	// UsageSummaries sums up the recorded job usage per tenant,
	// repository, workflow (from the job's JobRun) and job name, ordered
	// so; tenantID "" means all tenants.
	UsageSummaries(ctx context.Context, tenantID string) ([]UsageSummary, error)
	// JobRuns lists the completed jobs kept for CI analytics, oldest
	// completion first.
	JobRuns(ctx context.Context, f JobRunFilter) ([]JobRun, error)

	// Tokens lists the API tokens (revoked and expired ones too), by id.
	Tokens(ctx context.Context) ([]Token, error)
	// TokenByHash returns the token whose secret has this SHA-256
	// (ErrNotFound if none).
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
	// InstanceGrant returns the instance grant whose token has this
	// SHA-256 (ErrNotFound if none).
	InstanceGrant(ctx context.Context, hash []byte) (InstanceGrant, error)
}

// Tx reads and writes the ledger inside one transaction.
type Tx interface {
	ReadTx

	// PutTenant, PutTarget and PutPool insert or replace configuration
	// rows (secrets are not stored: they stay in the config); the Delete
	// methods remove one (nil if absent). Callers bump the catalog version
	// in the same transaction (BumpCatalogVersion).
	PutTenant(ctx context.Context, t Tenant) error
	PutTarget(ctx context.Context, t Target) error
	PutPool(ctx context.Context, p Pool) error
	DeleteTenant(ctx context.Context, id string) error
	DeleteTarget(ctx context.Context, id string) error
	DeletePool(ctx context.Context, id string) error
	// BumpCatalogVersion increments the catalog version and returns it.
	BumpCatalogVersion(ctx context.Context) (int64, error)
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
	// now+ttl, if it is free, expired or already held by holder; held
	// says whether holder has it now, and Lease is the lease as it stands.
	// The lease's Token grows each time the lease starts a new term (a new
	// holder, or the same one after it expired). A backend with a clock of
	// its own (PostgreSQL: the database server's) uses it instead of now,
	// so that replicas never compare expiries with their own clocks.
	AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (l Lease, held bool, err error)
	// ReleaseLease gives the lease up at once if holder has it (a clean
	// shutdown hands the lead over without waiting for the expiry).
	ReleaseLease(ctx context.Context, name, holder string) error
	// CheckFence returns an error wrapping ErrFenced unless the named
	// lease is still in the term of token, and otherwise counts one fenced
	// write in that term (LeaseTerm.Writes), which commits or rolls back
	// with the transaction. Every write of a leader runs it, in the same
	// transaction, as its LAST statement (leader.Fenced): a backend that
	// locks the lease row to check it (PostgreSQL) then holds that lock
	// only until the commit, so a leader's writes in flight never hold up
	// another replica's take-over. A leader whose lease another replica
	// took (it was paused, or cut off) can no longer commit anything. An
	// expired lease that nobody took yet still passes: no other leader
	// exists to conflict with.
	CheckFence(ctx context.Context, name string, token int64) error

	// PutBackoff records a pool resting after failures; DeleteBackoff
	// ends the rest. A new leader reads them back (Backoffs).
	PutBackoff(ctx context.Context, b Backoff) error
	DeleteBackoff(ctx context.Context, poolID, kind string) error

	// SetPoolState records a pool's operational state (PoolActive forgets
	// it). It is kept apart from the pool's configuration row, so that
	// writing the catalog does not change it.
	SetPoolState(ctx context.Context, poolID string, st PoolState, at time.Time) error
	// SetTargetPaused pauses a target (its jobs wait for a runner, nothing
	// is lost) or resumes it. Like a pool's state it is kept apart from the
	// target's configuration row.
	SetTargetPaused(ctx context.Context, targetID string, paused bool, at time.Time) error

	// PutJobUsage records what a job used (right-sizing), replacing an
	// earlier record of the same job.
	PutJobUsage(ctx context.Context, u JobUsage) error
	// PutJobRun records a completed job for CI analytics, replacing an
	// earlier record of the same job.
	PutJobRun(ctx context.Context, r JobRun) error

	// PutToken inserts a token (ErrConflict if its id or hash exists).
	PutToken(ctx context.Context, t Token) error
	// RevokeToken marks a token revoked at at (ErrNotFound if unknown; a
	// second revocation keeps the first time).
	RevokeToken(ctx context.Context, id string, at time.Time) error
	// TouchToken records a use of the token at at.
	TouchToken(ctx context.Context, id string, at time.Time) error

	// PutInstanceGrant records a grant, replacing every earlier grant of
	// the same instance (ErrConflict if its hash exists).
	PutInstanceGrant(ctx context.Context, g InstanceGrant) error
	// UseInstanceGrant records that the grant gave piece: ErrConflict if
	// it gave it before, ErrNotFound if there is no such grant.
	UseInstanceGrant(ctx context.Context, hash []byte, piece string) error
	// DeleteInstanceGrants deletes the instance's grants.
	DeleteInstanceGrants(ctx context.Context, instanceID string) error
	// SweepInstanceGrants deletes the grants whose CallBy is before
	// before, and returns how many.
	SweepInstanceGrants(ctx context.Context, before time.Time) (int, error)
}

// Lease is a named lease: who holds it, until when, and its fencing token.
type Lease struct {
	Name    string
	Holder  string
	Token   int64
	Expires time.Time
}

// LeaseTerm is one term of a lease: its token, the holder that started
// it and when (on the backend's clock), and how many fenced writes were
// committed in it. A stale term whose count still grows would be a
// fencing failure; tests read it to prove there is none.
type LeaseTerm struct {
	Name    string
	Term    int64
	Holder  string
	Started time.Time
	Writes  int64
}

// Backoff is a pool resting after failures of one kind ("provider" or
// "refused") until Until.
type Backoff struct {
	PoolID    string
	Kind      string
	Failures  int
	Until     time.Time
	LastError string
}
