package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/jackc/pgx/v5"
)

func (t *tx) DeleteTenant(ctx context.Context, id string) error {
	if _, err := t.exec(ctx, "DELETE FROM tenants WHERE id = $1", id); err != nil {
		return fmt.Errorf("delete tenant %s: %w", id, err)
	}
	return nil
}

func (t *tx) DeleteTarget(ctx context.Context, id string) error {
	if _, err := t.exec(ctx, "DELETE FROM targets WHERE id = $1", id); err != nil {
		return fmt.Errorf("delete target %s: %w", id, err)
	}
	return nil
}

func (t *tx) DeletePool(ctx context.Context, id string) error {
	if _, err := t.exec(ctx, "DELETE FROM pools WHERE id = $1", id); err != nil {
		return fmt.Errorf("delete pool %s: %w", id, err)
	}
	return nil
}

func (t *tx) CatalogVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := t.queryRow(ctx, "SELECT version FROM catalog_version WHERE id = 1").Scan(&v); err != nil {
		return 0, fmt.Errorf("catalog version: %w", err)
	}
	return v, nil
}

func (t *tx) BumpCatalogVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := t.queryRow(ctx, "UPDATE catalog_version SET version = version + 1 WHERE id = 1 RETURNING version").Scan(&v); err != nil {
		return 0, fmt.Errorf("bump catalog version: %w", err)
	}
	return v, nil
}

func scanLease(r pgx.Rows) (corral.Lease, error) {
	var l corral.Lease
	return l, r.Scan(&l.Name, &l.Holder, &l.Token, ts{&l.Expires})
}

func (t *tx) Lease(ctx context.Context, name string) (corral.Lease, error) {
	l, err := queryOne(ctx, t, scanLease, "SELECT name, holder, token, expires_at FROM leases WHERE name = $1", name)
	if err != nil {
		return l, fmt.Errorf("lease %s: %w", name, err)
	}
	return l, nil
}

// AcquireLease compares and sets expiries on the database server's clock
// (clock_timestamp()), never on a replica's: now is ignored, so replicas
// whose clocks drift apart still agree on who leads.
func (t *tx) AcquireLease(ctx context.Context, name, holder string, _ time.Time, ttl time.Duration) (corral.Lease, bool, error) {
	tag, err := t.exec(ctx, `INSERT INTO leases (name, holder, expires_at, token)
			VALUES ($1, $2, clock_timestamp() + $3 * interval '1 microsecond', 1)
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
			token = CASE WHEN leases.holder = EXCLUDED.holder AND leases.expires_at > clock_timestamp()
				THEN leases.token ELSE leases.token + 1 END
		WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= clock_timestamp()`,
		name, holder, ttl.Microseconds())
	if err != nil {
		return corral.Lease{}, false, fmt.Errorf("acquire lease %s for %s: %w", name, holder, err)
	}
	l, err := t.Lease(ctx, name)
	if err != nil {
		return l, false, err
	}
	held := tag.RowsAffected() == 1 && l.Holder == holder
	if held {
		// A new term gets its row; a renewal finds it there.
		if _, err := t.exec(ctx, `INSERT INTO lease_terms (name, term, holder, started_at)
			VALUES ($1, $2, $3, clock_timestamp()) ON CONFLICT (name, term) DO NOTHING`, name, l.Token, holder); err != nil {
			return l, false, fmt.Errorf("acquire lease %s for %s: record term %d: %w", name, holder, l.Token, err)
		}
	}
	return l, held, nil
}

