package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/leader"
	"github.com/corral-ci/corral/internal/store"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openTest(t *testing.T, dsn string, opt Options) *Store {
	t.Helper()
	s, err := Open(testCtx(t), dsn, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// raise makes the current statement fail with SQLSTATE code.
func raise(ctx context.Context, t corral.Tx, code string) error {
	_, err := t.(*tx).exec(ctx, "DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '"+code+"'; END $$")
	return err
}

// waitForLockWaiters polls until n sessions of s's database wait on a lock.
func waitForLockWaiters(t *testing.T, s *Store, n int) {
	t.Helper()
	ctx := testCtx(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait on a lock, want %d", waiting, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A deadlock that fn swallows still aborted the transaction: Update runs
// fn again, from scratch, instead of failing at commit.
func TestStore_Update_retriesSwallowedDeadlock(t *testing.T) {
	s := openTest(t, pgtest.DSN(t), Options{MaxAttempts: 3})
	ctx := testCtx(t)
	calls := 0
	err := s.Update(ctx, func(tx corral.Tx) error {
		calls++
		j := corral.Job{TargetID: "gh", ForgeJobID: 1}
		if err := tx.PutJob(ctx, &j); err != nil {
			return err
		}
		if calls == 1 {
			_ = raise(ctx, tx, "40P01")
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Errorf("err = %v after %d calls; want nil after 2", err, calls)
	}
}

// A PutJob that moves a job onto the (target, forge id) of a concurrent,
// uncommitted insert fails at the unique index, which aborts the
// transaction: Update returns ErrConflict even if fn goes on and returns
// nil, so that the caller retries it.
func TestStore_PutJob_conflictAbortsUpdate(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := openTest(t, dsn, Options{}), openTest(t, dsn, Options{})
	ctx := testCtx(t)
	var first corral.Job
	err := a.Update(ctx, func(tx corral.Tx) error {
		first = corral.Job{TargetID: "gh", ForgeJobID: 1}
		return tx.PutJob(ctx, &first)
	})
	if err != nil {
		t.Fatal(err)
	}
	inserted, release := make(chan struct{}), make(chan struct{})
	aErr := make(chan error, 1)
	go func() {
		aErr <- a.Update(ctx, func(tx corral.Tx) error {
			j := corral.Job{TargetID: "gh", ForgeJobID: 2}
			if err := tx.PutJob(ctx, &j); err != nil {
				return err
			}
			close(inserted)
			<-release
			return nil
		})
	}()
	<-inserted
	var putErr error
	bErr := make(chan error, 1)
	go func() {
		bErr <- b.Update(ctx, func(tx corral.Tx) error {
			moved := first
			moved.ForgeJobID = 2
			putErr = tx.PutJob(ctx, &moved)
			return nil // goes on as if nothing happened
		})
	}()
	waitForLockWaiters(t, a, 1)
	close(release)
	if err := <-aErr; err != nil {
		t.Fatal(err)
	}
	err = <-bErr
	if !errors.Is(putErr, corral.ErrConflict) {
		t.Errorf("PutJob = %v, want ErrConflict", putErr)
	}
	if !errors.Is(err, corral.ErrConflict) {
		t.Errorf("Update = %v, want ErrConflict", err)
	}
}

// Without a concurrent insert, moving a job onto another's (target, forge
// id) is ErrConflict that leaves the transaction usable.
func TestStore_PutJob_conflictKeepsTxUsable(t *testing.T) {
	s := openTest(t, pgtest.DSN(t), Options{})
	ctx := testCtx(t)
	err := s.Update(ctx, func(tx corral.Tx) error {
		j1, j2 := corral.Job{TargetID: "gh", ForgeJobID: 1}, corral.Job{TargetID: "gh", ForgeJobID: 2}
		if err := tx.PutJob(ctx, &j1); err != nil {
			return err
		}
		if err := tx.PutJob(ctx, &j2); err != nil {
			return err
		}
		j2.ForgeJobID = 1
		if err := tx.PutJob(ctx, &j2); !errors.Is(err, corral.ErrConflict) {
			t.Errorf("moving job 2 onto job 1: %v, want ErrConflict", err)
		}
		j2.ForgeJobID = 3
		return tx.PutJob(ctx, &j2)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAborted(t *testing.T) {
	deadlock := &pgconn.PgError{Code: "40P01"}
	unique := &pgconn.PgError{Code: "23505"}
	other := &pgconn.PgError{Code: "23514"}
	cases := []struct {
		name       string
		fnErr      error
		cause      error
		retry      bool
		isConflict bool
		is         error
	}{
		{"swallowed deadlock", nil, deadlock, true, false, deadlock},
		{"returned deadlock", fmt.Errorf("get job: %w", deadlock), deadlock, true, false, deadlock},
		{"other fn error after a deadlock", errors.New("x"), deadlock, true, false, deadlock},
		{"swallowed unique violation", nil, unique, false, true, unique},
		{"conflict returned", fmt.Errorf("put job: %w (%w)", corral.ErrConflict, unique), unique, false, true, unique},
		{"fn error after another failure", corral.ErrNotFound, other, false, false, corral.ErrNotFound},
		{"swallowed other failure", nil, other, false, false, other},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := aborted(c.fnErr, c.cause)
			if err == nil || retryable(err) != c.retry || errors.Is(err, corral.ErrConflict) != c.isConflict || !errors.Is(err, c.is) {
				t.Errorf("aborted(%v, %v) = %v", c.fnErr, c.cause, err)
			}
		})
	}
}

func TestStore_Update_retry(t *testing.T) {
	s := openTest(t, pgtest.DSN(t), Options{MaxAttempts: 3})
	ctx := testCtx(t)
	cases := []struct {
		name      string
		codes     []string // error raised by each call, "" = succeed
		wantCalls int
		wantErr   bool
	}{
		{"serialization failure then success", []string{"40001", ""}, 2, false},
		{"deadlock then success", []string{"40P01", ""}, 2, false},
		{"not retryable", []string{"23514"}, 1, true},
		{"bounded", []string{"40001", "40001", "40001", ""}, 3, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			err := s.Update(ctx, func(tx corral.Tx) error {
				code := c.codes[calls]
				calls++
				j := corral.Job{TargetID: c.name, ForgeJobID: 1}
				if err := tx.PutJob(ctx, &j); err != nil { // rolled back on retry: no conflict
					return err
				}
				if code == "" {
					return nil
				}
				return raise(ctx, tx, code)
			})
			if calls != c.wantCalls || (err != nil) != c.wantErr {
				t.Errorf("calls = %d, err = %v; want %d calls, error %v", calls, err, c.wantCalls, c.wantErr)
			}
		})
	}
}

func TestStore_Update_panicRollsBack(t *testing.T) {
	s := openTest(t, pgtest.DSN(t), Options{})
	ctx := testCtx(t)
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want boom", v)
			}
		}()
		_ = s.Update(ctx, func(tx corral.Tx) error {
			if err := tx.PutTenant(ctx, corral.Tenant{ID: "acme"}); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	err := s.View(ctx, func(tx corral.ReadTx) error {
		ts, err := tx.Tenants(ctx)
		if len(ts) != 0 {
			t.Errorf("tenants after a panic: %v", ts)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Two stores on one database are two replicas: LockLimits in one makes a
// reservation in the other wait (here on the global row, though the pools
// differ) until the first transaction ends.
func TestStore_LockLimits_acrossReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := openTest(t, dsn, Options{}), openTest(t, dsn, Options{})
	ctx := testCtx(t)
	locked, release := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 2)
	go func() {
		errc <- a.Update(ctx, func(tx corral.Tx) error {
			if err := tx.LockLimits(ctx, "acme", "big"); err != nil {
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	var bDone sync.WaitGroup
	bDone.Add(1)
	go func() {
		defer bDone.Done()
		errc <- b.Update(ctx, func(tx corral.Tx) error { return tx.LockLimits(ctx, "zeta", "small") })
	}()
	// Poll until b's transaction waits on a row lock.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		err := a.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the second replica's LockLimits never waited for the first")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	bDone.Wait()
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

func TestOpen_migrationsConcurrentAndIdempotent(t *testing.T) {
	dsn := pgtest.DSN(t)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(testCtx(t), dsn, Options{})
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := openTest(t, dsn, Options{})
	var n, maxv int
	if err := s.pool.QueryRow(testCtx(t), "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &maxv); err != nil {
		t.Fatal(err)
	}
	ms, err := store.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if want := ms[len(ms)-1].Version; n != len(ms) || maxv != want {
		t.Errorf("schema_migrations: %d rows, max version %d; want %d, %d", n, maxv, len(ms), want)
	}
}

func TestOpen_errorsHideTheDSN(t *testing.T) {
	ctx := testCtx(t)
	for _, dsn := range []string{
		"postgres://corral:s3cr3t-pw@127.0.0.1:1/x?sslmode=disable&connect_timeout=1",
		"postgres://corral:s3cr3t-pw@127.0.0.1:1/x?pool_max_conns=notanumber",
	} {
		_, err := Open(ctx, dsn, Options{})
		if err == nil {
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if strings.Contains(err.Error(), "s3cr3t-pw") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestRetryable(t *testing.T) {
	if retryable(errors.New("x")) || retryable(pgx.ErrNoRows) {
		t.Error("plain errors are not retryable")
	}
}

// A leader paused (SIGSTOP) or cut off inside a fenced write holds the
// lease row FOR SHARE: with IdleTxTimeout the server ends that
// transaction, so another replica takes the lapsed lease instead of
// waiting for the paused one to resume.
func TestStore_Update_idleFencedWriteDoesNotBlockTakeOver(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := openTest(t, dsn, Options{IdleTxTimeout: time.Second})
	b := openTest(t, dsn, Options{})
	ctx := testCtx(t)
	var la corral.Lease
	if err := a.Update(ctx, func(tx corral.Tx) error {
		var err error
		la, _, err = tx.AcquireLease(ctx, "leader", "a", time.Time{}, time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	paused := make(chan error, 1)
	go func() {
		paused <- a.Update(ctx, func(tx corral.Tx) error {
			if err := tx.CheckFence(ctx, "leader", la.Token); err != nil {
				return err
			}
			time.Sleep(6 * time.Second) // the paused leader
			return tx.ReleaseLease(ctx, "other", "a")
		})
	}()
	time.Sleep(1500 * time.Millisecond) // the lease has lapsed
	bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var held bool
	err := b.Update(bctx, func(tx corral.Tx) error {
		var err error
		_, held, err = tx.AcquireLease(bctx, "leader", "b", time.Time{}, 10*time.Second)
		return err
	})
	if err != nil || !held {
		t.Fatalf("b could not take the lapsed lease while a's fenced write idled: held %v, err %v", held, err)
	}
	if err := <-paused; err == nil {
		t.Errorf("the paused leader's write committed after b took over")
	}
}

// A leader's fenced write still in flight (fn running, not yet committed)
// must not hold up another replica taking the lapsed lease: leader.Fenced
// checks the term last, so the lease row is not locked while fn runs. The
// in-flight write then fails, leaves nothing and is counted in no term.
// With the check first, b's AcquireLease waits on a's share lock until a's
// transaction ends, and this test fails on b's 5 s deadline.
func TestFenced_writeInFlightDoesNotDelayTakeOver(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := openTest(t, dsn, Options{})
	b := openTest(t, dsn, Options{})
	ctx := testCtx(t)
	var la corral.Lease
	if err := a.Update(ctx, func(tx corral.Tx) error {
		var err error
		la, _, err = tx.AcquireLease(ctx, "leader", "a", time.Time{}, time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	f := leader.NewFenced(a, "leader")
	f.Set(la.Token)
	inFlight, release := make(chan struct{}), make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		var once sync.Once
		wrote <- f.Update(ctx, func(tx corral.Tx) error {
			if err := tx.PutTenant(ctx, corral.Tenant{ID: "in-flight"}); err != nil {
				return err
			}
			once.Do(func() { close(inFlight) })
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
			return nil
		})
	}()
	<-inFlight
	time.Sleep(1200 * time.Millisecond) // a's lease lapses, its write still open
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var lb corral.Lease
	var held bool
	err := b.Update(bctx, func(tx corral.Tx) error {
		var err error
		lb, held, err = tx.AcquireLease(bctx, "leader", "b", time.Time{}, time.Minute)
		return err
	})
	close(release)
	if err != nil || !held {
		t.Fatalf("b could not take the lapsed lease while a's fenced write was in flight: held %v, err %v", held, err)
	}
	if err := <-wrote; !errors.Is(err, corral.ErrFenced) {
		t.Fatalf("a's in-flight write after b took term %d: %v, want ErrFenced", lb.Token, err)
	}
	if err := b.View(ctx, func(tx corral.ReadTx) error {
		ts, err := tx.Tenants(ctx)
		if len(ts) != 0 {
			t.Errorf("tenants %v: the refused write left something", ts)
		}
		terms, err2 := tx.LeaseTerms(ctx, "leader")
		for _, lt := range terms {
			if lt.Writes != 0 {
				t.Errorf("term %d counts %d writes, want 0", lt.Term, lt.Writes)
			}
		}
		return errors.Join(err, err2)
	}); err != nil {
		t.Fatal(err)
	}
}
