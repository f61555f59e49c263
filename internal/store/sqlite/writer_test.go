package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store"
)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "corral.db")
	}
	s, err := Open(testCtx(t), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// blockWriter starts an Update that holds the writer until release is
// closed; it returns once the writer is inside it.
func blockWriter(t *testing.T, s *Store) (release func(), done <-chan error) {
	t.Helper()
	entered, rel := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- s.Update(context.Background(), func(corral.Tx) error { close(entered); <-rel; return nil })
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("writer never ran the blocking fn")
	}
	return func() { close(rel) }, errc
}

// waitQueued polls until n requests wait for the writer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", len(s.reqs), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStore_Update_groupCommit(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	release, blocked := blockWriter(t, s)
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Update(ctx, func(tx corral.Tx) error {
				j := corral.Job{TargetID: "gh", ForgeJobID: int64(i), State: corral.JobQueued}
				if err := tx.PutJob(ctx, &j); err != nil {
					return err
				}
				if i == 3 {
					return fmt.Errorf("job %d: %w", i, corral.ErrBadInput)
				}
				return nil
			})
		}()
	}
	waitQueued(t, s, n)
	before := s.batches.Load()
	release()
	wg.Wait()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	if got := s.batches.Load() - before; got != 1 {
		t.Errorf("%d queued Updates took %d transactions, want 1", n, got)
	}
	err := s.View(ctx, func(tx corral.ReadTx) error {
		for i := 0; i < n; i++ {
			_, err := tx.JobByForgeID(ctx, "gh", int64(i))
			if i == 3 {
				if !errors.Is(errs[i], corral.ErrBadInput) || !errors.Is(err, corral.ErrNotFound) {
					t.Errorf("failed fn: Update err %v, job err %v", errs[i], err)
				}
			} else if errs[i] != nil || err != nil {
				t.Errorf("fn %d: Update err %v, job err %v", i, errs[i], err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStore_Update_canceledWhileQueued(t *testing.T) {
	s := openTest(t, "")
	release, blocked := blockWriter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() { errc <- s.Update(ctx, func(corral.Tx) error { ran <- struct{}{}; return nil }) }()
	waitQueued(t, s, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Update = %v, want context.Canceled", err)
	}
	release()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	// The writer has moved on: a later Update runs, the canceled fn never did.
	if err := s.Update(testCtx(t), func(corral.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
		t.Error("the canceled fn ran")
	default:
	}
}

func TestStore_Update_panic(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want boom", v)
			}
		}()
		_ = s.Update(ctx, func(tx corral.Tx) error {
			in := corral.Instance{ID: "i-1", State: corral.InstPending}
			if err := tx.PutInstance(ctx, &in); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	err := s.View(ctx, func(tx corral.ReadTx) error {
		_, err := tx.Instance(ctx, "i-1")
		if !errors.Is(err, corral.ErrNotFound) {
			t.Errorf("write of the panicking fn: %v, want not found", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStore_View_concurrentWithWriter(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	release, blocked := blockWriter(t, s)
	defer func() { release(); <-blocked }()
	// The writer holds its transaction open; a read still completes.
	err := s.View(ctx, func(tx corral.ReadTx) error {
		_, err := tx.CountInstances(ctx, corral.CountFilter{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStore_View_readOnly(t *testing.T) {
	s := openTest(t, "")
	ctx := testCtx(t)
	err := s.View(ctx, func(rt corral.ReadTx) error {
		return rt.(corral.Tx).PutTenant(ctx, corral.Tenant{ID: "x"})
	})
	if err == nil {
		t.Error("a write through View succeeded")
	}
}

func TestStore_Close(t *testing.T) {
	s := openTest(t, "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(testCtx(t), func(corral.Tx) error { return nil }); !errors.Is(err, corral.ErrUnavailable) {
		t.Errorf("Update after Close = %v, want ErrUnavailable", err)
	}
	if err := s.View(testCtx(t), func(corral.ReadTx) error { return nil }); !errors.Is(err, corral.ErrUnavailable) {
		t.Errorf("View after Close = %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpen_migrationsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corral.db")
	for i := 0; i < 3; i++ {
		s, err := Open(testCtx(t), path, Options{})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, maxv int
	if err := db.QueryRow("SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &maxv); err != nil {
		t.Fatal(err)
	}
	ms, err := store.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if want := ms[len(ms)-1].Version; n != len(ms) || maxv != want {
		t.Errorf("schema_migrations: %d rows, max version %d; want %d, %d", n, maxv, len(ms), want)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestOpen_badOptions(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		path string
		opt  Options
	}{
		"synchronous": {filepath.Join(dir, "a.db"), Options{Synchronous: "sometimes"}},
		"memory":      {":memory:", Options{}},
		"query":       {filepath.Join(dir, "b.db?mode=ro"), Options{}},
		"empty":       {"", Options{}},
	} {
		t.Run(name, func(t *testing.T) {
			if s, err := Open(testCtx(t), tc.path, tc.opt); !errors.Is(err, corral.ErrBadInput) {
				t.Errorf("Open = %v, want ErrBadInput", err)
				if s != nil {
					_ = s.Close()
				}
			}
		})
	}
}

// Two stores on one file behave like two processes: their IMMEDIATE
// transactions serialize on SQLite's file lock.
func TestStore_twoProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corral.db")
	a, b := openTest(t, path), openTest(t, path)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Update(ctx, func(tx corral.Tx) error {
				n, err := tx.CountInstances(ctx, corral.CountFilter{})
				if err != nil {
					return err
				}
				id := fmt.Sprintf("i-%d", n) // read, then write: a lost update would overwrite one
				return tx.PutInstance(ctx, &corral.Instance{ID: id, Name: id, State: corral.InstPending})
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	err := a.View(ctx, func(tx corral.ReadTx) error {
		n, err := tx.CountInstances(ctx, corral.CountFilter{})
		if n != 40 {
			t.Errorf("count = %d, want 40", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
