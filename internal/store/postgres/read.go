package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

var _ corral.Tx = (*tx)(nil)

// tx implements corral.Tx on one pgx transaction. Statements whose failure
// is an expected answer (a duplicate, a missing row) are written so that
// they do not fail in PostgreSQL (ON CONFLICT, EXISTS): a failed statement
// aborts the whole transaction there, and fn must be able to go on after
// ErrConflict or ErrNotFound, as it can on SQLite.
//
// In Update (write set), every read of jobs and instances rows locks the
// rows it returns (FOR UPDATE) until the transaction ends: the core reads a
// whole row, changes it and writes it back, and under READ COMMITTED two
// replicas could otherwise both read the same version and the later write
// would silently undo the earlier one. A locked read waits for a concurrent
// writer of the row to end, then returns the row as committed. Lists lock
// in id order. View (write unset) takes no lock.
type tx struct {
	tx    pgx.Tx
	write bool
	// failed is the first error PostgreSQL answered a statement with:
	// after it the transaction is aborted, and Update reports it
	// whatever fn does next (see aborted).
	failed error
}

// fail records err as the transaction's first failure if the database
// sent it (a *pgconn.PgError: the transaction is then aborted), and
// returns it.
func (t *tx) fail(err error) error {
	var pe *pgconn.PgError
	if t.failed == nil && errors.As(err, &pe) {
		t.failed = err
	}
	return err
}

// locking is the locking clause of a read of jobs or instances.
func (t *tx) locking() string {
	if t.write {
		return " FOR UPDATE"
	}
	return ""
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (pgconn.CommandTag, error) {
	tag, err := t.tx.Exec(ctx, q, args...)
	return tag, t.fail(err)
}

// queryRow is pgx's QueryRow, recording a failure.
func (t *tx) queryRow(ctx context.Context, q string, args ...any) row {
	return row{t, t.tx.QueryRow(ctx, q, args...)}
}

type row struct {
	t *tx
	r pgx.Row
}

func (r row) Scan(dest ...any) error { return r.t.fail(r.r.Scan(dest...)) }

// queryOne scans the single row of q; no row is ErrNotFound.
func queryOne[T any](ctx context.Context, t *tx, scan func(pgx.Rows) (T, error), q string, args ...any) (T, error) {
	var zero T
	rows, err := t.tx.Query(ctx, q, args...)
	if err != nil {
		return zero, t.fail(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return zero, t.fail(err)
		}
		return zero, corral.ErrNotFound
	}
	v, err := scan(rows)
	if err != nil {
		return zero, t.fail(err)
	}
	rows.Close()
	return v, t.fail(rows.Err())
}

func queryAll[T any](ctx context.Context, t *tx, scan func(pgx.Rows) (T, error), q string, args ...any) ([]T, error) {
	rows, err := t.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, t.fail(err)
		}
		out = append(out, v)
	}
	return out, t.fail(rows.Err())
}