func (t *tx) ReleaseLease(ctx context.Context, name, holder string) error {
	// Expire it rather than delete it: the token must keep growing.
	if _, err := t.exec(ctx, "UPDATE leases SET expires_at = clock_timestamp() WHERE name = $1 AND holder = $2", name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// CheckFence locks the lease row FOR SHARE and, in the same statement,
// counts the write in the term of token (in this server process's row of
// lease_term_writes: concurrent fenced writes never wait on one another's
// count). The count is made whether or not the term is current: the error
// below rolls it back with the write, so a check that failed to refuse a
// stale write would show as a stale term's count growing. A new leader's AcquireLease (an UPDATE of the lease row)
// waits until this transaction ends, and this statement sees a lease taken
// before it (READ COMMITTED re-reads a row updated while it waited), so a
// write fenced here can never commit inside another replica's term. Run
// last in the transaction (leader.Fenced does), the share lock lasts only
// until the commit.
func (t *tx) CheckFence(ctx context.Context, name string, token int64) error {
	var cur int64
	var holder string
	err := t.queryRow(ctx, `WITH cur AS (SELECT token, holder FROM leases WHERE name = $1 FOR SHARE),
		counted AS (
			INSERT INTO lease_term_writes (name, term, slot, writes)
				SELECT $1, $2::bigint, pg_backend_pid(), 1 FROM cur
			ON CONFLICT (name, term, slot) DO UPDATE SET writes = lease_term_writes.writes + 1)
		SELECT token, holder FROM cur`, name, token).Scan(&cur, &holder)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("lease %s was never taken: %w", name, corral.ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("check lease %s: %w", name, err)
	}
	if cur != token {
		return fmt.Errorf("lease %s is in term %d (held by %s), not %d: %w", name, cur, holder, token, corral.ErrFenced)
	}
	return nil
}

func (t *tx) LeaseTerms(ctx context.Context, name string) ([]corral.LeaseTerm, error) {
	out, err := queryAll(ctx, t, func(r pgx.Rows) (corral.LeaseTerm, error) {
		var lt corral.LeaseTerm
		return lt, r.Scan(&lt.Name, &lt.Term, &lt.Holder, ts{&lt.Started}, &lt.Writes)
	}, `SELECT t.name, t.term, t.holder, t.started_at, COALESCE(sum(w.writes), 0)::bigint
		FROM lease_terms t LEFT JOIN lease_term_writes w ON w.name = t.name AND w.term = t.term
		WHERE t.name = $1 GROUP BY t.name, t.term ORDER BY t.term`, name)
	if err != nil {
		return nil, fmt.Errorf("lease terms %s: %w", name, err)
	}
	return out, nil
}

func (t *tx) Backoffs(ctx context.Context) ([]corral.Backoff, error) {
	out, err := queryAll(ctx, t, func(r pgx.Rows) (corral.Backoff, error) {
		var b corral.Backoff
		return b, r.Scan(&b.PoolID, &b.Kind, &b.Failures, ts{&b.Until}, &b.LastError)
	}, "SELECT pool_id, kind, failures, until, last_error FROM backoffs ORDER BY pool_id, kind")
	if err != nil {
		return nil, fmt.Errorf("list backoffs: %w", err)
	}
	return out, nil
}

func (t *tx) PutBackoff(ctx context.Context, b corral.Backoff) error {
	_, err := t.exec(ctx, `INSERT INTO backoffs (pool_id, kind, failures, until, last_error) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (pool_id, kind) DO UPDATE SET failures = EXCLUDED.failures, until = EXCLUDED.until,
			last_error = EXCLUDED.last_error`, b.PoolID, b.Kind, b.Failures, b.Until.Truncate(time.Microsecond).UTC(), b.LastError)
	if err != nil {
		return fmt.Errorf("put backoff %s/%s: %w", b.PoolID, b.Kind, err)
	}
	return nil
}

func (t *tx) DeleteBackoff(ctx context.Context, poolID, kind string) error {
	if _, err := t.exec(ctx, "DELETE FROM backoffs WHERE pool_id = $1 AND kind = $2", poolID, kind); err != nil {
		return fmt.Errorf("delete backoff %s/%s: %w", poolID, kind, err)
	}
	return nil
}

func (t *tx) PoolStates(ctx context.Context) (map[string]corral.PoolState, error) {
	type row struct {
		id string
		st string
	}
	rows, err := queryAll(ctx, t, func(r pgx.Rows) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.st)
	}, "SELECT pool_id, state FROM pool_states")
	if err != nil {
		return nil, fmt.Errorf("list pool states: %w", err)
	}
	out := make(map[string]corral.PoolState, len(rows))
	for _, r := range rows {
		out[r.id] = corral.PoolState(r.st)
	}
	return out, nil
}

func (t *tx) SetPoolState(ctx context.Context, poolID string, st corral.PoolState, at time.Time) error {
	var err error
	if st == corral.PoolActive {
		_, err = t.exec(ctx, "DELETE FROM pool_states WHERE pool_id = $1", poolID)
	} else {
		_, err = t.exec(ctx, `INSERT INTO pool_states (pool_id, state, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (pool_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at`,
			poolID, string(st), at.Truncate(time.Microsecond).UTC())
	}
	if err != nil {
		return fmt.Errorf("set pool %s %s: %w", poolID, st, err)
	}
	return nil
}

func (t *tx) PausedTargets(ctx context.Context) (map[string]bool, error) {
	ids, err := queryAll(ctx, t, func(r pgx.Rows) (string, error) {
		var id string
		return id, r.Scan(&id)
	}, "SELECT target_id FROM target_states WHERE state = 'paused'")
	if err != nil {
		return nil, fmt.Errorf("list paused targets: %w", err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

func (t *tx) SetTargetPaused(ctx context.Context, targetID string, paused bool, at time.Time) error {
	var err error
	if !paused {
		_, err = t.exec(ctx, "DELETE FROM target_states WHERE target_id = $1", targetID)
	} else {
		_, err = t.exec(ctx, `INSERT INTO target_states (target_id, state, updated_at) VALUES ($1, 'paused', $2)
			ON CONFLICT (target_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at`,
			targetID, at.Truncate(time.Microsecond).UTC())
	}
	if err != nil {
		return fmt.Errorf("set target %s paused=%v: %w", targetID, paused, err)
	}
	return nil
}
