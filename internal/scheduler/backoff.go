package scheduler

import (
	"math/rand/v2"
	"sync"
	"time"
)

// backoff tracks provider failures per pool: after n failures in a row the
// pool rests for min(Max, Base*2^(n-1)), jittered down by up to half, so
// that many pools failing together do not retry in lockstep. A failing
// pool rests alone; jobs that other pools accept go there meanwhile.
type backoff struct {
	base, max time.Duration
	mu        sync.Mutex
	rnd       *rand.Rand
	state     map[string]*poolBackoff
}

type poolBackoff struct {
	failures int
	until    time.Time
	lastErr  string
}

func newBackoff(base, max time.Duration, seed uint64) *backoff {
	return &backoff{base: base, max: max, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), state: map[string]*poolBackoff{}}
}

// fail records a failure at now and returns the rest period.
func (b *backoff) fail(pool string, now time.Time, err error) time.Duration {
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
	return d
}

// ok resets the pool after a success.
func (b *backoff) ok(pool string) {
	b.mu.Lock()
	delete(b.state, pool)
	b.mu.Unlock()
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
