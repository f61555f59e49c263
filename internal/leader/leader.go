// Package leader runs a function only while this replica holds the
// store's leader lease. On SQLite there is one replica and it leads at
// once; on PostgreSQL several replicas race for the lease and one leads at a
// time, with fail-over when its lease expires.
package leader

import (
	"context"
	"log/slog"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Config for Run.
type Config struct {
	Store  corral.Store
	Name   string        // lease name, e.g. "leader"
	Holder string        // this replica's id
	TTL    time.Duration // lease length; renewed every TTL/3
	Clock  corral.Clock
	Logger *slog.Logger
}

// Run calls lead with a context that is cancelled as soon as the lease is
// lost or ctx ends, and tries again to take the lease while ctx lives. It
// returns when ctx ends and lead has returned.
func Run(ctx context.Context, cfg Config, lead func(ctx context.Context)) {
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = corral.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("component", "leader", "holder", cfg.Holder)
	var cur *term
	defer func() { cur.stop() }()
	t := time.NewTicker(cfg.TTL / 3)
	defer t.Stop()
	for {
		held, err := acquire(ctx, cfg)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("lease renewal failed", "err", err)
			if cur != nil {
				log.Warn("stepping down: the lease could not be renewed")
				cur.stop()
				cur = nil
			}
		case held && cur == nil:
			log.Info("leading")
			cur = startTerm(ctx, lead)
		case !held && cur != nil:
			log.Warn("lost the lease; stepping down")
			cur.stop()
			cur = nil
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
	cancel context.CancelFunc
	done   chan struct{}
}

func startTerm(ctx context.Context, lead func(context.Context)) *term {
	lctx, cancel := context.WithCancel(ctx)
	tm := &term{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tm.done)
		lead(lctx)
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
func acquire(ctx context.Context, cfg Config) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.TTL/3)
	defer cancel()
	var held bool
	err := cfg.Store.Update(ctx, func(tx corral.Tx) error {
		var err error
		held, err = tx.AcquireLease(ctx, cfg.Name, cfg.Holder, cfg.Clock.Now(), cfg.TTL)
		return err
	})
	return held, err
}
