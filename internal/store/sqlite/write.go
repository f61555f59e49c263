package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store"
)

func (t *tx) PutTenant(ctx context.Context, x corral.Tenant) error {
	_, err := t.exec(ctx, `INSERT INTO tenants (id, max_instances, from_api) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET max_instances = excluded.max_instances, from_api = excluded.from_api`, x.ID, x.MaxInstances, x.FromAPI)
	if err != nil {
		return fmt.Errorf("put tenant %s: %w", x.ID, err)
	}
	return nil
}

// PutTarget stores x without its secrets.
func (t *tx) PutTarget(ctx context.Context, x corral.Target) error {
	data, err := store.EncodeTarget(x)
	if err == nil {
		_, err = t.exec(ctx, `INSERT INTO targets (id, tenant_id, data) VALUES (?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, data = excluded.data`, x.ID, x.TenantID, data)
	}
	if err != nil {
		return fmt.Errorf("put target %s: %w", x.ID, err)
	}
	return nil
}

func (t *tx) PutPool(ctx context.Context, p corral.Pool) error {
	data, err := store.EncodePool(p)
	if err == nil {
		_, err = t.exec(ctx, `INSERT INTO pools (id, tenant_id, data) VALUES (?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, data = excluded.data`, p.ID, p.TenantID, data)
	}
	if err != nil {
		return fmt.Errorf("put pool %s: %w", p.ID, err)
	}
	return nil
}

func (t *tx) InsertDelivery(ctx context.Context, targetID, deliveryID string, at time.Time) (bool, error) {
	n, err := t.exec(ctx, `INSERT INTO deliveries (target_id, delivery_id, at) VALUES (?, ?, ?)
		ON CONFLICT DO NOTHING`, targetID, deliveryID, at.UnixMicro())
	if err != nil {
		return false, fmt.Errorf("insert delivery %s/%s: %w", targetID, deliveryID, err)
	}
	return n == 1, nil
}

func (t *tx) PruneDeliveries(ctx context.Context, before time.Time) (int, error) {
	n, err := t.exec(ctx, "DELETE FROM deliveries WHERE at < ?", before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	return int(n), nil
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

func (t *tx) PutJob(ctx context.Context, j *corral.Job) error {
	args, err := jobArgs(j)
	if err != nil {
		return fmt.Errorf("put job %s/%d: %w", j.TargetID, j.ForgeJobID, err)
	}
	if j.ID == 0 {
		id, err := queryOne(ctx, t, func(sc scanner) (int64, error) {
			var id int64
			return id, sc.Scan(&id)
		}, `INSERT INTO jobs (target_id, tenant_id, forge_job_id, run_id, run_attempt, repo, name, labels,
			state, conclusion, routes, reason, pool_id, instance_id, runner_name,
			created_at, queued_at, started_at, completed_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, args...)
		if isUnique(err) {
			err = corral.ErrConflict
		}
		if err != nil {
			return fmt.Errorf("put job %s/%d: %w", j.TargetID, j.ForgeJobID, err)
		}
		j.ID = id
		return nil
	}
	n, err := t.exec(ctx, `UPDATE jobs SET target_id = ?, tenant_id = ?, forge_job_id = ?, run_id = ?, run_attempt = ?,
		repo = ?, name = ?, labels = ?, state = ?, conclusion = ?, routes = ?, reason = ?, pool_id = ?,
		instance_id = ?, runner_name = ?, created_at = ?, queued_at = ?, started_at = ?, completed_at = ?, updated_at = ?
		WHERE id = ?`, append(args, j.ID)...)
	switch {
	case isUnique(err):
		err = corral.ErrConflict
	case err == nil && n == 0:
		err = corral.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("put job %d (%s/%d): %w", j.ID, j.TargetID, j.ForgeJobID, err)
	}
	return nil
}

func (t *tx) AddEvent(ctx context.Context, e corral.Event) error {
	_, err := t.exec(ctx, "INSERT INTO events (job_id, at, kind, instance_id, detail) VALUES (?, ?, ?, ?, ?)",
		e.JobID, tv(e.At), string(e.Kind), e.InstanceID, e.Detail)
	if isForeignKey(err) {
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
	if err == nil {
		_, err = t.exec(ctx, `INSERT INTO instances (id, name, pool_id, tenant_id, target_id, state, labels,
			cpu, memory_mb, disk_mb, arch, job_id, provider, provider_id, runner_id, attempts, last_error, reason,
			created_at, started_at, online_at, busy_at, drain_at, deleted_at, expires_at, updated_at)
			VALUES (?, NULLIF(?, ''), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name, pool_id = excluded.pool_id,
			tenant_id = excluded.tenant_id, target_id = excluded.target_id, state = excluded.state,
			labels = excluded.labels, cpu = excluded.cpu, memory_mb = excluded.memory_mb,
			disk_mb = excluded.disk_mb, arch = excluded.arch, job_id = excluded.job_id,
			provider = excluded.provider, provider_id = excluded.provider_id, runner_id = excluded.runner_id, attempts = excluded.attempts,
			last_error = excluded.last_error, reason = excluded.reason, created_at = excluded.created_at,
			started_at = excluded.started_at, online_at = excluded.online_at, busy_at = excluded.busy_at,
			drain_at = excluded.drain_at, deleted_at = excluded.deleted_at, expires_at = excluded.expires_at,
			updated_at = excluded.updated_at`,
			in.ID, in.Name, in.PoolID, in.TenantID, in.TargetID, string(in.State), labels,
			in.Flavor.CPU, in.Flavor.MemoryMB, in.Flavor.DiskMB, in.Flavor.Arch,
			in.JobID, in.Provider, in.ProviderID, in.RunnerID, in.Attempts, in.LastError, in.Reason,
			tv(in.CreatedAt), tv(in.StartedAt), tv(in.OnlineAt), tv(in.BusyAt),
			tv(in.DrainAt), tv(in.DeletedAt), tv(in.ExpiresAt), tv(in.UpdatedAt))
	}
	if isUnique(err) {
		err = corral.ErrConflict // the name belongs to another instance
	}
	if err != nil {
		return fmt.Errorf("put instance %s: %w", in.ID, err)
	}
	return nil
}

// LockLimits is a no-op on SQLite: every Update runs in a BEGIN IMMEDIATE
// transaction, which holds the database's single write lock (RESERVED) from
// its first statement to its commit, so no other transaction, in this
// process or another, can write at all meanwhile; and the group commit runs
// the fns of one transaction one after the other, each seeing the writes of
// those before it. A count taken after LockLimits therefore stays true until
// the transaction ends.
func (t *tx) LockLimits(ctx context.Context, tenantID, poolID string) error {
	return ctx.Err()
}
