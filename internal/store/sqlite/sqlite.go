// Package sqlite is corral's default store: one SQLite file, pure Go
// (modernc.org/sqlite, no cgo), in WAL mode.
//
// One writer, done right: a single goroutine owns the only write connection
// and commits in groups. It takes every Update waiting (up to MaxBatch), runs
// them in ONE transaction (BEGIN IMMEDIATE), each fn inside its own
// SAVEPOINT so that a failing fn is rolled back alone, commits once and then
// answers every caller. With synchronous=FULL (the default) an Update
// returns only once its writes are on disk, and N concurrent webhooks cost
// one fsync instead of N. Reads (View) run on a small pool of read-only
// connections, concurrently with the writer, each on a consistent snapshot.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

var _ corral.Store = (*Store)(nil)

// Options tune the store. The zero value is good.
type Options struct {
	Logger *slog.Logger
	// Synchronous is PRAGMA synchronous for the writer: "full" (the
	// default: a commit is durable when Update returns), "extra", or
	// "normal" (a power loss may lose the last commits, never corrupt).
	Synchronous string
	// ReadConns is the number of read-only connections (default 4).
	ReadConns int
	// MaxBatch caps how many Updates share one transaction (default 256).
	MaxBatch int
	// BusyTimeout is how long a connection waits for a lock that another
	// process holds (default 5 s).
	BusyTimeout time.Duration
}

// Store is a corral.Store on one SQLite file.
type Store struct {
	log      *slog.Logger
	wdb, rdb *sql.DB
	maxBatch int

	readers chan *conn // pool of read connections; nil = not opened yet

	reqs       chan *request
	closing    chan struct{}
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	batches atomic.Int64 // transactions committed or attempted (tests)
}

var errClosed = fmt.Errorf("sqlite store closed: %w", corral.ErrUnavailable)

// Open opens (creating if needed) the database file at path, applies the
// schema migrations and starts the writer.
func Open(ctx context.Context, path string, opt Options) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open sqlite %q: want a plain file path: %w", path, corral.ErrBadInput)
	}
	syncMode := strings.ToUpper(opt.Synchronous)
	switch syncMode {
	case "":
		syncMode = "FULL"
	case "FULL", "EXTRA", "NORMAL":
	default:
		return nil, fmt.Errorf("open sqlite: synchronous %q: want full, extra or normal: %w", opt.Synchronous, corral.ErrBadInput)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.ReadConns <= 0 {
		opt.ReadConns = 4
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 256
	}
	if opt.BusyTimeout <= 0 {
		opt.BusyTimeout = 5 * time.Second
	}
	busy := fmt.Sprintf("_pragma=busy_timeout(%d)", opt.BusyTimeout.Milliseconds())
	wdb, err := sql.Open("sqlite", path+"?"+busy+"&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous("+syncMode+")&_pragma=temp_store(MEMORY)")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wc, err := wdb.Conn(ctx)
	if err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w := &conn{c: wc, stmts: map[string]*sql.Stmt{}}
	log := opt.Logger.With("component", "store", "backend", "sqlite")
	if err := migrate(ctx, w.c, log); err != nil {
		w.close()
		_ = wdb.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// temp_store(MEMORY): each Update of a group runs in a SAVEPOINT, whose
	// statement journal (the pages it changed, kept to roll it back alone)
	// SQLite otherwise writes to a temporary file: a write syscall per page
	// per Update, about a sixth of the writer's time in BenchmarkIngest.
	// Readers read through SQLite's page cache, not a memory map of the
	// file: each read connection mapped the file, and without the maps
	// the peak RSS of a 100,000-instance fleet fell by about 70 MB, while
	// they saved under 10 % of a reconcile pass at 10,000 instances and
	// nothing measurable at 100,000 (docs/benchmarks.md).
	rdb, err := sql.Open("sqlite", path+"?"+busy+"&_pragma=query_only(1)")
	if err != nil {
		w.close()
		_ = wdb.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(opt.ReadConns)
	s := &Store{
		log:        log,
		wdb:        wdb,
		rdb:        rdb,
		maxBatch:   opt.MaxBatch,
		readers:    make(chan *conn, opt.ReadConns),
		reqs:       make(chan *request, opt.MaxBatch),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	for i := 0; i < opt.ReadConns; i++ {
		s.readers <- nil
	}
	go s.writer(w)
	return s, nil
}

// View runs fn in a read-only transaction on a consistent snapshot.
func (s *Store) View(ctx context.Context, fn func(corral.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := s.reader(ctx)
	if err != nil {
		return err
	}
	if _, err := c.c.ExecContext(ctx, "BEGIN"); err != nil {
		s.release(c, false)
		return fmt.Errorf("view: begin: %w", err)
	}
	// The read connections are query_only: a fn that asserts its ReadTx to
	// a Tx cannot write through it.
	ferr := fn(&tx{c: c})
	_, rerr := c.c.ExecContext(context.Background(), "ROLLBACK")
	s.release(c, rerr == nil)
	return ferr
}

func (s *Store) reader(ctx context.Context) (*conn, error) {
	select {
	case <-s.closing:
		return nil, errClosed
	default:
	}
	select {
	case c := <-s.readers:
		if c != nil {
			return c, nil
		}
		sc, err := s.rdb.Conn(ctx)
		if err != nil {
			s.readers <- nil
			return nil, fmt.Errorf("view: %w", err)
		}
		return &conn{c: sc, stmts: map[string]*sql.Stmt{}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closing:
		return nil, errClosed
	}
}

// release returns c to the pool, or discards it if it is not healthy.
func (s *Store) release(c *conn, healthy bool) {
	if !healthy {
		c.discard()
		c = nil
	}
	s.readers <- c
}

// Close stops the writer (after answering every queued Update) and closes
// the connections. It waits for running Views to end.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.writerDone
		for i := 0; i < cap(s.readers); i++ {
			if c := <-s.readers; c != nil {
				c.close()
			}
		}
		s.closeErr = errors.Join(s.rdb.Close(), s.wdb.Close())
	})
	return s.closeErr
}

// conn is one dedicated connection with its prepared statements. Only its
// current holder uses it.
type conn struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
}

// stmt returns the prepared statement for q. Query texts are a small fixed
// set (filters vary in which clauses they have, never in their length), so
// the cache is bounded.
func (c *conn) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := c.stmts[q]; ok {
		return st, nil
	}
	st, err := c.c.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.stmts[q] = st
	return st, nil
}

func (c *conn) close() {
	for _, st := range c.stmts {
		_ = st.Close()
	}
	_ = c.c.Close()
}

// discard closes the underlying connection for good instead of returning
// it to database/sql's pool.
func (c *conn) discard() {
	for _, st := range c.stmts {
		_ = st.Close()
	}
	_ = c.c.Raw(func(any) error { return driver.ErrBadConn })
	_ = c.c.Close()
}
