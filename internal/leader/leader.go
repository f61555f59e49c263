// Package leader runs a function only while this replica holds the
// store's leader lease. On SQLite there is one replica and it leads at
// once; on PostgreSQL several replicas race for the lease (judged on the
// database server's clock) and one leads at a time, with fail-over when its
// lease expires or at once when the leader stops cleanly.
//
// Each term of leadership has a fencing token (the lease's Token). Fenced
// wraps a store so that every write made for the term first checks, in the
// same transaction, that the term is still current: a leader that was
// paused or cut off past its lease can no longer change anything, even
// before it notices that it lost the lead.
package leader

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Config for Run.
type Config struct {
	Store  corral.Store
	Name   string        // lease name, e.g. "leader"
	Holder string        // this replica's id
	TTL    time.Duration // lease length; renewed every TTL/3
	// Renew overrides the renewal period (default TTL/3).
	Renew  time.Duration
	Clock  corral.Clock
	Logger *slog.Logger
	// State, when set, is kept up to date (for /readyz and the API).
	State *State
	// Fence, when set, learns of each renewal, so that Fence.Valid can
	// tell, without asking the store, that the lease may have lapsed (a
	// replica paused or cut off past its lease).
	Fence *Fenced
}

// Term is one period of leadership.
type Term struct {
	Token int64
}

// State is what a replica knows of the lead: whether it leads, its term,
// the holder it last saw and the last renewal error.
type State struct {
	mu      sync.Mutex
	leading bool
	token   int64
	holder  string
	expires time.Time
	lastErr error
}

// Snapshot is a copy of State.
type Snapshot struct {
	Leading bool
	Token   int64
	Holder  string // the lease's holder as last seen ("" = unknown)
	Expires time.Time
	Err     error // the last renewal error, nil when the store answered
}