func (t *tx) Tenants(ctx context.Context) ([]corral.Tenant, error) {
	out, err := queryAll(ctx, t, func(r pgx.Rows) (corral.Tenant, error) {
		var x corral.Tenant
		return x, r.Scan(&x.ID, &x.MaxInstances, &x.FromAPI)
	}, "SELECT id, max_instances, from_api FROM tenants ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return out, nil
}

func (t *tx) Targets(ctx context.Context) ([]corral.Target, error) {
	out, err := queryAll(ctx, t, func(r pgx.Rows) (corral.Target, error) {
		var id, tenant, data string
		if err := r.Scan(&id, &tenant, &data); err != nil {
			return corral.Target{}, err
		}
		return store.DecodeTarget(id, tenant, data)
	}, "SELECT id, tenant_id, data FROM targets ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	return out, nil
}

func (t *tx) Pools(ctx context.Context) ([]corral.Pool, error) {
	out, err := queryAll(ctx, t, func(r pgx.Rows) (corral.Pool, error) {
		var data string
		if err := r.Scan(&data); err != nil {
			return corral.Pool{}, err
		}
		return store.DecodePool(data)
	}, "SELECT data FROM pools ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list pools: %w", err)
	}
	return out, nil
}

const jobCols = `id, target_id, tenant_id, forge_job_id, run_id, run_attempt, repo, name, labels,
	state, conclusion, routes, reason, pool_id, instance_id, runner_name,
	created_at, queued_at, started_at, completed_at, updated_at`

func scanJob(r pgx.Rows) (corral.Job, error) {
	var j corral.Job
	var labels, routes string
	err := r.Scan(&j.ID, &j.TargetID, &j.TenantID, &j.ForgeJobID, &j.RunID, &j.RunAttempt, &j.Repo, &j.Name, &labels,
		(*string)(&j.State), &j.Conclusion, &routes, &j.Reason, &j.PoolID, &j.InstanceID, &j.RunnerName,
		ts{&j.CreatedAt}, ts{&j.QueuedAt}, ts{&j.StartedAt}, ts{&j.CompletedAt}, ts{&j.UpdatedAt})
	if err != nil {
		return j, err
	}
	if j.Labels, err = store.DecodeStrings(labels); err != nil {
		return j, err
	}
	j.Routes, err = store.DecodeRoutes(routes)
	return j, err
}

const briefJobCols = `id, target_id, forge_job_id, run_id, repo, state, created_at, updated_at`

// scanBriefJob reads briefJobCols (corral.JobFilter.Brief).
func scanBriefJob(r pgx.Rows) (corral.Job, error) {
	var j corral.Job
	err := r.Scan(&j.ID, &j.TargetID, &j.ForgeJobID, &j.RunID, &j.Repo, (*string)(&j.State), ts{&j.CreatedAt}, ts{&j.UpdatedAt})
	return j, err
}

func (t *tx) Job(ctx context.Context, id int64) (corral.Job, error) {
	j, err := queryOne(ctx, t, scanJob, "SELECT "+jobCols+" FROM jobs WHERE id = $1"+t.locking(), id)
	if err != nil {
		return j, fmt.Errorf("get job %d: %w", id, err)
	}
	return j, nil
}

func (t *tx) JobByForgeID(ctx context.Context, targetID string, forgeJobID int64) (corral.Job, error) {
	j, err := queryOne(ctx, t, scanJob, "SELECT "+jobCols+" FROM jobs WHERE target_id = $1 AND forge_job_id = $2"+t.locking(), targetID, forgeJobID)
	if err != nil {
		return j, fmt.Errorf("get job %s/%d: %w", targetID, forgeJobID, err)
	}
	return j, nil
}

// where builds a WHERE clause with numbered parameters.
type where struct {
	sql  string
	args []any
}

func (w *where) add(cond string, arg any) {
	w.args = append(w.args, arg)
	w.sql += " AND " + cond + "$" + strconv.Itoa(len(w.args))
}

// limit returns the LIMIT parameter: NULL (no limit) for n <= 0.
func limit(n int) any {
	if n <= 0 {
		return nil
	}
	return int64(n)
}

// Jobs lists jobs in id order. A filter on open states only also says
// state <> 'completed', which lets the planner walk the partial index of
// open jobs instead of the history.
func (t *tx) Jobs(ctx context.Context, f corral.JobFilter) ([]corral.Job, error) {
	w := where{sql: " WHERE id > $1", args: []any{f.AfterID}}
	if len(f.States) > 0 {
		w.add("state = ANY(", texts(f.States))
		w.sql += ")"
		if !contains(f.States, corral.JobCompleted) {
			w.sql += " AND state <> 'completed'"
		}
	}
	if f.TargetID != "" {
		w.add("target_id = ", f.TargetID)
	}
	if f.PoolID != "" {
		w.add("pool_id = ", f.PoolID)
	}
	if f.TenantID != "" {
		w.add("tenant_id = ", f.TenantID)
	}
	if f.Repo != "" {
		w.add("repo = ", f.Repo)
	}
	if !f.CreatedFrom.IsZero() {
		w.add("created_at >= ", tv(f.CreatedFrom))
	}
	if !f.CreatedBefore.IsZero() {
		w.add("created_at < ", tv(f.CreatedBefore))
	}
	w.args = append(w.args, limit(f.Limit))
	cols, scan := jobCols, scanJob
	if f.Brief {
		cols, scan = briefJobCols, scanBriefJob
	}
	q := "SELECT " + cols + " FROM jobs" + w.sql + " ORDER BY id LIMIT $" + strconv.Itoa(len(w.args)) + t.locking()
	out, err := queryAll(ctx, t, scan, q, w.args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

func (t *tx) Timeline(ctx context.Context, jobID int64) ([]corral.Event, error) {
	out, err := queryAll(ctx, t, func(r pgx.Rows) (corral.Event, error) {
		var e corral.Event
		return e, r.Scan(&e.ID, &e.JobID, ts{&e.At}, (*string)(&e.Kind), &e.InstanceID, &e.Detail)
	}, "SELECT id, job_id, at, kind, instance_id, detail FROM events WHERE job_id = $1 ORDER BY at NULLS FIRST, id", jobID)
	if err != nil {
		return nil, fmt.Errorf("timeline of job %d: %w", jobID, err)
	}
	return out, nil
}

const instanceCols = `id, COALESCE(name, ''), pool_id, tenant_id, target_id, state, labels,
	cpu, memory_mb, disk_mb, arch, job_id, provider, provider_id, runner_id, attempts, last_error, reason,
	created_at, started_at, online_at, busy_at, drain_at, deleted_at, expires_at, updated_at`

func scanInstance(r pgx.Rows) (corral.Instance, error) {
	var in corral.Instance
	var labels string
	err := r.Scan(&in.ID, &in.Name, &in.PoolID, &in.TenantID, &in.TargetID, (*string)(&in.State), &labels,
		&in.Flavor.CPU, &in.Flavor.MemoryMB, &in.Flavor.DiskMB, &in.Flavor.Arch,
		&in.JobID, &in.Provider, &in.ProviderID, &in.RunnerID, &in.Attempts, &in.LastError, &in.Reason,
		ts{&in.CreatedAt}, ts{&in.StartedAt}, ts{&in.OnlineAt}, ts{&in.BusyAt},
		ts{&in.DrainAt}, ts{&in.DeletedAt}, ts{&in.ExpiresAt}, ts{&in.UpdatedAt})
	if err != nil {
		return in, err
	}
	in.Labels, err = store.DecodeStrings(labels)
	return in, err
}

const briefInstanceCols = `id, COALESCE(name, ''), pool_id, tenant_id, target_id, state, job_id, provider, provider_id,
	runner_id, created_at, started_at, online_at, busy_at, drain_at, expires_at, updated_at`

// scanBriefInstance reads briefInstanceCols (corral.InstanceFilter.Brief).
func scanBriefInstance(r pgx.Rows) (corral.Instance, error) {
	var in corral.Instance
	err := r.Scan(&in.ID, &in.Name, &in.PoolID, &in.TenantID, &in.TargetID, (*string)(&in.State), &in.JobID, &in.Provider,
		&in.ProviderID, &in.RunnerID, ts{&in.CreatedAt}, ts{&in.StartedAt}, ts{&in.OnlineAt}, ts{&in.BusyAt},
		ts{&in.DrainAt}, ts{&in.ExpiresAt}, ts{&in.UpdatedAt})
	return in, err
}

func (t *tx) Instance(ctx context.Context, id string) (corral.Instance, error) {
	in, err := queryOne(ctx, t, scanInstance, "SELECT "+instanceCols+" FROM instances WHERE id = $1"+t.locking(), id)
	if err != nil {
		return in, fmt.Errorf("get instance %s: %w", id, err)
	}
	return in, nil
}

func (t *tx) InstanceByName(ctx context.Context, name string) (corral.Instance, error) {
	in, err := queryOne(ctx, t, scanInstance, "SELECT "+instanceCols+" FROM instances WHERE name = $1"+t.locking(), name)
	if err != nil {
		return in, fmt.Errorf("get instance named %q: %w", name, err)
	}
	return in, nil
}

// Instances lists instances in id order; a filter on live states only
// also says state <> 'deleted' (the partial index of live instances).
func (t *tx) Instances(ctx context.Context, f corral.InstanceFilter) ([]corral.Instance, error) {
	w := where{sql: " WHERE id > $1", args: []any{f.AfterID}}
	if len(f.States) > 0 {
		w.add("state = ANY(", texts(f.States))
		w.sql += ")"
		if !contains(f.States, corral.InstDeleted) {
			w.sql += " AND state <> 'deleted'"
		}
	}
	if f.PoolID != "" {
		w.add("pool_id = ", f.PoolID)
	}
	if f.TenantID != "" {
		w.add("tenant_id = ", f.TenantID)
	}
	if f.JobID != 0 {
		w.add("job_id = ", f.JobID)
	}
	w.args = append(w.args, limit(f.Limit))
	cols, scan := instanceCols, scanInstance
	if f.Brief {
		cols, scan = briefInstanceCols, scanBriefInstance
	}
	q := "SELECT " + cols + " FROM instances" + w.sql + " ORDER BY id LIMIT $" + strconv.Itoa(len(w.args)) + t.locking()
	out, err := queryAll(ctx, t, scan, q, w.args...)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	return out, nil
}

func (t *tx) CountInstances(ctx context.Context, f corral.CountFilter) (int, error) {
	w := where{sql: " WHERE state <> 'deleted'"}
	if f.PoolID != "" {
		w.add("pool_id = ", f.PoolID)
	}
	if f.TenantID != "" {
		w.add("tenant_id = ", f.TenantID)
	}
	var n int
	// An aggregate cannot lock (FOR UPDATE): limits are kept by
	// LockLimits instead.
	if err := t.queryRow(ctx, "SELECT count(*) FROM instances"+w.sql, w.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count instances: %w", err)
	}
	return n, nil
}

func (t *tx) InstanceCounts(ctx context.Context) ([]corral.InstanceCount, error) {
	// An aggregate cannot lock (FOR UPDATE), as in CountInstances.
	out, err := queryAll(ctx, t, func(r pgx.Rows) (corral.InstanceCount, error) {
		var c corral.InstanceCount
		var state string
		err := r.Scan(&c.PoolID, &state, &c.N)
		c.State = corral.InstanceState(state)
		return c, err
	}, "SELECT pool_id, state, count(*) FROM instances WHERE state <> 'deleted' GROUP BY pool_id, state ORDER BY pool_id, state")
	if err != nil {
		return nil, fmt.Errorf("count instances by pool and state: %w", err)
	}
	return out, nil
}

// ts scans a nullable timestamptz: NULL is the zero time, others are UTC.
type ts struct{ t *time.Time }

func (s ts) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		*s.t = time.Time{}
		return nil
	}
	*s.t = v.Time.UTC()
	return nil
}

// tv is the parameter for t: NULL for the zero time, else t truncated to
// the microseconds PostgreSQL keeps (it would round).
func tv(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Truncate(time.Microsecond).UTC()
}

func texts[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
