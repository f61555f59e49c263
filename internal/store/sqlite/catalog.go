package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func (t *tx) DeleteTenant(ctx context.Context, id string) error {
	if _, err := t.exec(ctx, "DELETE FROM tenants WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete tenant %s: %w", id, err)
	}
	return nil
}

func (t *tx) DeleteTarget(ctx context.Context, id string) error {
	if _, err := t.exec(ctx, "DELETE FROM targets WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete target %s: %w", id, err)
	}
	return nil
}

func (t *tx) DeletePool(ctx context.Context, id string) error {
	if _, err := t.exec(ctx, "DELETE FROM pools WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete pool %s: %w", id, err)
	}
	return nil
}

func (t *tx) CatalogVersion(ctx context.Context) (int64, error) {
	v, err := queryOne(ctx, t, func(sc scanner) (int64, error) {
		var v int64
		return v, sc.Scan(&v)
	}, "SELECT version FROM catalog_version WHERE id = 1")
	if err != nil {
		return 0, fmt.Errorf("catalog version: %w", err)
	}
	return v, nil
}

func (t *tx) BumpCatalogVersion(ctx context.Context) (int64, error) {
	if _, err := t.exec(ctx, "UPDATE catalog_version SET version = version + 1 WHERE id = 1"); err != nil {
		return 0, fmt.Errorf("bump catalog version: %w", err)
	}
	return t.CatalogVersion(ctx)
}

func scanLease(sc scanner) (corral.Lease, error) {
	var l corral.Lease
	return l, sc.Scan(&l.Name, &l.Holder, &l.Token, micros{&l.Expires})
}

func (t *tx) Lease(ctx context.Context, name string) (corral.Lease, error) {
	l, err := queryOne(ctx, t, scanLease, "SELECT name, holder, token, expires_at FROM leases WHERE name = ?", name)
	if err != nil {
		return l, fmt.Errorf("lease %s: %w", name, err)
	}
	return l, nil
}

// AcquireLease takes the lease if it is free, expired (its expiry is at or
// before now) or already held by holder, and sets its expiry to now+ttl.
// SQLite has no server clock: now is the clock of the only process that
// writes the file (or of processes on one host).
func (t *tx) AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (corral.Lease, bool, error) {
	n, err := t.exec(ctx, `INSERT INTO leases (name, holder, expires_at, token) VALUES (?, ?, ?, 1)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
			token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ? THEN leases.token ELSE leases.token + 1 END
		WHERE leases.holder = excluded.holder OR leases.expires_at <= ?`,
		name, holder, now.Add(ttl).UnixMicro(), now.UnixMicro(), now.UnixMicro())
	if err != nil {
		return corral.Lease{}, false, fmt.Errorf("acquire lease %s for %s: %w", name, holder, err)
	}
	l, err := t.Lease(ctx, name)
	if err != nil {
		return l, false, err
	}
	held := n == 1 && l.Holder == holder
	if held {
		// A new term gets its row; a renewal finds it there.
		if _, err := t.exec(ctx, `INSERT INTO lease_terms (name, term, holder, started_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (name, term) DO NOTHING`, name, l.Token, holder, now.UnixMicro()); err != nil {
			return l, false, fmt.Errorf("acquire lease %s for %s: record term %d: %w", name, holder, l.Token, err)
		}
	}
	return l, held, nil
}

