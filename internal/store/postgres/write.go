package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store"
	"github.com/jackc/pgx/v5"
)

func (t *tx) PutTenant(ctx context.Context, x corral.Tenant) error {
	_, err := t.exec(ctx, `INSERT INTO tenants (id, max_instances, from_api) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET max_instances = EXCLUDED.max_instances, from_api = EXCLUDED.from_api`, x.ID, x.MaxInstances, x.FromAPI)
	if err != nil {
		return fmt.Errorf("put tenant %s: %w", x.ID, err)
	}
	return nil
}

// PutTarget stores x without its secrets.
func (t *tx) PutTarget(ctx context.Context, x corral.Target) error {
	data, err := store.EncodeTarget(x)
	if err == nil {
		_, err = t.exec(ctx, `INSERT INTO targets (id, tenant_id, data) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, data = EXCLUDED.data`, x.ID, x.TenantID, data)
	}
	if err != nil {
		return fmt.Errorf("put target %s: %w", x.ID, err)
	}
	return nil
}

func (t *tx) PutPool(ctx context.Context, p corral.Pool) error {
	data, err := store.EncodePool(p)
	if err == nil {
		_, err = t.exec(ctx, `INSERT INTO pools (id, tenant_id, data) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, data = EXCLUDED.data`, p.ID, p.TenantID, data)
	}
	if err != nil {
		return fmt.Errorf("put pool %s: %w", p.ID, err)
	}
	return nil
}