// Get returns a copy of the state.
func (s *State) Get() Snapshot {
	if s == nil {
		return Snapshot{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return Snapshot{Leading: s.leading, Token: s.token, Holder: s.holder, Expires: s.expires, Err: s.lastErr}
}

func (s *State) seen(l corral.Lease, err error) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	if err == nil {
		s.holder, s.expires = l.Holder, l.Expires
	}
}

func (s *State) lead(token int64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leading = token != 0
	s.token = token
}

// Run calls lead with a context that is cancelled as soon as the lease is
// lost or ctx ends, and tries again to take the lease while ctx lives. It
// returns when ctx ends and lead has returned; a replica that leads then
// releases the lease, so another takes over at once.
func Run(ctx context.Context, cfg Config, lead func(ctx context.Context, term Term)) {
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	if cfg.Renew <= 0 || cfg.Renew > cfg.TTL/2 {
		cfg.Renew = cfg.TTL / 3
	}
	if cfg.Clock == nil {
		cfg.Clock = corral.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("component", "leader", "holder", cfg.Holder)
	var cur *term
	defer func() {
		if cur != nil {
			cur.stop()
			cfg.State.lead(0)
			release(cfg, log)
		}
	}()
	t := time.NewTicker(cfg.Renew)
	defer t.Stop()
	for {
		sent := time.Now()
		l, held, err := acquire(ctx, cfg)
		cfg.State.seen(l, err)
		if err == nil && held {
			cfg.Fence.renewed(sent, cfg.TTL)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("lease renewal failed", "err", err)
			if cur != nil {
				log.Warn("stepping down: the lease could not be renewed", "term", cur.token)
				cur.stop()
				cur = nil
				cfg.State.lead(0)
			}
		case held && cur != nil && cur.token != l.Token:
			// The lease lapsed and was taken again: a new term.
			log.Warn("the lease lapsed between renewals; starting a new term", "old_term", cur.token, "term", l.Token)
			cur.stop()
			cur = startTerm(ctx, l.Token, lead)
			cfg.State.lead(l.Token)
		case held && cur == nil:
			log.Info("leading", "term", l.Token)
			cur = startTerm(ctx, l.Token, lead)
			cfg.State.lead(l.Token)
		case !held && cur != nil:
			log.Warn("lost the lease; stepping down", "term", cur.token, "new_holder", l.Holder)
			cur.stop()
			cur = nil
			cfg.State.lead(0)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// term is one period of leadership: lead runs until stop.
type term struct {
	token  int64
	cancel context.CancelFunc
	done   chan struct{}
}

func startTerm(ctx context.Context, token int64, lead func(context.Context, Term)) *term {
	lctx, cancel := context.WithCancel(ctx)
	tm := &term{token: token, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tm.done)
		lead(lctx, Term{Token: token})
	}()
	return tm
}

// stop ends the term and waits for lead to return. A nil term is a no-op.
func (tm *term) stop() {
	if tm == nil {
		return
	}
	tm.cancel()
	<-tm.done
}

// acquire takes or renews the lease. It gives up after a third of the TTL:
// a leader that cannot renew in time steps down (Run treats the error so)
// before its lease can expire under it and another replica lead too.
func acquire(ctx context.Context, cfg Config) (corral.Lease, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.TTL/3)
	defer cancel()
	var l corral.Lease
	var held bool
	err := cfg.Store.Update(ctx, func(tx corral.Tx) error {
		var err error
		l, held, err = tx.AcquireLease(ctx, cfg.Name, cfg.Holder, cfg.Clock.Now(), cfg.TTL)
		return err
	})
	return l, held, err
}

func release(cfg Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.TTL/3)
	defer cancel()
	err := cfg.Store.Update(ctx, func(tx corral.Tx) error { return tx.ReleaseLease(ctx, cfg.Name, cfg.Holder) })
	if err != nil {
		log.Warn("could not release the lease; another replica takes over when it expires", "err", err)
		return
	}
	log.Info("released the lease")
}

// Fenced is a store whose writes are refused unless the term set by Set is
// the lease's current term, checked inside each write transaction. Reads
// pass through. With no term set, every write fails with ErrFenced.
// Close is the wrapped store's: do not close a Fenced.
type Fenced struct {
	corral.Store
	name  string
	token atomic.Int64
	// base carries a monotonic clock reading; until is the local end of
	// the lease in nanoseconds after base (see renewed).
	base  time.Time
	until atomic.Int64
}

// NewFenced wraps s for the lease named name.
func NewFenced(s corral.Store, name string) *Fenced {
	return &Fenced{Store: s, name: name, base: time.Now()}
}

// renewed records a renewal of the lease for ttl whose request was sent
// at sent. The store sets the expiry from its own clock when it receives
// the request, so in real time the lease lasts at least until sent+ttl; a
// tenth is kept back for clocks that run at different rates. Monotonic
// time keeps running while the process is stopped (SIGSTOP, a frozen VM).
func (f *Fenced) renewed(sent time.Time, ttl time.Duration) {
	if f == nil {
		return
	}
	f.until.Store(int64(sent.Sub(f.base) + ttl - ttl/10))
}

// Valid reports, without a store round trip, whether this replica may
// still act in its term: ErrFenced when no term is set or when no renewal
// was seen for almost a lease, so another replica may lead already. The
// scheduler asks it right before each action outside the store (minting a
// runner credential, a provider's create or delete): store writes are
// fenced in their transaction, but those actions cannot be rolled back,
// and a replica resumed after a pause must not start one.
func (f *Fenced) Valid() error {
	tok := f.token.Load()
	if tok == 0 {
		return fmt.Errorf("no leader term: %w", corral.ErrFenced)
	}
	if until := f.until.Load(); until != 0 && time.Since(f.base) >= time.Duration(until) {
		return fmt.Errorf("term %d: no lease renewal seen for almost a lease, another replica may lead: %w", tok, corral.ErrFenced)
	}
	return nil
}

// Set starts fencing writes with token (0: refuse every write).
func (f *Fenced) Set(token int64) { f.token.Store(token) }

// Update runs fn, then checks the term (and counts the write in it) as
// the transaction's last statement, so that it commits only if the term is
// still current. The check comes last on purpose: on PostgreSQL it locks
// the lease row until the commit, and a lock taken before fn would be held
// through all of fn's statements, keeping a new leader's AcquireLease (an
// UPDATE of that row) waiting behind every write the old leader has in
// flight, and its own renewals too. fn must have no effect outside the
// transaction: if the term is over, everything it did is rolled back.
func (f *Fenced) Update(ctx context.Context, fn func(corral.Tx) error) error {
	tok := f.token.Load()
	if tok == 0 {
		return fmt.Errorf("write outside a leader term: %w", corral.ErrFenced)
	}
	return f.Store.Update(ctx, func(tx corral.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return tx.CheckFence(ctx, f.name, tok)
	})
}