func (t *tx) ReleaseLease(ctx context.Context, name, holder string) error {
	// Expire it rather than delete it: the token must keep growing.
	if _, err := t.exec(ctx, "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?", name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// CheckFence reads the lease and counts the write in its term. SQLite has
// one writer at a time, so nothing can take the lease between the read
// and the commit.
func (t *tx) CheckFence(ctx context.Context, name string, token int64) error {
	l, err := t.Lease(ctx, name)
	if errors.Is(err, corral.ErrNotFound) || errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("lease %s was never taken: %w", name, corral.ErrFenced)
	}
	if err != nil {
		return err
	}
	// Counted first, in the term the write claims: the error below rolls
	// the count back with the write, so a check that failed to refuse a
	// stale write would show as a stale term's count growing.
	if _, err := t.exec(ctx, `INSERT INTO lease_terms (name, term, holder, started_at, writes) VALUES (?, ?, ?, ?, 1)
		ON CONFLICT (name, term) DO UPDATE SET writes = lease_terms.writes + 1`,
		name, token, l.Holder, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("count a write in term %d of lease %s: %w", token, name, err)
	}
	if l.Token != token {
		return fmt.Errorf("lease %s is in term %d (held by %s), not %d: %w", name, l.Token, l.Holder, token, corral.ErrFenced)
	}
	return nil
}

func (t *tx) LeaseTerms(ctx context.Context, name string) ([]corral.LeaseTerm, error) {
	out, err := queryAll(ctx, t, func(sc scanner) (corral.LeaseTerm, error) {
		var lt corral.LeaseTerm
		return lt, sc.Scan(&lt.Name, &lt.Term, &lt.Holder, micros{&lt.Started}, &lt.Writes)
	}, "SELECT name, term, holder, started_at, writes FROM lease_terms WHERE name = ? ORDER BY term", name)
	if err != nil {
		return nil, fmt.Errorf("lease terms %s: %w", name, err)
	}
	return out, nil
}

func (t *tx) Backoffs(ctx context.Context) ([]corral.Backoff, error) {
	out, err := queryAll(ctx, t, func(sc scanner) (corral.Backoff, error) {
		var b corral.Backoff
		return b, sc.Scan(&b.PoolID, &b.Kind, &b.Failures, micros{&b.Until}, &b.LastError)
	}, "SELECT pool_id, kind, failures, until, last_error FROM backoffs ORDER BY pool_id, kind")
	if err != nil {
		return nil, fmt.Errorf("list backoffs: %w", err)
	}
	return out, nil
}

func (t *tx) PutBackoff(ctx context.Context, b corral.Backoff) error {
	_, err := t.exec(ctx, `INSERT INTO backoffs (pool_id, kind, failures, until, last_error) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (pool_id, kind) DO UPDATE SET failures = excluded.failures, until = excluded.until,
			last_error = excluded.last_error`, b.PoolID, b.Kind, b.Failures, b.Until.UnixMicro(), b.LastError)
	if err != nil {
		return fmt.Errorf("put backoff %s/%s: %w", b.PoolID, b.Kind, err)
	}
	return nil
}

func (t *tx) DeleteBackoff(ctx context.Context, poolID, kind string) error {
	if _, err := t.exec(ctx, "DELETE FROM backoffs WHERE pool_id = ? AND kind = ?", poolID, kind); err != nil {
		return fmt.Errorf("delete backoff %s/%s: %w", poolID, kind, err)
	}
	return nil
}

func (t *tx) PoolStates(ctx context.Context) (map[string]corral.PoolState, error) {
	type row struct {
		id string
		st corral.PoolState
	}
	rows, err := queryAll(ctx, t, func(sc scanner) (row, error) {
		var r row
		return r, sc.Scan(&r.id, (*string)(&r.st))
	}, "SELECT pool_id, state FROM pool_states")
	if err != nil {
		return nil, fmt.Errorf("list pool states: %w", err)
	}
	out := make(map[string]corral.PoolState, len(rows))
	for _, r := range rows {
		out[r.id] = r.st
	}
	return out, nil
}

func (t *tx) SetPoolState(ctx context.Context, poolID string, st corral.PoolState, at time.Time) error {
	var err error
	if st == corral.PoolActive {
		_, err = t.exec(ctx, "DELETE FROM pool_states WHERE pool_id = ?", poolID)
	} else {
		_, err = t.exec(ctx, `INSERT INTO pool_states (pool_id, state, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (pool_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`, poolID, string(st), at.UnixMicro())
	}
	if err != nil {
		return fmt.Errorf("set pool %s %s: %w", poolID, st, err)
	}
	return nil
}

func (t *tx) PausedTargets(ctx context.Context) (map[string]bool, error) {
	ids, err := queryAll(ctx, t, func(sc scanner) (string, error) {
		var id string
		return id, sc.Scan(&id)
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
		_, err = t.exec(ctx, "DELETE FROM target_states WHERE target_id = ?", targetID)
	} else {
		_, err = t.exec(ctx, `INSERT INTO target_states (target_id, state, updated_at) VALUES (?, 'paused', ?)
			ON CONFLICT (target_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`, targetID, at.UnixMicro())
	}
	if err != nil {
		return fmt.Errorf("set target %s paused=%v: %w", targetID, paused, err)
	}
	return nil
}
