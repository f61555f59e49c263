package scheduler

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// backoff tracks provider failures per pool: after n failures in a row the
// pool rests for min(Max, Base*2^(n-1)), jittered down by up to half, so
// that many pools failing together do not retry in lockstep. A failing
// pool rests alone; jobs that other pools accept go there meanwhile.
type backoff struct {
	base, max time.Duration
	kind      string // "provider" or "refused": the key of the rows in the store
	mu        sync.Mutex
	rnd       *rand.Rand
	state     map[string]*poolBackoff
	// save, when set, records each change in the store (a new leader
	// continues the backoff); called without the lock held. ended: the
	// pool's rest was reset.
	save func(b corral.Backoff, ended bool)
}

type poolBackoff struct {
	failures int
	until    time.Time
	lastErr  string
}

func newBackoff(kind string, base, max time.Duration, seed uint64) *backoff {
	return &backoff{kind: kind, base: base, max: max, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), state: map[string]*poolBackoff{}}
}

// load replaces the state with rows read from the store.
func (b *backoff) load(rows []corral.Backoff) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state = map[string]*poolBackoff{}
	for _, r := range rows {
		if r.Kind == b.kind {
			b.state[r.PoolID] = &poolBackoff{failures: r.Failures, until: r.Until, lastErr: r.LastError}
		}
	}
}

// fail records a failure at now and returns the rest period.
func (b *backoff) fail(pool string, now time.Time, err error) time.Duration {
	d, row := b.failLocked(pool, now, err)
	if b.save != nil {
		b.save(row, false)
	}
	return d
}

func (b *backoff) failLocked(pool string, now time.Time, err error) (time.Duration, corral.Backoff) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state[pool]
	if st == nil {
		st = &poolBackoff{}
		b.state[pool] = st
	}
	st.failures++
	d := b.base
	for i := 1; i < st.failures && d < b.max; i++ {
		d *= 2
	}
	if d > b.max {
		d = b.max
	}
	d = d/2 + time.Duration(b.rnd.Int64N(int64(d/2)+1))
	st.until = now.Add(d)
	if err != nil {
		st.lastErr = err.Error()
	}
	return d, corral.Backoff{PoolID: pool, Kind: b.kind, Failures: st.failures, Until: st.until, LastError: st.lastErr}
}

// ok resets the pool after a success.
func (b *backoff) ok(pool string) {
	b.mu.Lock()
	_, had := b.state[pool]
	delete(b.state, pool)
	b.mu.Unlock()
	if had && b.save != nil {
		b.save(corral.Backoff{PoolID: pool, Kind: b.kind}, true)
	}
}

// resting reports whether the pool is in backoff at now, and why.
func (b *backoff) resting(pool string, now time.Time) (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state[pool]
	if st == nil || !now.Before(st.until) {
		return false, ""
	}
	return true, st.lastErr
}
