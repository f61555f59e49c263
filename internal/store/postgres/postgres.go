// Package postgres is corral's store for several replicas: PostgreSQL
// through pgx v5 and a pgxpool.
//
// Update runs fn in one READ COMMITTED transaction, retried (fn called
// again, from scratch, in a new transaction) on a serialization failure or
// a deadlock, with a short bounded backoff. Its reads of jobs and instances
// lock the rows they return (SELECT ... FOR UPDATE), so that a
// read-modify-write of a row in one replica cannot silently undo another
// replica's concurrent write (a lost update). Reservations serialize on
// rows of limit_locks (see LockLimits), so that two replicas can never
// overshoot a limit together. View runs on a read-only REPEATABLE READ
// snapshot and locks nothing.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var _ corral.Store = (*Store)(nil)

// Options tune the store. The zero value is good.
type Options struct {
	Logger *slog.Logger
	// MaxConns caps the pool (default: pgxpool's, or pool_max_conns in
	// the DSN).
	MaxConns int32
	// MaxAttempts bounds how often Update runs fn when the database asks
	// for a retry (default 5).
	MaxAttempts int
	// IdleTxTimeout, when set, has the server end a transaction left idle
	// that long (idle_in_transaction_session_timeout). A leader paused or
	// cut off inside a fenced write holds the lease row FOR SHARE: this
	// bounds how long it can keep another replica from taking over. Set
	// it to the lease's length.
	IdleTxTimeout time.Duration
}

// Store is a corral.Store on PostgreSQL.
type Store struct {
	log         *slog.Logger
	pool        *pgxpool.Pool
	maxAttempts int
}

// Open connects, applies the schema migrations (under an advisory lock, so
// that replicas starting together do not race) and returns the store. The
// DSN is never logged nor put in an error.
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included: drop it.
		return nil, fmt.Errorf("open postgres: malformed DSN: %w", corral.ErrBadInput)
	}
	if opt.MaxConns > 0 {
		cfg.MaxConns = opt.MaxConns
	}
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = 5
	}
	if opt.IdleTxTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(opt.IdleTxTimeout.Milliseconds(), 10)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres %s: %w", cfg.ConnConfig.Host, err)
	}
	s := &Store{log: opt.Logger.With("component", "store", "backend", "postgres"), pool: pool, maxAttempts: opt.MaxAttempts}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres %s: %w", cfg.ConnConfig.Host, err)
	}
	return s, nil
}

// Close closes every connection.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Update runs fn in a READ COMMITTED transaction and commits. On a
// serialization failure or deadlock (SQLSTATE 40001, 40P01) it rolls back
// and runs fn again, up to MaxAttempts times, sleeping 5, 10, 20... ms
// (with jitter, at most 200 ms) in between. Each attempt is a new
// transaction and a new call of fn: fn must start from what it reads, not
// from state left by an earlier attempt.
func (s *Store) Update(ctx context.Context, fn func(corral.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := s.update(ctx, fn)
		if err == nil || !retryable(err) || attempt >= s.maxAttempts {
			return err
		}
		d := min(5*time.Millisecond<<(attempt-1), 200*time.Millisecond)
		d = d/2 + rand.N(d/2+1)
		s.log.Debug("retrying transaction", "attempt", attempt, "err", err, "backoff", d)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (after %v)", ctx.Err(), err)
		}
	}
}

func (s *Store) update(ctx context.Context, fn func(corral.Tx) error) error {
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("update: begin: %w", unavailable(err))
	}
	// Rolls back on an error and on a panic of fn (which goes on up);
	// a no-op after Commit.
	defer func() { _ = ptx.Rollback(context.WithoutCancel(ctx)) }()
	t := &tx{tx: ptx, write: true}
	err = fn(t)
	if t.failed != nil {
		return aborted(err, t.failed)
	}
	if err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("update: commit: %w", err)
	}
	return nil
}

// View runs fn in a read-only REPEATABLE READ transaction: one consistent
// snapshot for all its reads.
func (s *Store) View(ctx context.Context, fn func(corral.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("view: begin: %w", unavailable(err))
	}
	defer func() { _ = ptx.Rollback(context.WithoutCancel(ctx)) }()
	return fn(&tx{tx: ptx})
}

// aborted is Update's error when a statement of the transaction failed
// (cause, the first such failure) and fn then returned fnErr: PostgreSQL
// has aborted the transaction, so nothing of it can commit, whatever fn did
// after. A deadlock or serialization failure is returned for Update to
// retry even if fn swallowed it; a unique violation (a concurrent insert)
// wraps corral.ErrConflict, so that the caller can retry the whole Update.
func aborted(fnErr, cause error) error {
	switch {
	case retryable(cause):
		if retryable(fnErr) {
			return fnErr
		}
		return fmt.Errorf("update: transaction aborted: %w", cause)
	case pgCode(cause) == "23505":
		if errors.Is(fnErr, corral.ErrConflict) {
			return fnErr
		}
		return fmt.Errorf("update: transaction aborted by a conflict: %w (%w)", corral.ErrConflict, cause)
	case fnErr != nil:
		return fnErr
	}
	return fmt.Errorf("update: fn went on after a failed statement: %w", cause)
}

// retryable reports a serialization failure or a deadlock.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// unavailable marks connection errors as corral.ErrUnavailable, keeping
// context errors as they are.
func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("%w: %w", corral.ErrUnavailable, err)
}