func (t *tx) InsertDelivery(ctx context.Context, targetID, deliveryID string, at time.Time) (bool, error) {
	tag, err := t.exec(ctx, `INSERT INTO deliveries (target_id, delivery_id, at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, targetID, deliveryID, at.Truncate(time.Microsecond).UTC())
	if err != nil {
		return false, fmt.Errorf("insert delivery %s/%s: %w", targetID, deliveryID, err)
	}
	return tag.RowsAffected() == 1, nil
}

func (t *tx) PruneDeliveries(ctx context.Context, before time.Time) (int, error) {
	tag, err := t.exec(ctx, "DELETE FROM deliveries WHERE at < $1", before.Truncate(time.Microsecond).UTC())
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

func jobArgs(j *corral.Job) ([]any, error) {
	labels, err := store.EncodeStrings(j.Labels)
	if err != nil {
		return nil, err
	}
	routes, err := store.EncodeRoutes(j.Routes)
	if err != nil {
		return nil, err
	}
	return []any{j.TargetID, j.TenantID, j.ForgeJobID, j.RunID, j.RunAttempt, j.Repo, j.Name, labels,
		string(j.State), j.Conclusion, routes, j.Reason, j.PoolID, j.InstanceID, j.RunnerName,
		tv(j.CreatedAt), tv(j.QueuedAt), tv(j.StartedAt), tv(j.CompletedAt), tv(j.UpdatedAt)}, nil
}

// PutJob inserts (j.ID 0) or updates a job. Its ErrConflict comes in two
// kinds on PostgreSQL:
//
//   - Inserting a (target, forge job id) that exists, or that a concurrent
//     transaction inserts first (two replicas ingesting the first event of
//     one new job): INSERT ... ON CONFLICT DO NOTHING waits for the other
//     transaction and inserts nothing. The transaction stays usable: fn may
//     go on, and JobByForgeID then returns (and locks) the winner's row.
//   - Updating a job onto another job's (target, forge job id): found by
//     the UPDATE itself when that job is committed (the transaction stays
//     usable); only a concurrent, uncommitted one makes the unique index
//     fail (23505), which aborts the transaction. Update then returns an
//     error wrapping corral.ErrConflict, whatever fn did next, so that the
//     caller retries the whole Update.
func (t *tx) PutJob(ctx context.Context, j *corral.Job) error {
	args, err := jobArgs(j)
	if err != nil {
		return fmt.Errorf("put job %s/%d: %w", j.TargetID, j.ForgeJobID, err)
	}
	if j.ID == 0 {
		// DO NOTHING + RETURNING: a duplicate returns no row instead of
		// aborting the transaction.
		var id int64
		err := t.queryRow(ctx, `INSERT INTO jobs (target_id, tenant_id, forge_job_id, run_id, run_attempt, repo, name, labels,
			state, conclusion, routes, reason, pool_id, instance_id, runner_name,
			created_at, queued_at, started_at, completed_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
			ON CONFLICT (target_id, forge_job_id) DO NOTHING RETURNING id`, args...).Scan(&id)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			err = corral.ErrConflict
		case pgCode(err) == "23505": // not the arbiter index: aborted
			err = fmt.Errorf("%w (%w)", corral.ErrConflict, err)
		}
		if err != nil {
			return fmt.Errorf("put job %s/%d: %w", j.TargetID, j.ForgeJobID, err)
		}
		j.ID = id
		return nil
	}
	tag, err := t.exec(ctx, `UPDATE jobs SET target_id = $1, tenant_id = $2, forge_job_id = $3, run_id = $4,
		run_attempt = $5, repo = $6, name = $7, labels = $8, state = $9, conclusion = $10, routes = $11,
		reason = $12, pool_id = $13, instance_id = $14, runner_name = $15, created_at = $16, queued_at = $17,
		started_at = $18, completed_at = $19, updated_at = $20
		WHERE id = $21 AND NOT EXISTS (SELECT 1 FROM jobs AS o
			WHERE o.target_id = $1 AND o.forge_job_id = $3 AND o.id <> $21)`, append(args, j.ID)...)
	switch {
	case pgCode(err) == "23505": // moved onto a concurrent insert's (target, forge id)
		err = fmt.Errorf("%w (%w)", corral.ErrConflict, err)
	case err == nil && tag.RowsAffected() == 0:
		// Missing, or moved onto another job's (target, forge id).
		var exists bool
		if err = t.queryRow(ctx, "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1)", j.ID).Scan(&exists); err == nil {
			err = corral.ErrNotFound
			if exists {
				err = corral.ErrConflict
			}
		}
	}
	if err != nil {
		return fmt.Errorf("put job %d (%s/%d): %w", j.ID, j.TargetID, j.ForgeJobID, err)
	}
	return nil
}

// AddEvent inserts only if the job exists, so that an unknown job is
// ErrNotFound without aborting the transaction (the foreign key stays as a
// guard).
func (t *tx) AddEvent(ctx context.Context, e corral.Event) error {
	tag, err := t.exec(ctx, `INSERT INTO events (job_id, at, kind, instance_id, detail)
		SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1)`,
		e.JobID, tv(e.At), string(e.Kind), e.InstanceID, e.Detail)
	switch {
	case pgCode(err) == "23503", err == nil && tag.RowsAffected() == 0:
		err = corral.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("add event %s to job %d: %w", e.Kind, e.JobID, err)
	}
	return nil
}

func (t *tx) PutInstance(ctx context.Context, in *corral.Instance) error {
	if in.ID == "" {
		return fmt.Errorf("put instance: empty id: %w", corral.ErrBadInput)
	}
	labels, err := store.EncodeStrings(in.Labels)
	if err != nil {
		return fmt.Errorf("put instance %s: %w", in.ID, err)
	}
	if in.Name != "" {
		// A name taken by another instance is ErrConflict, found before the
		// upsert so that the transaction stays usable. (A concurrent insert
		// of the same name still fails at the unique index, as 23505.)
		var taken bool
		err := t.queryRow(ctx, "SELECT EXISTS (SELECT 1 FROM instances WHERE name = $1 AND id <> $2)", in.Name, in.ID).Scan(&taken)
		if err == nil && taken {
			err = corral.ErrConflict
		}
		if err != nil {
			return fmt.Errorf("put instance %s: %w", in.ID, err)
		}
	}
	_, err = t.exec(ctx, `INSERT INTO instances (id, name, pool_id, tenant_id, target_id, state, labels,
		cpu, memory_mb, disk_mb, arch, job_id, provider, provider_id, runner_id, attempts, last_error, reason,
		created_at, started_at, online_at, busy_at, drain_at, deleted_at, expires_at, updated_at)
		VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
		$18, $19, $20, $21, $22, $23, $24, $25, $26)
		ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, pool_id = EXCLUDED.pool_id,
		tenant_id = EXCLUDED.tenant_id, target_id = EXCLUDED.target_id, state = EXCLUDED.state,
		labels = EXCLUDED.labels, cpu = EXCLUDED.cpu, memory_mb = EXCLUDED.memory_mb,
		disk_mb = EXCLUDED.disk_mb, arch = EXCLUDED.arch, job_id = EXCLUDED.job_id,
		provider = EXCLUDED.provider, provider_id = EXCLUDED.provider_id, runner_id = EXCLUDED.runner_id, attempts = EXCLUDED.attempts,
		last_error = EXCLUDED.last_error, reason = EXCLUDED.reason, created_at = EXCLUDED.created_at,
		started_at = EXCLUDED.started_at, online_at = EXCLUDED.online_at, busy_at = EXCLUDED.busy_at,
		drain_at = EXCLUDED.drain_at, deleted_at = EXCLUDED.deleted_at, expires_at = EXCLUDED.expires_at,
		updated_at = EXCLUDED.updated_at`,
		in.ID, in.Name, in.PoolID, in.TenantID, in.TargetID, string(in.State), labels,
		in.Flavor.CPU, in.Flavor.MemoryMB, in.Flavor.DiskMB, in.Flavor.Arch,
		in.JobID, in.Provider, in.ProviderID, in.RunnerID, in.Attempts, in.LastError, in.Reason,
		tv(in.CreatedAt), tv(in.StartedAt), tv(in.OnlineAt), tv(in.BusyAt),
		tv(in.DrainAt), tv(in.DeletedAt), tv(in.ExpiresAt), tv(in.UpdatedAt))
	if pgCode(err) == "23505" {
		// A concurrent insert of the name: the transaction is aborted and
		// Update returns ErrConflict.
		err = fmt.Errorf("%w (%w)", corral.ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("put instance %s: %w", in.ID, err)
	}
	return nil
}

// Keys of limit_locks rows. Their sort order is the lock order: global,
// then the tenant, then the pool. Every transaction takes the rows it needs
// in that one order, so two reservations can wait for each other but never
// deadlock.
const (
	lockGlobal       = "0:global"
	lockTenantPrefix = "1:tenant:"
	lockPoolPrefix   = "2:pool:"
)

// LockLimits locks the limit_locks rows of the whole installation, the
// tenant and the pool (FOR UPDATE, in key order), creating missing rows
// first. The locks last until the transaction ends, so that a count of live
// instances taken afterwards (a new snapshot per statement under READ
// COMMITTED) stays true for this transaction's reservation, across every
// replica. An empty tenantID or poolID skips that row.
func (t *tx) LockLimits(ctx context.Context, tenantID, poolID string) error {
	keys := []string{lockGlobal}
	if tenantID != "" {
		keys = append(keys, lockTenantPrefix+tenantID)
	}
	if poolID != "" {
		keys = append(keys, lockPoolPrefix+poolID)
	}
	lock := func() (int, error) {
		locked, err := queryAll(ctx, t, func(r pgx.Rows) (string, error) {
			var k string
			return k, r.Scan(&k)
		}, "SELECT key FROM limit_locks WHERE key = ANY($1) ORDER BY key FOR UPDATE", keys)
		return len(locked), err
	}
	n, err := lock()
	if err == nil && n < len(keys) {
		// First reservation of this tenant or pool: create its row, in
		// key order too, then lock again.
		if _, err = t.exec(ctx, "INSERT INTO limit_locks (key) SELECT k FROM unnest($1::text[]) AS k ORDER BY k ON CONFLICT DO NOTHING", keys); err == nil {
			_, err = lock()
		}
	}
	if err != nil {
		return fmt.Errorf("lock limits (tenant %q, pool %q): %w", tenantID, poolID, err)
	}
	return nil
}
