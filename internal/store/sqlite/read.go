package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var _ corral.Tx = (*tx)(nil)

// tx runs statements on one connection inside a transaction that its owner
// began. detach: the connection is the writer's, whose statements must not
// be interrupted by a caller's context (see Update).
type tx struct {
	c      *conn
	detach bool
}

func (t *tx) ctx(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.detach {
		return context.WithoutCancel(ctx), nil
	}
	return ctx, nil
}

func (t *tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	ctx, err := t.ctx(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.c.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	ctx, err := t.ctx(ctx)
	if err != nil {
		return 0, err
	}
	st, err := t.c.stmt(ctx, q)
	if err != nil {
		return 0, err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// queryOne scans the single row of q with scan; no row is ErrNotFound.
func queryOne[T any](ctx context.Context, t *tx, scan func(scanner) (T, error), q string, args ...any) (T, error) {
	var zero T
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return zero, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return zero, err
		}
		return zero, corral.ErrNotFound
	}
	v, err := scan(rows)
	if err != nil {
		return zero, err
	}
	return v, rows.Close()
}

// queryAll scans every row of q. Rows are gathered in fixed-size chunks and
// copied once into a slice of the exact size: growing one slice of 10,000
// instances by doubling costs more than the query itself (fresh pages,
// copies, write barriers).
func queryAll[T any](ctx context.Context, t *tx, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	// Rows go into chunks that double from 4 to 256 rows: a query of one
	// row allocates for 4, not 256 (the webhook path reads a few rows per
	// job), and a long listing is not copied again and again as it grows.
	const firstChunk, maxChunk = 4, 256
	var full [][]T
	var cur []T
	for rows.Next() {
		if len(cur) == cap(cur) {
			size := firstChunk
			if cur != nil {
				full = append(full, cur)
				size = min(2*cap(cur), maxChunk)
			}
			cur = make([]T, 0, size)
		}
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		cur = append(cur, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(full) == 0 {
		return cur, nil
	}
	n := len(cur)
	for _, c := range full {
		n += len(c)
	}
	out := make([]T, 0, n)
	for _, c := range full {
		out = append(out, c...)
	}
	return append(out, cur...), nil
}

type scanner interface{ Scan(dest ...any) error }

func (t *tx) Tenants(ctx context.Context) ([]corral.Tenant, error) {
	out, err := queryAll(ctx, t, func(sc scanner) (corral.Tenant, error) {
		var x corral.Tenant
		return x, sc.Scan(&x.ID, &x.MaxInstances, &x.FromAPI)
	}, "SELECT id, max_instances, from_api FROM tenants ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return out, nil
}

func (t *tx) Targets(ctx context.Context) ([]corral.Target, error) {
	out, err := queryAll(ctx, t, func(sc scanner) (corral.Target, error) {
		var id, tenant, data string
		if err := sc.Scan(&id, &tenant, &data); err != nil {
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
	out, err := queryAll(ctx, t, func(sc scanner) (corral.Pool, error) {
		var data string
		if err := sc.Scan(&data); err != nil {
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

func scanJob(sc scanner) (corral.Job, error) {
	var j corral.Job
	var labels, routes string
	err := sc.Scan(&j.ID, &j.TargetID, &j.TenantID, &j.ForgeJobID, &j.RunID, &j.RunAttempt, &j.Repo, &j.Name, &labels,
		(*string)(&j.State), &j.Conclusion, &routes, &j.Reason, &j.PoolID, &j.InstanceID, &j.RunnerName,
		micros{&j.CreatedAt}, micros{&j.QueuedAt}, micros{&j.StartedAt}, micros{&j.CompletedAt}, micros{&j.UpdatedAt})
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
func scanBriefJob(sc scanner) (corral.Job, error) {
	var j corral.Job
	err := sc.Scan(&j.ID, &j.TargetID, &j.ForgeJobID, &j.RunID, &j.Repo, (*string)(&j.State), micros{&j.CreatedAt}, micros{&j.UpdatedAt})
	return j, err
}

func (t *tx) Job(ctx context.Context, id int64) (corral.Job, error) {
	j, err := queryOne(ctx, t, scanJob, "SELECT "+jobCols+" FROM jobs WHERE id = ?", id)
	if err != nil {
		return j, fmt.Errorf("get job %d: %w", id, err)
	}
	return j, nil
}

func (t *tx) JobByForgeID(ctx context.Context, targetID string, forgeJobID int64) (corral.Job, error) {
	j, err := queryOne(ctx, t, scanJob, "SELECT "+jobCols+" FROM jobs WHERE target_id = ? AND forge_job_id = ?", targetID, forgeJobID)
	if err != nil {
		return j, fmt.Errorf("get job %s/%d: %w", targetID, forgeJobID, err)
	}
	return j, nil
}

// Jobs lists jobs in id order. The query shape is picked so that SQLite
// never sorts a large set: one state walks the (state, id) index; several
// open states (the scheduler's query) walk the partial index of open jobs;
// otherwise the primary key or the target/pool index.
func (t *tx) Jobs(ctx context.Context, f corral.JobFilter) ([]corral.Job, error) {
	from, where, args := "jobs", " WHERE id > ?", []any{f.AfterID}
	switch {
	case len(f.States) == 1:
		where += " AND state = ?"
		args = append(args, string(f.States[0]))
	case len(f.States) > 1:
		open := !contains(f.States, corral.JobCompleted)
		if !open || !sameSet(f.States, openJobStates) {
			where += " AND +state IN (SELECT value FROM json_each(?))"
			args = append(args, jsonList(f.States))
		}
		if open {
			where += " AND state <> 'completed'"
			if f.TargetID == "" && f.PoolID == "" {
				from = "jobs INDEXED BY jobs_open"
			}
		}
	}
	if f.TargetID != "" {
		where += " AND target_id = ?"
		args = append(args, f.TargetID)
	}
	if f.TenantID != "" {
		where += " AND tenant_id = ?"
		args = append(args, f.TenantID)
	}
	if f.PoolID != "" {
		where += " AND pool_id = ?"
		args = append(args, f.PoolID)
	}
	if f.Repo != "" {
		where += " AND repo = ?"
		args = append(args, f.Repo)
	}
	if !f.CreatedFrom.IsZero() {
		where += " AND created_at >= ?"
		args = append(args, tv(f.CreatedFrom))
	}
	if !f.CreatedBefore.IsZero() {
		where += " AND created_at < ?"
		args = append(args, tv(f.CreatedBefore))
	}
	args = append(args, limit(f.Limit))
	cols, scan := jobCols, scanJob
	if f.Brief {
		cols, scan = briefJobCols, scanBriefJob
	}
	out, err := queryAll(ctx, t, scan, "SELECT "+cols+" FROM "+from+where+" ORDER BY id LIMIT ?", args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

func (t *tx) Timeline(ctx context.Context, jobID int64) ([]corral.Event, error) {
	out, err := queryAll(ctx, t, func(sc scanner) (corral.Event, error) {
		var e corral.Event
		return e, sc.Scan(&e.ID, &e.JobID, micros{&e.At}, (*string)(&e.Kind), &e.InstanceID, &e.Detail)
	}, "SELECT id, job_id, at, kind, instance_id, detail FROM events WHERE job_id = ? ORDER BY at, id", jobID)
	if err != nil {
		return nil, fmt.Errorf("timeline of job %d: %w", jobID, err)
	}
	return out, nil
}

const instanceCols = `id, COALESCE(name, ''), pool_id, tenant_id, target_id, state, labels,
	cpu, memory_mb, disk_mb, arch, job_id, provider, provider_id, runner_id, attempts, last_error, reason,
	created_at, started_at, online_at, busy_at, drain_at, deleted_at, expires_at, updated_at`

func scanInstance(sc scanner) (corral.Instance, error) {
	var in corral.Instance
	var labels string
	err := sc.Scan(&in.ID, &in.Name, &in.PoolID, &in.TenantID, &in.TargetID, (*string)(&in.State), &labels,
		&in.Flavor.CPU, &in.Flavor.MemoryMB, &in.Flavor.DiskMB, &in.Flavor.Arch,
		&in.JobID, &in.Provider, &in.ProviderID, &in.RunnerID, &in.Attempts, &in.LastError, &in.Reason,
		micros{&in.CreatedAt}, micros{&in.StartedAt}, micros{&in.OnlineAt}, micros{&in.BusyAt},
		micros{&in.DrainAt}, micros{&in.DeletedAt}, micros{&in.ExpiresAt}, micros{&in.UpdatedAt})
	if err != nil {
		return in, err
	}
	in.Labels, err = store.DecodeStrings(labels)
	return in, err
}

const briefInstanceCols = `id, COALESCE(name, ''), pool_id, tenant_id, target_id, state, job_id, provider, provider_id,
	runner_id, created_at, started_at, online_at, busy_at, drain_at, expires_at, updated_at`

// scanBriefInstance reads briefInstanceCols (corral.InstanceFilter.Brief).
func scanBriefInstance(sc scanner) (corral.Instance, error) {
	var in corral.Instance
	err := sc.Scan(&in.ID, &in.Name, &in.PoolID, &in.TenantID, &in.TargetID, (*string)(&in.State), &in.JobID, &in.Provider,
		&in.ProviderID, &in.RunnerID, micros{&in.CreatedAt}, micros{&in.StartedAt}, micros{&in.OnlineAt}, micros{&in.BusyAt},
		micros{&in.DrainAt}, micros{&in.ExpiresAt}, micros{&in.UpdatedAt})
	return in, err
}

func (t *tx) Instance(ctx context.Context, id string) (corral.Instance, error) {
	in, err := queryOne(ctx, t, scanInstance, "SELECT "+instanceCols+" FROM instances WHERE id = ?", id)
	if err != nil {
		return in, fmt.Errorf("get instance %s: %w", id, err)
	}
	return in, nil
}

func (t *tx) InstanceByName(ctx context.Context, name string) (corral.Instance, error) {
	in, err := queryOne(ctx, t, scanInstance, "SELECT "+instanceCols+" FROM instances WHERE name = ?", name)
	if err != nil {
		return in, fmt.Errorf("get instance named %q: %w", name, err)
	}
	return in, nil
}

// Instances lists instances in id order, picking the query shape as Jobs
// does: several live states (the reconciler's query) walk the partial index
// of live instances, never the deleted rows that pile up.
func (t *tx) Instances(ctx context.Context, f corral.InstanceFilter) ([]corral.Instance, error) {
	from, where, args := "instances", " WHERE id > ?", []any{f.AfterID}
	switch {
	case len(f.States) == 1:
		where += " AND state = ?"
		args = append(args, string(f.States[0]))
	case len(f.States) > 1:
		live := !contains(f.States, corral.InstDeleted)
		if !live || !sameSet(f.States, corral.LiveInstanceStates) {
			where += " AND +state IN (SELECT value FROM json_each(?))"
			args = append(args, jsonList(f.States))
		}
		if live {
			where += " AND state <> 'deleted'"
			if f.PoolID == "" && f.JobID == 0 {
				from = "instances INDEXED BY instances_live"
			}
		}
	}
	if f.PoolID != "" {
		where += " AND pool_id = ?"
		args = append(args, f.PoolID)
	}
	if f.JobID != 0 {
		where += " AND job_id = ?"
		args = append(args, f.JobID)
	}
	if f.TenantID != "" {
		where += " AND tenant_id = ?"
		args = append(args, f.TenantID)
	}
	args = append(args, limit(f.Limit))
	cols, scan := instanceCols, scanInstance
	if f.Brief {
		cols, scan = briefInstanceCols, scanBriefInstance
	}
	out, err := queryAll(ctx, t, scan, "SELECT "+cols+" FROM "+from+where+" ORDER BY id LIMIT ?", args...)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	return out, nil
}

// liveStates lists the live states literally, so that the count walks the
// state index over live rows only, however many deleted rows pile up.
var liveStates = func() string {
	s := ""
	for i, st := range corral.LiveInstanceStates {
		if i > 0 {
			s += ", "
		}
		s += "'" + string(st) + "'"
	}
	return s
}()

func (t *tx) CountInstances(ctx context.Context, f corral.CountFilter) (int, error) {
	q, args := "SELECT count(*) FROM instances WHERE state IN ("+liveStates+")", []any{}
	if f.PoolID != "" {
		// The second state term lets the pool's partial index serve.
		q += " AND state <> 'deleted' AND pool_id = ?"
		args = append(args, f.PoolID)
	}
	if f.TenantID != "" {
		q += " AND tenant_id = ?"
		args = append(args, f.TenantID)
	}
	n, err := queryOne(ctx, t, func(sc scanner) (int, error) {
		var n int
		return n, sc.Scan(&n)
	}, q, args...)
	if err != nil {
		return 0, fmt.Errorf("count instances: %w", err)
	}
	return n, nil
}

// instanceCountsQuery reads the partial index of live instances by pool
// and state alone, in its order (no sort), never a deleted row.
const instanceCountsQuery = "SELECT pool_id, state, count(*) FROM instances INDEXED BY instances_pool WHERE state <> 'deleted' GROUP BY pool_id, state ORDER BY pool_id, state"

func (t *tx) InstanceCounts(ctx context.Context) ([]corral.InstanceCount, error) {
	out, err := queryAll(ctx, t, scanInstanceCount, instanceCountsQuery)
	if err != nil {
		return nil, fmt.Errorf("count instances by pool and state: %w", err)
	}
	return out, nil
}

func scanInstanceCount(sc scanner) (corral.InstanceCount, error) {
	var c corral.InstanceCount
	var state string
	err := sc.Scan(&c.PoolID, &state, &c.N)
	c.State = corral.InstanceState(state)
	return c, err
}

// micros scans an INTEGER of microseconds since the epoch (NULL = zero time).
type micros struct{ t *time.Time }

func (m micros) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*m.t = time.Time{}
	case int64:
		*m.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("time column holds %T", src)
	}
	return nil
}

// tv is the column value of t: microseconds, or NULL for the zero time.
func tv(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func limit(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// openJobStates are the job states but completed.
var openJobStates = func() []corral.JobState {
	var out []corral.JobState
	for _, s := range corral.JobStates {
		if s.Open() {
			out = append(out, s)
		}
	}
	return out
}()

// sameSet reports whether a and b hold the same elements.
func sameSet[T comparable](a, b []T) bool {
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !contains(a, x) {
			return false
		}
	}
	return true
}

func jsonList[T ~string](xs []T) string {
	b, _ := json.Marshal(xs)
	return string(b)
}

func sqliteCode(err error) int {
	var e *msqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func isUnique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func isForeignKey(err error) bool { return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY }
